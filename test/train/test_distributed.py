"""DDP through torchrun on CPU (gloo): the same ``ilrm train`` as one process, with two ranks."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from ilrm_ros.train.distributed import backend_for
from ilrm_ros.train.trainer import read_state


def test_backend_nccl_only_when_each_rank_has_its_own_gpu():
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert backend_for(cuda, local_world_size=2, gpu_count=2) == "nccl"
    assert backend_for(cuda, local_world_size=3, gpu_count=2) == "gloo"  # two ranks would share a GPU
    assert backend_for(cpu, local_world_size=2, gpu_count=0) == "gloo"


def test_two_ranks_train_resume_and_save_both_data_streams(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    args = ["-m", "ilrm_ros.cli", "train", "--preset", "tiny", "--resolution", "32", "--batch-size", "1"]
    args += ["--num-targets", "1", "--scene-pool", "2", "--device", "cpu", "--out", str(out), "--no-progress"]
    args += ["--log-every", "1", "--no-grad-checkpointing", "--resume", "auto"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run(cmd + args + ["--steps", "2"], env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-4000:]
    assert "on cpu x2" in first.stdout and "stopped (steps) at step 2/2" in first.stdout
    state = read_state(out)
    assert state["world_size"] == 2 and state["step"] == 2
    streams = [r["data"] for r in state["ranks"]]
    assert [s["rank"] for s in streams] == [0, 1] and streams[0]["rng"] != streams[1]["rng"]

    again = subprocess.run(cmd + args + ["--steps", "3"], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-4000:]
    assert "resuming" in again.stdout and read_state(out)["step"] == 3


def test_two_ranks_compile_every_view_count_ahead(tmp_path):
    """--compile under torchrun: each rank compiles one view count's graph, then loads the other from the
    shared cache (no gradient sync while doing so), and training then runs without deadlock."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    args = ["-m", "ilrm_ros.cli", "train", "--preset", "tiny", "--resolution", "32", "--batch-size", "1"]
    args += ["--num-targets", "1", "--scene-pool", "2", "--device", "cpu", "--out", str(tmp_path), "--no-progress"]
    args += ["--no-grad-checkpointing", "--compile", "--num-views", "2", "--max-views", "3", "--steps", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    run = subprocess.run(cmd + args, env=env, capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    assert "compiled 2 view counts ahead" in run.stdout and "stopped (steps) at step 3/3" in run.stdout
    assert any((tmp_path / "inductor").iterdir())  # the ranks shared their graphs through this cache
