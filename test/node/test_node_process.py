"""`ilrm_node` as a process: a bad checkpoint fails at start-up with one clear line; Ctrl-C exits 0."""

from __future__ import annotations

import signal
import subprocess
import sys
import time


def _node(*params: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "ilrm_ros.node.main", "--ros-args", "-p", "device:=cpu"]
    for p in params:
        cmd += ["-p", p]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_missing_checkpoint_fails_with_one_clear_line(tmp_path):
    proc = _node(f"checkpoint:={tmp_path / 'missing.safetensors'}")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1
    fatal = [line for line in out.splitlines() if "FATAL" in line]
    assert len(fatal) == 1 and "cannot load checkpoint" in fatal[0] and "missing.safetensors" in fatal[0], out
    assert "Traceback" not in out


def test_corrupt_checkpoint_fails_with_one_clear_line(tmp_path):
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"\x00garbage" * 100)
    proc = _node(f"checkpoint:={bad}")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "Traceback" not in out
    assert sum("FATAL" in line and "corrupt.safetensors" in line for line in out.splitlines()) == 1, out


def test_out_of_range_parameter_fails_at_start_up():
    proc = _node("scene.budget:=5")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "Traceback" not in out
    fatal = [line for line in out.splitlines() if "FATAL" in line]
    assert len(fatal) == 1 and "scene.budget" in fatal[0] and "out of range" in fatal[0], out


def test_ctrl_c_exits_cleanly():
    proc = _node()
    deadline = time.monotonic() + 120
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "ready:" in line or not line:
            break
    assert any("ready:" in line for line in lines), "".join(lines)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, "".join(lines) + out
    assert "Traceback" not in out
