"""Training on CPU through the real model and renderer: the loss falls, and resume is exact."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics

import pytest
import torch

from ilrm_ros.cli import main as cli_main
from ilrm_ros.train.scalars import read_scalars
from ilrm_ros.train.trainer import LAST_DIR, MODEL_FILE, TrainConfig, Trainer, read_state


def tiny_config(**changes) -> TrainConfig:
    base = dict(
        preset="tiny",
        steps=20,
        batch_size=1,
        lr=3e-3,
        warmup=2,
        resolution=(32, 32),
        num_targets=2,
        ckpt_every=0,
        scene_pool=2,
        grad_checkpointing=False,
        seed=0,
    )
    base.update(changes)
    return TrainConfig(**base)


def test_training_lowers_the_loss(tmp_path):
    trainer = Trainer(tiny_config(), tmp_path, device="cpu")
    batch = trainer.data.sample(1)  # one batch repeated: a real optimisation with a robust signal
    losses = [trainer.train_step(batch)["loss"] for _ in range(20)]
    trainer.close()
    assert all(torch.isfinite(torch.tensor(losses)))
    first, last = statistics.fmean(losses[:3]), statistics.fmean(losses[-3:])
    assert last < 0.7 * first, losses
    assert trainer.step == 20


def test_steps_report_their_context_view_count(tmp_path):
    """With 2 to 4 views drawn per batch, each step's scalars name the count it trained on."""
    trainer = Trainer(tiny_config(num_views=2, max_views=4), tmp_path, device="cpu")
    seen = set()
    for _ in range(12):
        batch = trainer.data.sample(1)
        seen.add(batch.context_images.shape[1])
        assert trainer.train_step(batch)["context_views"] == batch.context_images.shape[1]
    trainer.close()
    assert len(seen) > 1, seen


def test_resume_reproduces_the_next_steps(tmp_path):
    config = tiny_config(steps=10, ckpt_every=3)
    trainer = Trainer(config, tmp_path, device="cpu")
    summary = trainer.run(steps=3, progress=False)
    assert summary["step"] == 3 and (tmp_path / LAST_DIR / MODEL_FILE).is_file()
    # run() draws each next batch ahead, so this checkpoint was written while one batch waited
    expected = [trainer.train_step() for _ in range(2)]  # fresh batches from the data stream
    trainer.close()

    state = read_state(tmp_path)  # weights_only=True load of the training state
    assert state["step"] == 3 and state["config"]["steps"] == 10
    resumed = Trainer(config, tmp_path, device="cpu", resume=tmp_path)
    assert resumed.step == 3
    got = [resumed.train_step() for _ in range(2)]
    resumed.close()
    for e, g in zip(expected, got):
        assert g["loss"] == pytest.approx(e["loss"], abs=1e-6)
        assert g["lr"] == pytest.approx(e["lr"], rel=1e-9)
    # the second step after the checkpoint depends on the restored optimiser moments and schedule
    assert got[1]["grad_norm"] == pytest.approx(expected[1]["grad_norm"], rel=1e-5)


def test_cli_trains_in_chunks_and_logs(tmp_path, capsys):
    out = tmp_path / "run"
    common = [
        "train",
        "--preset",
        "tiny",
        "--resolution",
        "32",
        "--batch-size",
        "1",
        "--num-targets",
        "1",
        "--scene-pool",
        "2",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--no-progress",
        "--log-every",
        "1",
        "--resume",
        "auto",
        "--no-grad-checkpointing",
    ]
    assert cli_main(common + ["--steps", "3", "--max-minutes", "60"]) == 0
    assert read_state(out)["step"] == 3
    assert (out / "model_fp16.safetensors").is_file()  # every chunk exports the fp16 weights
    assert cli_main(common + ["--steps", "4"]) == 0  # resumes, extends the schedule by one step
    state = read_state(out)
    assert state["step"] == 4 and state["config"]["resolution"] == [32, 32]
    records = read_scalars(out / "logs")
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(r["loss"] > 0 and "lr" in r for r in records)
    for r in records:  # the step's parts, each timed inside the step as a whole
        parts = [r["time_data"], r["time_forward"], r["time_backward"]]
        assert min(parts) > 0 and sum(parts) <= r["step_time"]
    meta_config = json.loads((out / LAST_DIR / "config.json").read_text())
    assert meta_config["steps"] == 4
    assert "stopped (steps) at step 4/4" in capsys.readouterr().out


def test_time_budget_stops_before_the_limit(tmp_path):
    import time

    trainer = Trainer(tiny_config(steps=100_000), tmp_path, device="cpu")
    start = time.monotonic()
    summary = trainer.run(max_minutes=0.2, start_time=start, progress=False)  # 12 s including the final save
    trainer.close()
    assert summary["stopped"] == "time" and summary["step"] < 100_000
    assert time.monotonic() - start < 12.0
    assert read_state(tmp_path)["step"] == summary["step"]


def test_gaussian_depth_term_trains(tmp_path):
    trainer = Trainer(tiny_config(gaussian_depth_weight=1.0, depth_weight=0.1), tmp_path, device="cpu")
    batch = trainer.data.sample(1)
    first = trainer.train_step(batch)
    for _ in range(8):
        last = trainer.train_step(batch)
    trainer.close()
    assert math.isfinite(first["gaussian_depth_l1"]) and "depth_l1" in first
    assert last["gaussian_depth_l1"] < first["gaussian_depth_l1"]  # the term has a gradient into the model


def test_mixed_view_counts_train_and_keep_the_model_window(tmp_path):
    """--max-views: batches of 2 and 3 context views through one model; the checkpoint keeps 2."""
    trainer = Trainer(tiny_config(num_views=2, max_views=3, steps=6, seed=1), tmp_path, device="cpu")
    counts = set()
    for _ in range(6):
        batch = trainer.data.sample(1)
        counts.add(batch.context_images.shape[1])
        assert math.isfinite(trainer.train_step(batch)["loss"])
    trainer.save()
    trainer.close()
    assert counts == {2, 3}
    assert json.loads((tmp_path / LAST_DIR / "config.json").read_text())["max_views"] == 3
    from ilrm_ros.model import load_model

    assert load_model(str(tmp_path / LAST_DIR / MODEL_FILE), device="cpu").config.num_views == 2

    from ilrm_ros.cli import build_parser
    from ilrm_ros.cli.train import resolve_config

    args = build_parser("train").parse_args(["train", "--max-views", "4", "--out", str(tmp_path / "cli")])
    assert resolve_config(args)[0].max_views == 4  # the option reaches the config


def test_gslrm_baseline_trains_through_the_same_loop(tmp_path):
    """--arch gslrm: the GS-LRM-style baseline at the preset's size, saved with its arch."""
    from ilrm_ros.model import load_model

    trainer = Trainer(tiny_config(arch="gslrm", steps=2), tmp_path, device="cpu")
    assert trainer.model.config.arch == "gslrm"
    trainer.run(steps=2, progress=False)
    trainer.close()
    assert load_model(str(tmp_path / LAST_DIR / MODEL_FILE)).config.arch == "gslrm"
    with pytest.raises(ValueError, match="gslrm"):
        Trainer(tiny_config(arch="ilrm", init=str(tmp_path / LAST_DIR / MODEL_FILE)), tmp_path / "b", device="cpu")


def test_compiled_training_matches_eager(tmp_path):
    """--compile: the same losses and gradients as the plain module, and checkpoints with plain names."""
    from safetensors.torch import load_file

    from ilrm_ros.cli import build_parser
    from ilrm_ros.cli.train import resolve_config

    results = {}
    for compiled in (False, True):
        trainer = Trainer(tiny_config(compile=compiled, steps=3), tmp_path / str(compiled), device="cpu")
        assert (getattr(trainer.model, "_compiled_call_impl", None) is not None) == compiled
        batch = trainer.next_batch()  # the stream's first batch, whether or not compiled ahead on it
        results[compiled] = [trainer.train_step(batch) for _ in range(2)]
        trainer.save()
        trainer.close()
    for eager, comp in zip(results[False], results[True]):
        assert comp["loss"] == pytest.approx(eager["loss"], rel=1e-4)
        assert comp["grad_norm"] == pytest.approx(eager["grad_norm"], rel=1e-3)
    names = set(load_file(tmp_path / "True" / LAST_DIR / MODEL_FILE))
    assert names == set(load_file(tmp_path / "False" / LAST_DIR / MODEL_FILE))
    assert not any("_orig_mod" in n for n in names)

    args = build_parser("train").parse_args(["train", "--compile", "--out", str(tmp_path / "cli")])
    assert resolve_config(args)[0].compile  # the option reaches the config


def test_compile_ahead_covers_every_view_count_and_keeps_the_stream(tmp_path):
    """--compile with 2-3 views compiles both graphs before the first step: the steps then compile
    nothing more, and train on the batches an uncompiled run draws, to the same losses."""
    import torch._dynamo

    config = tiny_config(num_views=2, max_views=3, steps=8)
    plain = Trainer(config, tmp_path / "plain", device="cpu")
    compiled = Trainer(dataclasses.replace(config, compile=True), tmp_path / "compiled", device="cpu")
    assert plain.compile_seconds is None and compiled.compile_seconds is not None
    seen = set()
    with torch._dynamo.config.patch(error_on_recompile=True):
        while len(seen) < 2 and compiled.step < 8:
            a, b = plain.next_batch(), compiled.next_batch()
            assert torch.equal(a.context_images, b.context_images)
            seen.add(b.context_images.shape[1])
            assert compiled.train_step(b)["loss"] == pytest.approx(plain.train_step(a)["loss"], rel=1e-4)
    plain.close()
    compiled.close()
    assert seen == {2, 3}


def test_footprint_weight_shrinks_the_splats(tmp_path):
    """--footprint-weight reaches the config, adds its term to the loss, and training on it shrinks
    the Gaussians' opacity-weighted footprint (compared with the same steps without it)."""
    from ilrm_ros.cli import build_parser
    from ilrm_ros.cli.train import resolve_config

    argv = ["train", "--out", str(tmp_path / "cli"), "--footprint-weight", "0.5", "--footprint-floor", "1"]
    config = resolve_config(build_parser("train").parse_args(argv))[0]
    assert (config.footprint_weight, config.footprint_floor) == (0.5, 1.0)
    with pytest.raises(SystemExit):
        build_parser("train").parse_args(["train", "--footprint-floor", "-1"])

    def footprint_after(weight: float) -> tuple[float, dict]:
        trainer = Trainer(tiny_config(footprint_weight=weight, steps=12), tmp_path / str(weight), device="cpu")
        batch = trainer.data.sample(1)
        first = trainer.train_step(batch)
        for _ in range(10):
            trainer.train_step(batch)
        trainer.config = dataclasses.replace(trainer.config, footprint_weight=1.0)  # to measure it
        with torch.no_grad():
            _, terms = trainer.forward_loss(batch)
            trainer.config = dataclasses.replace(trainer.config, footprint_floor=1e6)  # every splat under it
            _, floored = trainer.forward_loss(batch)
        trainer.close()
        assert float(floored["footprint_px"]) == 0.0 < float(terms["footprint_px"])
        return float(terms["footprint_px"]), first

    plain, first = footprint_after(0.0)
    assert "footprint_px" not in first
    shrunk, first = footprint_after(1.0)
    assert first["loss"] > first["mse"] + first["footprint_px"] * 0.99  # the term is in the loss
    assert shrunk < 0.9 * plain, (shrunk, plain)


def test_psnr_colour_loss_reaches_training(tmp_path):
    """--rgb-loss psnr reaches the config, is stored for a resume, and trains: steps log the mean
    per-image PSNR, and the loss on a repeated batch falls."""
    from ilrm_ros.cli import build_parser
    from ilrm_ros.cli.train import resolve_config

    argv = ["train", "--out", str(tmp_path / "cli"), "--rgb-loss", "psnr"]
    assert resolve_config(build_parser("train").parse_args(argv))[0].rgb_loss == "psnr"
    with pytest.raises(SystemExit):
        build_parser("train").parse_args(["train", "--rgb-loss", "l1"])
    trainer = Trainer(tiny_config(rgb_loss="psnr", steps=12), tmp_path / "run", device="cpu")
    batch = trainer.data.sample(1)
    steps = [trainer.train_step(batch) for _ in range(12)]
    trainer.save()
    trainer.close()
    assert read_state(tmp_path / "run" / LAST_DIR)["config"]["rgb_loss"] == "psnr"
    assert all("psnr_images" in s for s in steps)
    assert statistics.fmean(s["loss"] for s in steps[-3:]) < 0.8 * statistics.fmean(s["loss"] for s in steps[:3])


@pytest.mark.parametrize(
    "options, matches",
    [
        ({"context_targets": 1}, 1),  # half the targets lie beyond the span; one of the others is a context frame
        ({"context_targets": 3, "beyond_fraction": 0.0}, 3),  # every target is a context frame
    ],
)
def test_context_targets_reach_the_data_stream(tmp_path, options, matches):
    """--context-targets N (and --beyond-fraction): N targets of each sample are context frames."""
    from ilrm_ros.cli import build_parser
    from ilrm_ros.cli.train import resolve_config

    argv = ["train", "--out", str(tmp_path / "cli")]
    for name, value in options.items():
        argv += ["--" + name.replace("_", "-"), str(value)]
    config = resolve_config(build_parser("train").parse_args(argv))[0]
    assert {name: getattr(config, name) for name in options} == options
    trainer = Trainer(tiny_config(num_targets=3, **options), tmp_path, device="cpu")
    batch = trainer.data.sample(2)
    trainer.close()
    for b in range(2):
        is_context = [
            any(
                torch.equal(batch.target_cam_to_world[b, t], batch.context_cam_to_world[b, c])
                and torch.equal(batch.target_images[b, t], batch.context_images[b, c])
                for c in range(batch.context_images.shape[1])
            )
            for t in range(3)
        ]
        assert sum(is_context) >= matches


def test_beyond_fraction_must_be_a_fraction(capsys):
    from ilrm_ros.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser("train").parse_args(["train", "--beyond-fraction", "1.5"])
    assert "not in [0, 1]" in capsys.readouterr().err


def two_views() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A fixed 2-view 32x32 input (images, intrinsics, cam_to_world) for comparing two models' outputs."""
    images = torch.rand(1, 2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    K = torch.tensor([[40.0, 0, 16], [0, 40.0, 16], [0, 0, 1]]).expand(1, 2, 3, 3)
    c2w = torch.eye(4).repeat(1, 2, 1, 1)
    c2w[0, 1, 0, 3] = 0.3
    return images, K, c2w


def test_query_rgb_starts_from_the_init_and_stays_on(tmp_path):
    """--query-rgb with an --init that lacks it: the run starts from that model's output, trains the
    new colour weights, and its checkpoints (and a resume) keep the option."""
    from ilrm_ros.cli import build_parser
    from ilrm_ros.cli.train import resolve_config
    from ilrm_ros.model import load_model, save_checkpoint

    argv = ["train", "--query-rgb", "--out", str(tmp_path / "cli")]
    assert resolve_config(build_parser("train").parse_args(argv))[0].query_rgb
    init = tmp_path / "init.safetensors"
    save_checkpoint(load_model("tiny", seed=5), init, dtype=torch.float32)

    config = tiny_config(init=str(init), query_rgb=True, steps=4, ckpt_every=2)
    trainer = Trainer(config, tmp_path / "run", device="cpu")
    model = trainer.model
    assert model.config.query_rgb
    colour = model.input_tokenizer.weight.reshape(model.config.width, -1, 9)[:, :, :3]
    assert torch.count_nonzero(colour) == 0
    images, K, c2w = two_views()
    with torch.no_grad():  # the same model, up to float rounding (depths reach hundreds)
        got, want = model(images, K, c2w), load_model(init)(images, K, c2w)
    torch.testing.assert_close(got.means, want.means, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(got.sh, want.sh, atol=1e-5, rtol=1e-5)
    trainer.run(steps=4, progress=False)
    trainer.close()
    assert torch.count_nonzero(colour) > 0

    saved = load_model(tmp_path / "run" / LAST_DIR / MODEL_FILE)
    assert saved.config.query_rgb
    resumed = Trainer(config, tmp_path / "run", device="cpu", resume=tmp_path / "run")
    assert resumed.model.config.query_rgb and resumed.step == 4
    resumed.close()

    plain = tiny_config(init=str(init), steps=2, ckpt_every=2)
    first = Trainer(plain, tmp_path / "plain", device="cpu")
    first.run(steps=2, progress=False)
    first.close()
    with pytest.raises(ValueError, match="when resuming"):
        Trainer(config, tmp_path / "plain", device="cpu", resume=tmp_path / "plain")


def test_colour_skip_converts_the_init_and_a_resume_keeps_it(tmp_path):
    """--colour-skip with an --init that lacks it: the run starts from the mix of both colours at the
    given weight, learns the weight, and its checkpoints (and a resume) keep the option."""
    from ilrm_ros.cli import build_parser
    from ilrm_ros.cli.train import resolve_config
    from ilrm_ros.model import load_model, save_checkpoint

    parse = build_parser("train").parse_args
    assert resolve_config(parse(["train", "--colour-skip", "--out", "x"]))[0].colour_skip == 1.0
    assert resolve_config(parse(["train", "--colour-skip", "0.5", "--out", "x"]))[0].colour_skip == 0.5
    assert resolve_config(parse(["train", "--out", "x"]))[0].colour_skip is None
    init = tmp_path / "init.safetensors"
    save_checkpoint(load_model("tiny", seed=5), init, dtype=torch.float32)
    config = tiny_config(init=str(init), colour_skip=0.5, steps=2, ckpt_every=2)
    trainer = Trainer(config, tmp_path / "run", device="cpu")
    weight = trainer.model.colour_skip
    assert torch.equal(weight.detach(), torch.full((3,), 0.5))
    trainer.run(steps=2, progress=False)
    trainer.close()
    assert not torch.equal(weight.detach(), torch.full((3,), 0.5))  # learnt
    saved = load_model(tmp_path / "run" / LAST_DIR / MODEL_FILE)
    assert saved.config.colour_skip
    torch.testing.assert_close(saved.colour_skip, weight.detach(), atol=1e-3, rtol=1e-3)  # fp16 on disk
    resumed = Trainer(config, tmp_path / "run", device="cpu", resume=tmp_path / "run")
    assert resumed.model.config.colour_skip and resumed.step == 2
    resumed.close()
    fresh = Trainer(tiny_config(colour_skip=0.8, steps=2), tmp_path / "fresh", device="cpu")
    assert torch.equal(fresh.model.colour_skip.detach(), torch.full((3,), 0.8))
    fresh.close()
    plain = Trainer(tiny_config(init=str(init), steps=2, ckpt_every=2), tmp_path / "plain", device="cpu")
    plain.run(steps=2, progress=False)
    plain.close()
    with pytest.raises(ValueError, match="when resuming"):
        Trainer(config, tmp_path / "plain", device="cpu", resume=tmp_path / "plain")


def test_depth_grows_the_init_and_a_resume_keeps_it(tmp_path):
    """--depth with a shallower --init: the run starts from that model's output with the new blocks,
    and its checkpoints and a resume keep the depth."""
    from ilrm_ros.cli import build_parser
    from ilrm_ros.cli.train import resolve_config
    from ilrm_ros.model import load_model, save_checkpoint

    assert resolve_config(build_parser("train").parse_args(["train", "--depth", "4", "--out", "x"]))[0].depth == 4
    init = tmp_path / "init.safetensors"
    save_checkpoint(load_model("tiny", seed=5), init, dtype=torch.float32)
    config = tiny_config(init=str(init), depth=4, steps=2, ckpt_every=2)
    trainer = Trainer(config, tmp_path / "run", device="cpu")
    assert trainer.model.config.depth == 4
    images, K, c2w = two_views()
    with torch.no_grad():
        got, want = trainer.model(images, K, c2w), load_model(init)(images, K, c2w)
    torch.testing.assert_close(got.means, want.means, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(got.sh, want.sh, atol=1e-5, rtol=1e-5)
    trainer.run(steps=2, progress=False)
    trainer.close()
    assert load_model(tmp_path / "run" / LAST_DIR / MODEL_FILE).config.depth == 4
    resumed = Trainer(config, tmp_path / "run", device="cpu", resume=tmp_path / "run")
    assert resumed.model.config.depth == 4 and resumed.step == 2
    resumed.close()
    with pytest.raises(ValueError, match="resumed has 4 blocks"):
        Trainer(tiny_config(init=str(init), depth=6), tmp_path / "run", device="cpu", resume=tmp_path / "run")
    fresh = Trainer(tiny_config(depth=4), tmp_path / "fresh", device="cpu")  # a preset at another depth
    assert fresh.model.config.depth == 4 and len(fresh.model.processor.blocks) == 4
    fresh.close()


def test_mix_resolution_trains_on_each_size_and_records_the_first(tmp_path):
    from ilrm_ros.cli import build_parser
    from ilrm_ros.cli.train import resolve_config
    from ilrm_ros.model import load_model

    argv = ["train", "--resolution", "32", "--mix-resolution", "32x40", "--out", str(tmp_path / "x")]
    parsed = resolve_config(build_parser("train").parse_args(argv))[0]
    assert parsed.resolution == (32, 32) and parsed.mix_resolutions == ((32, 40),)
    config = tiny_config(mix_resolutions=((32, 40),), steps=4, ckpt_every=4)
    assert TrainConfig.from_dict(config.to_dict()) == config
    trainer = Trainer(config, tmp_path / "run", device="cpu")
    sizes = {trainer.data.sample(1).image_size for _ in range(6)}
    assert sizes == {(32, 32), (32, 40)}
    trainer.run(steps=4, progress=False)
    trainer.close()
    assert load_model(tmp_path / "run" / LAST_DIR / MODEL_FILE).config.image_size == (32, 32)
    with pytest.raises(ValueError, match="not divisible"):
        Trainer(tiny_config(mix_resolutions=((32, 36),)), tmp_path / "bad", device="cpu")
    with pytest.raises(ValueError, match="needs --data synthetic"):
        Trainer(tiny_config(mix_resolutions=((32, 40),), data="bag"), tmp_path / "bag", device="cpu")


class _StepClock:
    """The trainer's clock, moved on by each optimiser step's duration (``seconds(step)``)."""

    def __init__(self, seconds) -> None:
        self.now, self.seconds = 0.0, seconds

    def monotonic(self) -> float:
        return self.now


def _timed_run(monkeypatch, out, fit: bool, minutes: float, seconds=lambda step: 1.0):
    """Train the tiny preset (1000 steps planned) on a fake clock; returns (trainer, summary, last lr)."""
    import ilrm_ros.train.trainer as trainer_module

    clock = _StepClock(seconds)
    monkeypatch.setattr(trainer_module, "time", clock)
    trainer = Trainer(tiny_config(steps=1000, warmup=5), out, device="cpu")
    step = trainer.train_step

    def timed_step(*args, **kwargs):
        clock.now += clock.seconds(trainer.step)
        return step(*args, **kwargs)

    trainer.train_step = timed_step
    summary = trainer.run(max_minutes=minutes, progress=False, fit_to_time=fit)
    lr = trainer.optimizer.param_groups[0]["lr"]
    trainer.close()
    return trainer, summary, lr


def test_fit_to_time_ends_the_schedule_inside_the_budget(tmp_path, monkeypatch):
    """``fit_to_time``: the cosine ends inside ``max_minutes`` instead of being cut off partway down it."""
    import ilrm_ros.train.trainer as trainer_module

    plain, summary, lr = _timed_run(monkeypatch, tmp_path / "plain", False, 1.0)
    assert summary["stopped"] == "time" and lr > 0.9 * plain.config.lr  # cut off near the top of the cosine

    fitted, summary, lr = _timed_run(monkeypatch, tmp_path / "fitted", True, 1.0)
    assert summary["stopped"] == "steps"
    assert trainer_module.FIT_AFTER < summary["step"] == fitted.config.steps < 60
    assert lr == pytest.approx(fitted.config.lr * fitted.config.min_lr_ratio)  # the floor: the cosine ran out
    assert read_state(tmp_path / "fitted")["config"]["steps"] == summary["step"]  # a resume keeps the fitted plan


@pytest.mark.parametrize("slow_down", [True, False], ids=["slower", "faster"])
def test_fit_to_time_plans_again_when_the_step_rate_changes(tmp_path, monkeypatch, slow_down):
    """Steps that change speed after the first plan (1.0 s then 1.5 s, or the reverse) still end the
    cosine inside the budget, and close to its end.

    One plan only runs out of time before the schedule's end when the steps slow down (session 21's
    run C stopped at step 2537 of 2631 so), and ends with time to spare when they speed up (run S
    ended 15 % early).
    """
    import ilrm_ros.train.trainer as trainer_module

    def seconds(step: int) -> float:
        return (1.0, 1.5)[(step < 10) != slow_down]

    budget = 60.0
    reserve = 13.0  # kept back at the end: 1.5 steps, 1.5 x the default 5 s save time, and 2 s
    monkeypatch.setattr(trainer_module, "FIT_AFTER", 5)
    monkeypatch.setattr(trainer_module, "FIT_EVERY", 10**6)  # one plan only
    _, summary, _ = _timed_run(monkeypatch, tmp_path / "once", True, budget / 60, seconds)
    if slow_down:
        assert summary["stopped"] == "time"
    else:
        assert summary["stopped"] == "steps" and summary["seconds"] < budget - reserve - 8

    monkeypatch.setattr(trainer_module, "FIT_EVERY", 5)
    replanned, summary, lr = _timed_run(monkeypatch, tmp_path / "again", True, budget / 60, seconds)
    assert summary["stopped"] == "steps" and summary["step"] == replanned.config.steps
    assert budget - reserve - 4 < summary["seconds"] < budget
    assert lr == pytest.approx(replanned.config.lr * replanned.config.min_lr_ratio)


def test_fit_to_time_needs_a_time_budget(tmp_path):
    with pytest.raises(SystemExit, match="--fit-to-time needs --max-minutes"):
        cli_main(["train", "--preset", "tiny", "--out", str(tmp_path), "--fit-to-time"])
