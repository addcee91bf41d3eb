"""`colcon build` of the package (ament_python) installs the executables where `ros2 run` looks."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COLCON = shutil.which("colcon") or str(Path(sys.executable).with_name("colcon"))


@pytest.mark.skipif(not Path(COLCON).exists(), reason="colcon is not installed (make setup installs it)")
def test_colcon_build_installs_executables_and_share(tmp_path):
    src = tmp_path / "src" / "ilrm_ros"
    src.parent.mkdir()
    # Only what a clone has: the package files, not the venv or build outputs.
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "build", "install", "log",
                                                              "__pycache__", "*.egg-info", ".pytest_cache", ".whl"))
    result = subprocess.run(
        [COLCON, "--log-base", str(tmp_path / "log"), "build", "--base-paths", str(tmp_path / "src"),
         "--build-base", str(tmp_path / "build"), "--install-base", str(tmp_path / "install")],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    prefix = tmp_path / "install" / "ilrm_ros"
    assert (prefix / "lib" / "ilrm_ros" / "ilrm_node").exists()
    assert (prefix / "lib" / "ilrm_ros" / "ilrm").exists()
    share = prefix / "share" / "ilrm_ros"
    assert (share / "package.xml").exists()
    assert (share / "launch" / "ilrm.launch.py").exists()
    assert (share / "config" / "ilrm.yaml").exists()
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "ilrm_ros").exists()
