"""The cross-process lock that serialises gsplat's first-use kernel build (real processes, CPU)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from ilrm_ros.render.gsplat_backend import exclusive_file_lock

HOLDER = """
import os, sys, time
from pathlib import Path
from ilrm_ros.render.gsplat_backend import exclusive_file_lock
lock, held, log, mode = sys.argv[1:5]
with exclusive_file_lock(lock):
    Path(held).touch()
    time.sleep(1.0)
    with open(log, "a") as f:
        f.write("holder done\\n")
    if mode == "die":
        os._exit(0)  # no unlock, no cleanup: as if killed mid-build
"""


def _start_holder(tmp_path, mode: str) -> subprocess.Popen:
    held = tmp_path / f"held-{mode}"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "build.lock"), str(held),
                             str(tmp_path / "log"), mode])
    deadline = time.monotonic() + 60
    while not held.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "holder did not take the lock"
        time.sleep(0.02)
    return proc


def _acquire_in_thread(tmp_path) -> bool:
    """Take the lock in a thread (bounded, so a bug cannot hang the suite); record what was logged then."""
    seen = []

    def take() -> None:
        with exclusive_file_lock(tmp_path / "build.lock"):
            seen.append((tmp_path / "log").read_text() if (tmp_path / "log").exists() else "")

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    thread.join(30)
    return bool(seen) and seen[0] == "holder done\n"


def test_second_process_waits_for_the_first(tmp_path):
    proc = _start_holder(tmp_path, "release")
    assert _acquire_in_thread(tmp_path), "the lock was taken while another process held it"
    assert proc.wait(30) == 0


def test_lock_of_a_dead_holder_is_released(tmp_path):
    proc = _start_holder(tmp_path, "die")
    assert _acquire_in_thread(tmp_path), "the dead holder's lock was not released (or not waited for)"
    assert proc.wait(30) == 0
