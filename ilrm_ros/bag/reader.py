"""Read rosbag2 directories (mcap or sqlite3 storage) with the ``rosbags`` library; no ROS needed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator


class BagError(RuntimeError):
    """The path is not a readable rosbag2 recording."""


@dataclass(frozen=True)
class BagMessage:
    topic: str
    stamp_ns: int  # the bag's receive timestamp
    msgtype: str  # e.g. "sensor_msgs/msg/Image"
    msg: Any  # deserialized rosbags message object (None when not deserialized)
    rawdata: bytes  # the CDR bytes as stored


def bag_directory(path: str | Path) -> Path:
    """The rosbag2 directory for ``path`` (the directory, or a storage file inside it).

    Raises :class:`BagError` if it is not a rosbag2 recording.
    """
    p = Path(path)
    if not p.exists():
        raise BagError(f"{p}: no such file or directory")
    if p.is_file() and (p.parent / "metadata.yaml").is_file():
        return p.parent
    if p.is_dir() and (p / "metadata.yaml").is_file():
        return p
    raise BagError(f"{p} is not a rosbag2 recording (expected a directory with metadata.yaml)")


def _open(path: str | Path):
    from rosbags.highlevel import AnyReader

    from .writer import typestore

    directory = bag_directory(path)
    try:
        reader = AnyReader([directory], default_typestore=typestore())
        reader.open()
    except Exception as err:  # rosbags raises several error types for unreadable bags
        raise BagError(f"cannot read rosbag2 at {directory}: {err}") from err
    return reader


def iter_bag(path: str | Path, topics: Iterable[str] | None = None, deserialize: bool = True) -> Iterator[BagMessage]:
    """The messages of a rosbag2 in receive-time order, optionally only on ``topics``."""
    reader = _open(path)
    try:
        wanted = None if topics is None else set(topics)
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        for conn, stamp, raw in reader.messages(connections=conns):
            raw = bytes(raw)
            msg = reader.deserialize(raw, conn.msgtype) if deserialize else None
            yield BagMessage(conn.topic, int(stamp), conn.msgtype, msg, raw)
    finally:
        reader.close()


def bag_summary(path: str | Path) -> dict[str, tuple[str, int]]:
    """``{topic: (msgtype, message count)}`` of a rosbag2."""
    reader = _open(path)
    try:
        return {name: (info.msgtype, info.msgcount) for name, info in sorted(reader.topics.items())}
    finally:
        reader.close()


def bag_custom_data(path: str | Path) -> dict[str, str]:
    """The metadata's ``custom_data`` (where :mod:`ilrm_ros.bag.writer` records its settings)."""
    import yaml

    meta = yaml.safe_load((bag_directory(path) / "metadata.yaml").read_text())
    return dict(meta.get("rosbag2_bagfile_information", {}).get("custom_data") or {})
