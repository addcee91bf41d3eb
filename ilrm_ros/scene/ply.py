"""Gaussian scenes as PLY files in the standard 3DGS layout (INRIA 3DGS, SuperSplat and other viewers).

One ``vertex`` element, binary little endian, float properties in this order::

    x y z nx ny nz f_dc_0 f_dc_1 f_dc_2 opacity scale_0 scale_1 scale_2 rot_0 rot_1 rot_2 rot_3

with ``opacity`` a logit, ``scale_*`` natural logs, ``rot_*`` the quaternion (w, x, y, z) and
normals zero. Only the degree-0 SH colour is written.

Round trip: positions, ``f_dc`` and quaternions are stored bit-exactly. Opacity and scales go
through logit/log and back in float64, which recovers the float32 value to about 1e-6 relative;
the stored logit/log values are chosen so that re-saving a loaded file gives identical bytes.
Reading accepts binary (either byte order) and ascii files, comments and other header lines,
extra properties (``f_rest_*`` of higher SH degrees are ignored) and other elements.
"""

from __future__ import annotations

import os
import re

import numpy as np
import torch

from ilrm_ros.gaussians import Gaussians

PROPERTIES = (
    "x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
    "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3",
)
REQUIRED = tuple(p for p in PROPERTIES if p not in ("nx", "ny", "nz"))
_LOGIT_MAX = 120.0  # opacity 0 / 1 are stored as -+120 (sigmoid rounds back to exactly 0 / 1 in float32)

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


def _logit(p: np.ndarray) -> np.ndarray:
    p = p.astype(np.float64)
    with np.errstate(divide="ignore"):
        return np.clip(np.log(p) - np.log1p(-p), -_LOGIT_MAX, _LOGIT_MAX).astype(np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)


def _log(s: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(s.astype(np.float64)).astype(np.float32)


def _exp(x: np.ndarray) -> np.ndarray:
    return np.exp(x.astype(np.float64)).astype(np.float32)


def _encode(values: np.ndarray, fwd, inv) -> np.ndarray:
    """fwd(values), nudged where needed to a fixed point of fwd(inv(.)) so a re-save is byte-identical."""
    enc = fwd(values)
    again = fwd(inv(enc))
    return np.where(again == enc, enc, again)


def save_ply(path: str | os.PathLike, g: Gaussians) -> None:
    """Write unbatched Gaussians as a standard 3DGS PLY (binary little endian)."""
    if g.batched:
        raise ValueError("save_ply takes unbatched Gaussians")
    n = len(g)
    arr = lambda t: t.detach().to("cpu", torch.float32).numpy()  # noqa: E731
    data = np.zeros((n, len(PROPERTIES)), dtype="<f4")
    data[:, 0:3] = arr(g.means)
    data[:, 6:9] = arr(g.sh[:, 0, :])
    data[:, 9] = _encode(arr(g.opacities), _logit, _sigmoid)
    data[:, 10:13] = _encode(arr(g.scales), _log, _exp)
    data[:, 13:17] = arr(g.quats)
    header = "ply\nformat binary_little_endian 1.0\n" f"element vertex {n}\n"
    header += "".join(f"property float {p}\n" for p in PROPERTIES) + "end_header\n"
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(data.tobytes())


def _parse_header(f) -> tuple[str, list[tuple[str, int, list[tuple[str, str | None]]]]]:
    """Format and elements [(name, count, [(property, numpy type or None for lists)])]."""
    if f.readline().strip() != b"ply":
        raise ValueError("not a PLY file (no 'ply' magic)")
    fmt, elements = None, []
    while True:
        raw = f.readline()
        if not raw:
            raise ValueError("PLY header has no end_header")
        words = raw.decode("ascii", errors="replace").split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        key = words[0]
        if key == "end_header":
            break
        if key == "format":
            fmt = words[1]
        elif key == "element":
            elements.append((words[1], int(words[2]), []))
        elif key == "property":
            if not elements:
                raise ValueError("PLY property before any element")
            if words[1] == "list":
                elements[-1][2].append((words[-1], None))
            else:
                if words[1] not in _PLY_TYPES:
                    raise ValueError(f"unknown PLY property type {words[1]!r}")
                elements[-1][2].append((words[2], _PLY_TYPES[words[1]]))
    if fmt not in ("binary_little_endian", "binary_big_endian", "ascii"):
        raise ValueError(f"unsupported PLY format {fmt!r}")
    return fmt, elements


def load_ply(path: str | os.PathLike) -> Gaussians:
    """Read a 3DGS PLY (our own or another tool's) as unbatched Gaussians with degree-0 SH.

    Opacity is ``sigmoid(opacity)``, scales ``exp(scale_*)``, quaternions are normalised where
    their norm is off by more than 1e-5 (our own files keep their exact values). Raises
    ``ValueError`` for a PLY that is not a 3DGS scene.
    """
    with open(path, "rb") as f:
        fmt, elements = _parse_header(f)
        names = [e[0] for e in elements]
        if "vertex" not in names:
            raise ValueError("not a 3DGS PLY: no 'vertex' element")
        vi = names.index("vertex")
        _, count, props = elements[vi]
        have = {p for p, _ in props}
        missing = [p for p in REQUIRED if p not in have]
        if missing:
            raise ValueError(f"not a 3DGS PLY: vertex element lacks {', '.join(missing)}")
        if any(t is None for _, t in props):
            raise ValueError("not a 3DGS PLY: list property in the vertex element")
        if fmt == "ascii":
            body = f.read().decode("ascii").splitlines()
            skip = sum(e[1] for e in elements[:vi])
            lines = [ln for ln in body if ln.strip()][skip:skip + count]
            if len(lines) < count:
                raise ValueError(f"PLY has {len(lines)} of {count} vertex lines")
            table = np.array([ln.split()[: len(props)] for ln in lines], dtype=np.float64).reshape(count, len(props))
            cols = {p: table[:, i].astype(np.float32) for i, (p, _) in enumerate(props)}
        else:
            order = "<" if fmt == "binary_little_endian" else ">"
            for name, n, eprops in elements[:vi]:
                if any(t is None for _, t in eprops):
                    raise ValueError(f"cannot skip element {name!r} with list properties before 'vertex'")
                f.seek(n * np.dtype([(p, order + t) for p, t in eprops]).itemsize, os.SEEK_CUR)
            dtype = np.dtype([(p, order + t) for p, t in props])
            buf = f.read(count * dtype.itemsize)
            if len(buf) < count * dtype.itemsize:
                raise ValueError("PLY file is truncated")
            rec = np.frombuffer(buf, dtype=dtype, count=count)
            cols = {p: rec[p].astype(np.float32) for p in REQUIRED}
    stack = lambda keys: torch.from_numpy(np.stack([cols[k] for k in keys], -1).astype(np.float32))  # noqa: E731
    quats = stack(["rot_0", "rot_1", "rot_2", "rot_3"])
    norm = quats.norm(dim=-1, keepdim=True)
    off = (norm - 1).abs() > 1e-5
    quats = torch.where(off, quats / norm.clamp_min(1e-12), quats)
    return Gaussians(
        means=stack(["x", "y", "z"]),
        quats=quats,
        scales=torch.from_numpy(_exp(np.stack([cols[f"scale_{i}"] for i in range(3)], -1))),
        opacities=torch.from_numpy(_sigmoid(cols["opacity"])),
        sh=stack(["f_dc_0", "f_dc_1", "f_dc_2"])[:, None, :],
    )


def read_header(path: str | os.PathLike) -> str:
    """The header text of a PLY file up to and including ``end_header`` (for inspection and tests)."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    m = re.search(rb"end_header\r?\n", head)
    if not m:
        raise ValueError("no end_header in the first 64 KiB")
    return head[: m.end()].decode("ascii")
