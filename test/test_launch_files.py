"""Launch files and configs are consistent with what is installed, without the launch packages.

`launch`/`launch_ros` have no pip wheels, so the files are checked statically: every executable they
start is a console script of this package (or a ROS tool), every file they name exists, and every
parameter in config/ilrm.yaml is one the node declares. Where launch_ros is importable (a robot),
the launch descriptions are also built.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import yaml

from ilrm_ros.node.ilrm_node import ALL_PARAMS
from ilrm_ros.replay import flatten

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))
ROS_TOOLS = {("rviz2", "rviz2")}


def _calls(path: Path, name: str) -> list[ast.Call]:
    tree = ast.parse(path.read_text())
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == name]


def _kwarg(call: ast.Call, key: str):
    for kw in call.keywords:
        if kw.arg == key:
            return kw.value
    return None


def test_launch_files_exist():
    assert {p.name for p in LAUNCH_FILES} == {"ilrm.launch.py", "demo.launch.py"}


def test_executables_are_installed_console_scripts():
    from importlib import metadata

    scripts = {ep.name for ep in metadata.entry_points(group="console_scripts")
               if ep.dist is not None and ep.dist.name == "ilrm_ros"}
    found = 0
    for path in LAUNCH_FILES:
        for call in _calls(path, "Node"):
            package = ast.literal_eval(_kwarg(call, "package"))
            executable = ast.literal_eval(_kwarg(call, "executable"))
            found += 1
            if package == "ilrm_ros":
                assert executable in scripts, f"{path.name}: {executable} is not a console script"
            else:
                assert (package, executable) in ROS_TOOLS, f"{path.name}: unexpected {package}/{executable}"
        for call in _calls(path, "ExecuteProcess"):
            cmd = _kwarg(call, "cmd")
            assert ast.literal_eval(cmd.elts[0]) == "ros2" and ast.literal_eval(cmd.elts[1]) == "bag"
    assert found >= 2


def test_named_files_exist():
    text = "".join(p.read_text() for p in LAUNCH_FILES)
    for name in ("ilrm.yaml", "ilrm.rviz", "ilrm.launch.py"):
        assert name in text
    assert (ROOT / "config" / "ilrm.yaml").exists()
    assert (ROOT / "config" / "ilrm.rviz").exists()


def test_launch_arguments_map_to_node_parameters():
    declared = {p.name for p in ALL_PARAMS} | {"use_sim_time"}
    call = _calls(ROOT / "launch" / "ilrm.launch.py", "Node")[0]
    params = _kwarg(call, "parameters")
    overrides = [e for e in params.elts if isinstance(e, ast.Dict)][0]
    for key in overrides.keys:
        assert ast.literal_eval(key) in declared


def test_config_parameters_are_declared_and_valid():
    tree = yaml.safe_load((ROOT / "config" / "ilrm.yaml").read_text())
    params = flatten(tree["/**"]["ros__parameters"])
    by_name = {p.name: p for p in ALL_PARAMS}
    unknown = sorted(set(params) - set(by_name))
    assert not unknown, f"config/ilrm.yaml sets undeclared parameters: {unknown}"
    assert set(by_name) <= set(params), f"config/ilrm.yaml misses: {sorted(set(by_name) - set(params))}"
    for name, value in params.items():
        p = by_name[name]
        assert type(value) is type(p.default) or (isinstance(p.default, float) and isinstance(value, float)), name
        if p.choices:
            assert value in p.choices, name


@pytest.mark.skipif(importlib.util.find_spec("launch_ros") is None, reason="launch_ros is not installed here")
def test_launch_descriptions_build():  # pragma: no cover - runs on machines with ROS 2 installed
    for path in LAUNCH_FILES:
        spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.generate_launch_description().entities
