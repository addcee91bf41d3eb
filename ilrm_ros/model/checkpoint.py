"""Building models and loading/saving their weights.

Two on-disk formats are read, never by unpickling arbitrary objects:

* the published PyTorch Lightning checkpoint (``re10k_2view.ckpt``): a dict whose
  ``"state_dict"`` holds ``encoder.scaler.*`` weights (everything else in it is ignored), read
  with ``torch.load(..., weights_only=True)``; the config is inferred from the tensor shapes;
* the project's safetensors files, written by :func:`save_checkpoint`, with the config as
  JSON in the metadata (fp16 on disk, float32 once loaded).

Keys that are unknown or missing, and shapes that disagree, fail with a ValueError naming them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .config import PRESETS, ILRMConfig
from .gslrm import GSLRM
from .ilrm import ILRM, LRMBase

PUBLISHED_PREFIX = "encoder.scaler."
_FORMAT = "ilrm_ros"
_RESERVED_METADATA = ("format", "format_version", "config")


class CheckpointError(ValueError):
    """A file or state dict that is not a usable checkpoint for this model."""


def build_model(config: ILRMConfig) -> LRMBase:
    """A freshly initialised model for ``config`` (iLRM or the GS-LRM baseline)."""
    return (ILRM if config.arch == "ilrm" else GSLRM)(config)


def _rebuilt_like(model: LRMBase, state: dict[str, torch.Tensor], config: ILRMConfig) -> LRMBase:
    """A model of ``config`` holding ``state``, run like ``model`` (autocast dtype, activation
    checkpointing, train or eval): what the ``with_*`` conversions return."""
    rebuilt = model_from_state_dict(state, config)
    rebuilt.amp_dtype, rebuilt.gradient_checkpointing = model.amp_dtype, model.gradient_checkpointing
    return rebuilt.train(model.training)


def with_query_rgb(model: LRMBase) -> ILRM:
    """The same iLRM with ``query_rgb`` on and the same output: the input tokenizer gains a zero
    weight for each pixel's colour, so training starts from the model it was given."""
    if not isinstance(model, ILRM):
        raise ValueError(f"query_rgb is an iLRM option; this is an {model.config.arch!r} model")
    if model.config.query_rgb:
        return model
    config = model.config.replace(query_rgb=True)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    old = state["input_tokenizer.weight"]
    pixels = config.patch_size**2
    weight = old.new_zeros(old.shape[0], pixels, 9)
    weight[:, :, 3:] = old.reshape(old.shape[0], pixels, 6)  # per pixel: [rgb, m, d] <- [m, d]
    state["input_tokenizer.weight"] = weight.reshape(old.shape[0], pixels * 9)
    return _rebuilt_like(model, state, config)


COLOUR_SKIP_START = 1.0
"""Pixel-colour weight :func:`with_colour_skip` starts from by default: the pixel's whole colour, the
model's own zeroed. From v25 it gained 2.5 times as much in the same samples as 0.35, the best fixed
mix without training (docs/training.md, chunk 27)."""


def with_colour_skip(model: LRMBase, weight: float = COLOUR_SKIP_START) -> LRMBase:
    """The same model with ``colour_skip`` on, starting from a mix of its colours and the pixels': the
    head's colour outputs are scaled by ``1 - weight`` and the pixel's colour enters at ``weight``.
    Only ``weight`` 0 keeps the output; the skip is worth it when the weight is large (chunk 27)."""
    if model.config.colour_skip:
        return model
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"colour-skip weight must be in [0, 1], got {weight}")
    config = model.config.replace(colour_skip=True)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    decoder = state["token_decoder.1.weight"]  # rows: per pixel of the patch, 14 raw values
    rows = decoder.reshape(-1, config.gaussian_channels, decoder.shape[1])
    rows[:, 3:6] *= 1.0 - weight  # the colour values (head.py's layout)
    state["colour_skip"] = decoder.new_full((3,), weight)
    return _rebuilt_like(model, state, config)


def with_depth(model: LRMBase, depth: int) -> LRMBase:
    """The same model with ``depth`` blocks and the same output (growing a trained model).

    New blocks are spread evenly through the stack (for iLRM, read + self pairs, so the two kinds
    still alternate); each copies the block before it with its output projections (attention
    ``proj``, MLP ``fc2``) zeroed, so it starts as the identity on the residual stream, reading
    features the trained model already makes.
    """
    old = model.config.depth
    unit = 2 if isinstance(model, ILRM) else 1  # iLRM: block 2i reads the images, 2i + 1 attends globally
    if depth < old or (depth - old) % unit:
        raise ValueError(f"cannot grow a {old}-block {model.config.arch} model to {depth} blocks (step {unit})")
    if depth == old:
        return model
    units, extra = old // unit, (depth - old) // unit
    if extra > units:
        raise ValueError(f"cannot grow a {old}-block model to {depth} blocks: at most {2 * old}")
    after = {(2 * j + 1) * units // (2 * extra) for j in range(extra)}  # centred in equal stretches
    order: list[tuple[int, bool]] = []  # (source block, new)
    for u in range(units):
        order += [(u * unit + i, False) for i in range(unit)]
        if u in after:
            order += [(u * unit + i, True) for i in range(unit)]
    prefix = "processor.blocks."
    state: dict[str, torch.Tensor] = {}
    blocks: dict[int, dict[str, torch.Tensor]] = {}  # block index -> its tensors by name inside the block
    for key, value in model.state_dict().items():
        if key.startswith(prefix):
            index, rest = key[len(prefix) :].split(".", 1)
            blocks.setdefault(int(index), {})[rest] = value
        else:
            state[key] = value.detach().clone()
    for new_index, (source, new) in enumerate(order):
        for rest, value in blocks[source].items():
            zero = new and rest.endswith(("proj.weight", "fc2.weight"))
            state[f"{prefix}{new_index}.{rest}"] = torch.zeros_like(value) if zero else value.detach().clone()
    return _rebuilt_like(model, state, model.config.replace(depth=depth))


def published_state_dict(model: LRMBase) -> dict[str, torch.Tensor]:
    """The model's weights under the published checkpoint's key names (``encoder.scaler.*``)."""
    return {PUBLISHED_PREFIX + k: v for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------- reading files


def _reason(exc: Exception) -> str:
    """The informative part of a (weights-only) torch.load failure, without torch's boilerplate
    (which advises retrying with weights_only=False: never do that for an untrusted file)."""
    boilerplate = ("Weights only load failed", "Check the documentation", "Please file an issue")
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln.replace("WeightsUnpickler error:", "").strip() for ln in lines if not ln.startswith(boilerplate)]
    useful = [ln for ln in useful if ln]
    return "; ".join(useful) if useful else f"{type(exc).__name__}"


def _read_torch(path: Path) -> object:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for code/foreign objects, RuntimeError for corrupt files, ...
        raise CheckpointError(
            f"{path} could not be read as a weights-only PyTorch checkpoint; arbitrary pickled objects "
            f"are refused ({_reason(exc)})"
        ) from None


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        tensors = {}
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            metadata = fh.metadata() or {}
            for key in fh.keys():
                tensors[key] = fh.get_tensor(key)
    except Exception as exc:
        raise CheckpointError(f"{path} is not a valid safetensors file: {type(exc).__name__}: {exc}") from None
    return tensors, metadata


def _sniff(path: Path) -> str:
    """'torch' (zip or pickle stream), 'safetensors', or raise for anything else."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(9)
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return "torch"
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= size - 8:
        return "safetensors"
    raise CheckpointError(
        f"{path} is not a checkpoint: expected a PyTorch/Lightning .ckpt (zip or pickle) or a safetensors file"
    )


def _extract_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """The model's tensors from a loaded checkpoint object, without the published prefix."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict")
    if isinstance(obj.get("state_dict"), Mapping):
        sd = obj["state_dict"]
    elif isinstance(obj.get("model"), Mapping) and any(str(k).startswith("viewpoint_tokenizer") for k in obj["model"]):
        raise CheckpointError(
            f"{path} uses the later iLRM variant's layout (viewpoint_tokenizer.*, under 'model'); "
            "only the published re10k layout (encoder.scaler.*) is supported"
        )
    else:
        sd = obj
    if any(str(k).startswith(PUBLISHED_PREFIX) for k in sd):
        sd = {k[len(PUBLISHED_PREFIX):]: v for k, v in sd.items() if str(k).startswith(PUBLISHED_PREFIX)}
    bad = sorted(str(k) for k, v in sd.items() if not isinstance(v, torch.Tensor))
    if bad:
        raise CheckpointError(f"{path}: entries that are not tensors: {_names(bad)}")
    if not sd:
        raise CheckpointError(f"{path} holds no model weights (no '{PUBLISHED_PREFIX}*' tensors)")
    return dict(sd)


# --------------------------------------------------------------------------- config and checks


def _names(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return f"[{shown}{f', ... ({len(keys) - limit} more)' if len(keys) > limit else ''}]"


def infer_config(state_dict: Mapping[str, torch.Tensor], base: ILRMConfig = PRESETS["re10k"]) -> ILRMConfig:
    """Config of an unprefixed published-layout state dict, from its shapes (other fields from ``base``)."""

    def shape(key: str) -> tuple[int, ...]:
        if key not in state_dict:
            raise CheckpointError(f"cannot infer the model size: missing key {key!r}")
        return tuple(state_dict[key].shape)

    arch = "ilrm" if "support_tokenizer.weight" in state_dict else "gslrm"
    first = "read_cross" if arch == "ilrm" else "attn"
    ffn = "read_ff" if arch == "ilrm" else "mlp"
    tok = shape("input_tokenizer.weight")
    # The patch size comes from the support tokenizer (9 channels a pixel in both archs); an iLRM
    # input tokenizer of 9 channels a pixel means query_rgb.
    pixels_key = "support_tokenizer.weight" if arch == "ilrm" else "input_tokenizer.weight"
    sup = shape(pixels_key)
    patch = math.isqrt(sup[1] // 9) if len(sup) == 2 else 0
    if len(sup) != 2 or patch < 1 or 9 * patch * patch != sup[1]:
        raise CheckpointError(f"{pixels_key} has shape {sup}; expected [width, 9 * patch^2]")
    query_rgb = arch == "ilrm" and len(tok) == 2 and tok[1] == 9 * patch * patch
    colour_skip = "colour_skip" in state_dict
    channels = 9 if arch == "gslrm" or query_rgb else 6
    if len(tok) != 2 or channels * patch * patch != tok[1]:
        raise CheckpointError(f"input_tokenizer.weight has shape {tok}; expected [width, {channels} * patch^2]")
    width = tok[0]
    blocks = {int(m.group(1)) for k in state_dict if (m := re.match(r"processor\.blocks\.(\d+)\.", k))}
    if not blocks:
        raise CheckpointError("cannot infer the model size: no processor.blocks.* keys")
    head_dim = shape(f"processor.blocks.0.{first}.q_norm.weight")[0]
    hidden = shape(f"processor.blocks.0.{ffn}.fc1.weight")[0]
    image_size = base.image_size if all(s % patch == 0 for s in base.image_size) else (patch * 32, patch * 32)
    try:
        return base.replace(
            arch=arch, width=width, depth=max(blocks) + 1, head_dim=head_dim,
            mlp_ratio=hidden / width, patch_size=patch, image_size=image_size, query_rgb=query_rgb,
            colour_skip=colour_skip,
        )
    except ValueError as exc:
        raise CheckpointError(f"inconsistent checkpoint shapes: {exc}") from None


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], prefix: str = "") -> None:
    """Raise a :class:`CheckpointError` naming every missing, unknown or mis-shaped key.

    ``prefix`` is only used to print the names as they appear in the file.
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = [
        f"{prefix}{k}: {tuple(state_dict[k].shape)} in the checkpoint, {expected[k]} expected"
        for k in sorted(set(expected) & set(state_dict))
        if tuple(state_dict[k].shape) != expected[k]
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {_names([prefix + k for k in missing])}")
    if unexpected:
        problems.append(f"unexpected keys {_names([prefix + k for k in unexpected])}")
    if mismatched:
        problems.append(f"shape mismatches {_names(mismatched)}")
    if problems:
        raise CheckpointError("checkpoint does not match the model: " + "; ".join(problems))


def model_from_state_dict(
    state_dict: Mapping[str, torch.Tensor], config: ILRMConfig | None = None, prefix: str = ""
) -> LRMBase:
    """A float32 CPU model holding ``state_dict`` (config inferred from shapes when not given)."""
    config = config or infer_config(state_dict)
    with torch.device("meta"):
        model = build_model(config)
    check_state_dict(model, state_dict, prefix)
    model.load_state_dict({k: v.to(torch.float32).contiguous() for k, v in state_dict.items()}, assign=True)
    return model


# --------------------------------------------------------------------------- public API


def load_model(
    source: str | os.PathLike | ILRMConfig, device: torch.device | str | None = None, seed: int = 0
) -> LRMBase:
    """A model in eval mode from a preset name / config (seeded random weights) or a checkpoint path.

    Paths may be the published Lightning ``.ckpt`` or a safetensors file written by
    :func:`save_checkpoint`. Raises ValueError (:class:`CheckpointError`) for anything else.
    """
    if isinstance(source, ILRMConfig) or (isinstance(source, str) and source in PRESETS):
        config = source if isinstance(source, ILRMConfig) else PRESETS[source]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(config)
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{source!r} is neither a preset ({', '.join(PRESETS)}) nor a file")
        if _sniff(path) == "safetensors":
            tensors, metadata = _read_safetensors(path)
            config = ILRMConfig.from_json(metadata["config"]) if "config" in metadata else None
            sd = _extract_state_dict(tensors, path)
            prefix = ""
        else:
            sd = _extract_state_dict(_read_torch(path), path)
            config, prefix = None, PUBLISHED_PREFIX
        model = model_from_state_dict(sd, config, prefix)
    if device is not None:
        model = model.to(device)
    return model.eval()


def save_checkpoint(
    model: LRMBase,
    path: str | os.PathLike,
    dtype: torch.dtype = torch.float16,
    extra_metadata: Mapping[str, object] | None = None,
) -> None:
    """Write the weights (cast to ``dtype``) and config as a safetensors file."""
    from safetensors.torch import save_file

    metadata = {"format": _FORMAT, "format_version": "1", "config": model.config.to_json()}
    for key, value in (extra_metadata or {}).items():
        if key in _RESERVED_METADATA:
            raise ValueError(f"extra_metadata may not override {key!r}")
        metadata[str(key)] = value if isinstance(value, str) else json.dumps(value)
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata=metadata)


def average_checkpoints(
    sources: list[str | os.PathLike], path: str | os.PathLike, dtype: torch.dtype = torch.float16
) -> LRMBase:
    """Write the element-wise mean of checkpoints of one architecture (a "model soup") to ``path``.

    Useful for runs fine-tuned from one parent: their average often scores at or above the
    better member. Every input must have the same config; the output's metadata names the
    inputs (file name and sha256). Returns the averaged model.
    """
    if len(sources) < 2:
        raise ValueError("averaging needs at least two checkpoints")
    models = [load_model(source) for source in sources]
    config = models[0].config
    for source, model in zip(sources[1:], models[1:]):
        if model.config != config:
            raise CheckpointError(f"{os.fspath(source)!r} has another config than {os.fspath(sources[0])!r}")
    states = [model.state_dict() for model in models]
    merged = models[0]
    merged.load_state_dict({key: sum(sd[key] for sd in states) / len(states) for key in states[0]})
    inputs = [
        {"file": Path(source).name, "sha256": hashlib.sha256(Path(source).read_bytes()).hexdigest()}
        for source in sources
    ]
    save_checkpoint(merged, path, dtype=dtype, extra_metadata={"averaged_from": inputs})
    return merged
