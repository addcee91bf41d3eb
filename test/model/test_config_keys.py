"""The re10k preset matches the published checkpoint's keys, shapes and parameter count."""

from __future__ import annotations

import torch

from ilrm_ros.model import GSLRM, ILRM, PRESETS, ILRMConfig, load_model, published_state_dict, save_checkpoint
from ilrm_ros.model.checkpoint import infer_config


def published_table() -> dict[str, tuple[int, ...]]:
    """The key/shape table of the published re10k_2view.ckpt, written out from the spec."""
    p = "encoder.scaler."
    table = {
        p + "input_tokenizer.weight": (768, 384),
        p + "input_layernorm.weight": (768,),
        p + "support_tokenizer.weight": (768, 576),
        p + "support_layernorm.weight": (768,),
        p + "token_decoder.0.weight": (768,),
        p + "token_decoder.1.weight": (896, 768),
    }
    for i in range(24):
        b = f"{p}processor.blocks.{i}."
        if i % 2 == 0:
            table[b + "read_cross.norm.weight"] = (768,)
            table[b + "read_cross.q_norm.weight"] = (64,)
            table[b + "read_cross.k_norm.weight"] = (64,)
            for n in ("q", "k", "v", "proj"):
                table[b + f"read_cross.{n}.weight"] = (768, 768)
            table[b + "read_ff.norm.weight"] = (768,)
            table[b + "read_ff.fc1.weight"] = (3072, 768)
            table[b + "read_ff.fc2.weight"] = (768, 3072)
        else:
            table[b + "attn.norm.weight"] = (768,)
            table[b + "attn.qkv.weight"] = (2304, 768)
            table[b + "attn.proj.weight"] = (768, 768)
            table[b + "attn.q_norm.weight"] = (64,)
            table[b + "attn.k_norm.weight"] = (64,)
            table[b + "mlp.norm.weight"] = (768,)
            table[b + "mlp.fc1.weight"] = (3072, 768)
            table[b + "mlp.fc2.weight"] = (768, 3072)
    return table


def meta_model(config: ILRMConfig) -> ILRM:
    with torch.device("meta"):
        return ILRM(config)


def test_re10k_keys_shapes_and_count_match_the_published_checkpoint():
    sd = published_state_dict(meta_model(PRESETS["re10k"]))
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert shapes == published_table()
    assert len(sd) == 222
    assert sum(v.numel() for v in sd.values()) == 171_336_960
    assert all(v.dtype == torch.float32 for v in sd.values())


def test_re10k_config_is_inferred_from_shapes():
    model = meta_model(PRESETS["re10k"])
    assert infer_config(model.state_dict()) == PRESETS["re10k"]


def test_unprefixed_names_are_the_module_names():
    names = set(meta_model(PRESETS["re10k"]).state_dict())
    assert "input_tokenizer.weight" in names
    assert "processor.blocks.0.read_cross.q.weight" in names
    assert "token_decoder.1.weight" in names


def test_small_preset_is_small(tmp_path):
    model = load_model("small")
    assert sum(p.numel() for p in model.parameters()) <= 10_000_000
    assert PRESETS["small"].num_views == 2 and PRESETS["small"].image_size == (128, 128)
    path = tmp_path / "small.safetensors"
    save_checkpoint(model, path)
    assert path.stat().st_size <= 20_000_000


def test_config_json_round_trip():
    for cfg in (*PRESETS.values(), PRESETS["tiny"].replace(arch="gslrm", image_size=(32, 48))):
        assert ILRMConfig.from_json(cfg.to_json()) == cfg


def test_config_rejects_bad_values():
    import pytest

    with pytest.raises(ValueError):
        ILRMConfig(width=100, head_dim=64)
    with pytest.raises(ValueError):
        ILRMConfig(image_size=(250, 256))
    with pytest.raises(ValueError):
        ILRMConfig(arch="unknown")
    with pytest.raises(ValueError):
        ILRMConfig.from_dict({"widht": 3})


def test_preset_init_is_deterministic():
    a, b = load_model("tiny"), load_model("tiny")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    assert not a.training


def test_gslrm_has_same_width_depth_and_head():
    cfg = PRESETS["re10k"].replace(arch="gslrm")
    with torch.device("meta"):
        g = GSLRM(cfg)
    assert len(g.processor.blocks) == 24
    assert tuple(g.input_tokenizer.weight.shape) == (768, 9 * 64)
    assert tuple(g.token_decoder[1].weight.shape) == (896, 768)
    assert infer_config(g.state_dict()) == cfg


def test_model_package_does_not_import_ros():
    import os
    import subprocess
    import sys
    from pathlib import Path

    import ilrm_ros

    root = str(Path(ilrm_ros.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    code = "import sys, ilrm_ros.model; print(any(m.split('.')[0] in ('rclpy', 'rospy') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "False"
