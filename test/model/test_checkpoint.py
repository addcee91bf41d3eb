"""Loading the published Lightning layout and the project's safetensors; refusing anything else."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from ilrm_ros.gaussians import SH_C0
from ilrm_ros.model import (
    ILRM,
    PRESETS,
    CheckpointError,
    ILRMConfig,
    average_checkpoints,
    load_model,
    published_state_dict,
    save_checkpoint,
    with_colour_skip,
    with_depth,
    with_query_rgb,
)

NARROW = PRESETS["re10k"].replace(width=128, depth=4)  # published layout, fewer/narrower blocks


def narrow_published_model(seed: int = 7) -> ILRM:
    torch.manual_seed(seed)
    model = ILRM(NARROW).eval()
    with torch.no_grad():  # norms away from 1 so a mix-up between tensors would show
        for p in model.parameters():
            if p.dim() == 1:
                p.uniform_(0.5, 1.5)
    return model


def write_lightning(path, state_dict: dict, **extra) -> None:
    """A checkpoint shaped like the published one: weights under state_dict, other keys beside."""
    torch.save({"state_dict": state_dict, "epoch": 3, "global_step": 1000, **extra}, path)


def tiny_scene(views=2, h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(1, views, 3, h, w, generator=g)
    K = torch.tensor([[40.0, 0, w / 2], [0, 40.0, h / 2], [0, 0, 1]]).expand(1, views, 3, 3)
    c2w = torch.eye(4).repeat(1, views, 1, 1)
    c2w[0, :, 0, 3] = torch.linspace(-0.5, 0.5, views)
    return images, K, c2w


def assert_same_output(a, b, atol=0.0):
    for name in ("means", "quats", "scales", "opacities", "sh"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), atol=atol, rtol=atol)


def test_published_layout_loads_and_reproduces_the_forward(tmp_path):
    src = narrow_published_model()
    sd = published_state_dict(src)
    # Things a Lightning checkpoint carries beside the encoder: ignored.
    sd["decoder.background_color"] = torch.ones(3)
    sd["losses.1.lpips.net.slice1.0.weight"] = torch.randn(4, 3, 3, 3)
    path = tmp_path / "narrow.ckpt"
    write_lightning(path, sd, optimizer_states=[{"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": []}],
                    lr_schedulers=[], callbacks={})
    model = load_model(path)
    assert isinstance(model, ILRM) and not model.training
    assert model.config == NARROW
    assert all(p.dtype == torch.float32 for p in model.parameters())
    with torch.no_grad():
        assert_same_output(model(*tiny_scene()), src(*tiny_scene()))


def test_full_re10k_key_set_loads(tmp_path):
    """The full-size published layout (171M float32 values, 685 MB) loads with the re10k config."""
    with torch.device("meta"):
        ref = ILRM(PRESETS["re10k"])
    # Uninitialised storage is enough: this checks keys, shapes and config inference, not values.
    sd = {k: torch.empty(v.shape) for k, v in published_state_dict(ref).items()}
    marker = "encoder.scaler.processor.blocks.23.mlp.fc2.weight"
    sd[marker] = torch.arange(sd[marker].numel(), dtype=torch.float32).reshape(sd[marker].shape)
    path = tmp_path / "re10k_2view.ckpt"
    write_lightning(path, sd)
    del sd
    model = load_model(path)
    assert model.config == PRESETS["re10k"]
    assert sum(p.numel() for p in model.parameters()) == 171_336_960
    w = model.processor.blocks[23].mlp.fc2.weight
    assert torch.equal(w.flatten()[:5], torch.arange(5, dtype=torch.float32))
    del model
    path.unlink()


@pytest.mark.parametrize(
    "edit, named",
    [
        ("rename", "processor.blocks.3.attn.qkv.weight"),
        ("reshape", "processor.blocks.2.read_cross.k.weight"),
        ("drop", "processor.blocks.1.mlp.norm.weight"),
        ("extra", "processor.blocks.0.read_cross.bias"),
        ("rename", "input_tokenizer.weight"),
    ],
)
def test_mismatched_keys_fail_naming_them(tmp_path, edit, named):
    sd = published_state_dict(narrow_published_model())
    key = "encoder.scaler." + named
    if edit == "rename":
        sd[key.replace(".weight", ".weight_renamed")] = sd.pop(key)
    elif edit == "reshape":
        sd[key] = sd[key][:, :-1].clone()
    elif edit == "drop":
        del sd[key]
    elif edit == "extra":
        sd[key] = torch.zeros(128)
    path = tmp_path / "bad.ckpt"
    write_lightning(path, sd)
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        load_model(path)


class _Evil:
    def __reduce__(self):
        marker = os.environ["ILRM_TEST_MARKER"]
        return (os.system, (f"touch {marker}",))


@pytest.mark.parametrize("how", ["pickle2", "pickle5", "torch.save"])
def test_pickled_code_is_refused_and_never_runs(tmp_path, monkeypatch, how):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("ILRM_TEST_MARKER", str(marker))
    path = tmp_path / "evil.ckpt"
    payload = {"state_dict": {"encoder.scaler.input_tokenizer.weight": _Evil()}}
    if how.startswith("pickle"):
        with open(path, "wb") as fh:
            pickle.dump(payload, fh, protocol=int(how[-1]))
    else:
        torch.save(payload, path)
    with pytest.raises(ValueError, match="weights-only"):
        load_model(path)
    assert not marker.exists()


def test_files_that_are_not_checkpoints_are_refused(tmp_path):
    rnd = tmp_path / "random.ckpt"
    # Seeded noise behind a zero byte: os.urandom failed 1 run in ~256, when its first byte happened to
    # be pickle's protocol marker 0x80 and the file was (rightly) reported as a refused pickle instead.
    rnd.write_bytes(b"\x00" + np.random.default_rng(0).integers(0, 256, 4095, dtype=np.uint8).tobytes())
    txt = tmp_path / "notes.ckpt"
    txt.write_text("this is not a checkpoint\n")
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    for path in (rnd, txt, empty):
        with pytest.raises(ValueError, match="not a checkpoint"):
            load_model(path)
    # Pickle streams / zips that are not checkpoints get a clear message too.
    junk_pickle = tmp_path / "junk.ckpt"
    junk_pickle.write_bytes(b"\x80\x02" + np.random.default_rng(1).integers(0, 256, 100, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="weights-only"):
        load_model(junk_pickle)
    tensor_only = tmp_path / "tensor.ckpt"
    torch.save(torch.zeros(3), tensor_only)
    with pytest.raises(CheckpointError, match="not a checkpoint dict"):
        load_model(tensor_only)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.ckpt")


def test_later_variant_layout_is_refused_clearly(tmp_path):
    path = tmp_path / "variant.ckpt"
    torch.save({"model": {"viewpoint_tokenizer.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(ValueError, match="later iLRM variant"):
        load_model(path)


def test_safetensors_round_trip_reproduces_the_forward(tmp_path):
    src = load_model("tiny")
    exact = tmp_path / "tiny32.safetensors"
    save_checkpoint(src, exact, dtype=torch.float32, extra_metadata={"step": 12, "note": "hi"})
    with torch.no_grad():
        assert_same_output(load_model(exact)(*tiny_scene()), src(*tiny_scene()))

    half = tmp_path / "tiny16.safetensors"
    save_checkpoint(src, half)  # fp16 on disk
    loaded = load_model(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    for (k, a), (_, b) in zip(src.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a.half().float(), b), k
    rounded = ILRM(src.config).eval()
    rounded.load_state_dict({k: v.half().float() for k, v in src.state_dict().items()})
    with torch.no_grad():
        assert_same_output(loaded(*tiny_scene()), rounded(*tiny_scene()))

    from safetensors import safe_open

    with safe_open(str(exact), "pt") as fh:
        meta = fh.metadata()
    assert ILRMConfig.from_json(meta["config"]) == src.config
    assert meta["step"] == "12" and meta["note"] == "hi"


def test_gslrm_round_trips_through_safetensors(tmp_path):
    src = load_model(PRESETS["tiny"].replace(arch="gslrm"))
    path = tmp_path / "g.safetensors"
    save_checkpoint(src, path, dtype=torch.float32)
    loaded = load_model(path)
    assert type(loaded).__name__ == "GSLRM" and loaded.config == src.config
    with torch.no_grad():
        assert_same_output(loaded(*tiny_scene()), src(*tiny_scene()))


def test_safetensors_with_wrong_shapes_fails_naming_the_key(tmp_path):
    from safetensors.torch import save_file

    src = load_model("tiny")
    sd = {k: v.clone() for k, v in src.state_dict().items()}
    sd["token_decoder.1.weight"] = sd["token_decoder.1.weight"][:-1].clone()
    path = tmp_path / "bad.safetensors"
    save_file(sd, str(path), metadata={"config": src.config.to_json()})
    with pytest.raises(ValueError, match=r"token_decoder\.1\.weight"):
        load_model(path)


def test_reserved_metadata_cannot_be_overridden(tmp_path):
    with pytest.raises(ValueError):
        save_checkpoint(load_model("tiny"), tmp_path / "x.safetensors", extra_metadata={"config": "{}"})


def test_average_is_the_elementwise_mean_and_names_its_inputs(tmp_path):
    import hashlib
    import json

    from safetensors import safe_open

    from ilrm_ros.cli import main

    a, b = load_model("tiny", seed=1), load_model("tiny", seed=2)
    pa, pb = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_checkpoint(a, pa, dtype=torch.float32)
    save_checkpoint(b, pb, dtype=torch.float32)
    out = tmp_path / "ab.safetensors"
    assert main(["average", str(pa), str(pb), "--out", str(out)]) == 0
    merged = load_model(out)
    for key, value in merged.state_dict().items():
        expected = ((a.state_dict()[key] + b.state_dict()[key]) / 2).half().float()
        assert torch.equal(value, expected), key
    with safe_open(str(out), "pt") as fh:
        inputs = json.loads(fh.metadata()["averaged_from"])
    assert [i["file"] for i in inputs] == ["a.safetensors", "b.safetensors"]
    assert inputs[1]["sha256"] == hashlib.sha256(pb.read_bytes()).hexdigest()


def test_average_refuses_other_configs_and_a_single_input(tmp_path, capsys):
    from ilrm_ros.cli import main

    pa, pg = tmp_path / "a.safetensors", tmp_path / "g.safetensors"
    save_checkpoint(load_model("tiny"), pa)
    save_checkpoint(load_model(PRESETS["tiny"].replace(arch="gslrm")), pg)
    with pytest.raises(CheckpointError, match="another config"):
        average_checkpoints([pa, pg], tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match="at least two"):
        average_checkpoints([pa], tmp_path / "x.safetensors")
    assert main(["average", str(pa), str(pg), "--out", str(tmp_path / "y.safetensors")]) == 2
    assert "another config" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists() and not (tmp_path / "y.safetensors").exists()


# --------------------------------------------------------------------------- query_rgb (not in the published layout)


def trained_looking_tiny(seed: int = 3) -> ILRM:
    """A tiny iLRM whose norm weights are away from 1, so a mixed-up tensor would show."""
    torch.manual_seed(seed)
    model = load_model("tiny", seed=seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.uniform_(0.5, 1.5)
    return model


def test_widening_keeps_the_output_and_opens_the_pixel_path():
    model = trained_looking_tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    widened = with_query_rgb(model)
    assert widened.config == model.config.replace(query_rgb=True)
    assert widened.input_tokenizer.weight.shape[1] == 9 * model.config.patch_size**2
    with torch.no_grad():
        assert_same_output(widened(*tiny_scene()), model(*tiny_scene()), atol=1e-5)
    for k, v in model.state_dict().items():  # the model it was given is left as it was
        assert torch.equal(v, before[k]), k

    out = widened.train()(*tiny_scene())
    (out.sh.square().mean() + out.means.square().mean()).backward()
    grad = widened.input_tokenizer.weight.grad.reshape(model.config.width, -1, 9)
    assert grad[:, :, :3].abs().sum() > 0  # the colour weights start at zero but do learn


def test_query_rgb_round_trips_and_is_inferred_from_shapes(tmp_path):
    widened = with_query_rgb(trained_looking_tiny())
    with torch.no_grad():  # make the pixels matter, so a model that ignored them would differ
        widened.input_tokenizer.weight.reshape(widened.config.width, -1, 9)[:, :, :3].normal_(std=0.05)
        expected = widened.eval()(*tiny_scene())

    path = tmp_path / "q.safetensors"
    save_checkpoint(widened, path, dtype=torch.float32)
    loaded = load_model(path)
    assert loaded.config.query_rgb
    with torch.no_grad():
        assert_same_output(loaded(*tiny_scene()), expected)

    lightning = tmp_path / "q.ckpt"  # no config stored: it comes from the tensors' shapes
    write_lightning(lightning, published_state_dict(widened))
    inferred = load_model(lightning)
    assert inferred.config.query_rgb and inferred.config.width == widened.config.width
    with torch.no_grad():
        assert_same_output(inferred(*tiny_scene()), expected)


def test_query_rgb_is_an_ilrm_option():
    with pytest.raises(ValueError, match="iLRM option"):
        ILRMConfig(arch="gslrm", query_rgb=True)
    with pytest.raises(ValueError, match="iLRM option"):
        with_query_rgb(load_model(PRESETS["tiny"].replace(arch="gslrm")))


# --------------------------------------------------------------------------- the pixel-colour skip


@pytest.mark.parametrize("arch", ["ilrm", "gslrm"])
def test_colour_skip_mixes_the_model_colours_with_the_pixels(tmp_path, arch):
    model = load_model(PRESETS["tiny"].replace(arch=arch), seed=3)
    images, K, c2w = tiny_scene()
    with torch.no_grad():
        before = model(images, K, c2w)
    converted = with_colour_skip(model, 0.35)
    assert converted.config == model.config.replace(colour_skip=True) and with_colour_skip(converted) is converted
    with torch.no_grad():
        after = converted(images, K, c2w)
    pixels = images[0].permute(0, 2, 3, 1).reshape(-1, 3)  # (view, row, col), the Gaussians' order
    torch.testing.assert_close(after.sh[0, :, 0], 0.65 * before.sh[0, :, 0] + 0.35 * (pixels - 0.5) / SH_C0)
    for name in ("means", "quats", "scales", "opacities"):  # only the colours change
        torch.testing.assert_close(getattr(after, name), getattr(before, name))
    assert "colour_skip" not in model.state_dict()  # the model it was given is left as it was

    out = converted.train()(images, K, c2w)
    out.sh.square().mean().backward()
    assert converted.colour_skip.grad.abs().sum() > 0  # the weight is learnt

    path = tmp_path / "skip.safetensors"
    save_checkpoint(converted, path, dtype=torch.float32)
    loaded = load_model(path)
    assert loaded.config.colour_skip
    with torch.no_grad():
        assert_same_output(loaded(images, K, c2w), after)
    if arch == "ilrm":  # a file without a stored config: the option comes from its keys
        write_lightning(tmp_path / "skip.ckpt", published_state_dict(converted))
        assert load_model(tmp_path / "skip.ckpt").config.colour_skip
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        with_colour_skip(model, 1.5)


def test_fresh_colour_skip_model_starts_from_the_whole_pixel_colour():
    model = load_model(PRESETS["tiny"].replace(colour_skip=True), seed=3)
    assert torch.equal(model.colour_skip.detach(), torch.ones(3))
    assert not hasattr(load_model("tiny", seed=3), "colour_skip")


# --------------------------------------------------------------------------- growing a trained model


@pytest.mark.parametrize("arch, base, depth", [("ilrm", 2, 4), ("ilrm", 4, 6), ("gslrm", 2, 3)])
def test_growing_keeps_the_output_and_trains_the_new_blocks(tmp_path, arch, base, depth):
    model = load_model(PRESETS["tiny"].replace(arch=arch, depth=base), seed=3)
    with torch.no_grad():  # norms away from 1, so a mixed-up tensor would show
        for p in model.parameters():
            if p.dim() == 1:
                p.uniform_(0.5, 1.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grown = with_depth(model, depth)
    assert grown.config == model.config.replace(depth=depth) and len(grown.processor.blocks) == depth
    if arch == "ilrm":  # read and self blocks still alternate
        assert [type(b).__name__ for b in grown.processor.blocks] == ["ReadBlock", "SelfBlock"] * (depth // 2)
    with torch.no_grad():
        assert_same_output(grown(*tiny_scene()), model(*tiny_scene()), atol=1e-5)
    for k, v in model.state_dict().items():  # the model it was given is left as it was
        assert torch.equal(v, before[k]), k

    def outputs(block):  # attention proj and MLP fc2
        return [m for name, m in block.named_modules() if name.endswith(("proj", "fc2"))]

    new = [b for b in grown.processor.blocks if all(torch.count_nonzero(m.weight) == 0 for m in outputs(b))]
    assert len(new) == depth - base and len(outputs(new[0])) == 2
    out = grown.train()(*tiny_scene())
    (out.sh.square().mean() + out.means.square().mean()).backward()
    for block in new:  # zero output projections, but they learn from the first step
        assert all(m.weight.grad.abs().sum() > 0 for m in outputs(block))

    path = tmp_path / "grown.safetensors"  # round trip, and a Lightning file's depth from its shapes
    save_checkpoint(grown, path, dtype=torch.float32)
    assert load_model(path).config.depth == depth
    if arch == "ilrm":
        write_lightning(tmp_path / "grown.ckpt", published_state_dict(grown))
        assert load_model(tmp_path / "grown.ckpt").config.depth == depth


def test_growing_refuses_what_it_cannot_keep():
    model = trained_looking_tiny()  # 2 blocks: one read + self pair
    assert with_depth(model, 2) is model
    for depth in (1, 3, 6):  # shallower, half a pair, more than one new pair per old one
        with pytest.raises(ValueError, match="cannot grow"):
            with_depth(model, depth)
