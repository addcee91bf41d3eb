"""The checkpoint shipped with the package and how a `checkpoint` setting resolves to a model source."""

from __future__ import annotations

import logging
from pathlib import Path

SHIPPED_CHECKPOINT = Path(__file__).with_name("small.safetensors")
"""The small iLRM trained by `ilrm train` on synthetic rooms (see docs/training.md)."""

log = logging.getLogger(__name__)


def resolve_checkpoint(value: str) -> str:
    """`load_model` source for a `checkpoint` parameter: empty = the shipped small model.

    If the shipped file is missing (a source tree without it), fall back to the randomly
    initialised `small` preset, loudly: the scene will be noise.
    """
    if value:
        return value
    if SHIPPED_CHECKPOINT.exists():
        return str(SHIPPED_CHECKPOINT)
    log.warning("shipped checkpoint %s is missing: using the untrained 'small' preset", SHIPPED_CHECKPOINT)
    return "small"
