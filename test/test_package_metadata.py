"""colcon/ament metadata is valid and complete: package.xml, setup.py entry points and data files."""

from __future__ import annotations

import ast
import os
import sys
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Python import name -> requirement name (pip-only or rosdep-keyed libraries).
PIP_MODULES = {
    "torch": "torch",
    "gsplat": "gsplat",
    "numpy": "numpy",
    "rosbags": "rosbags",
    "safetensors": "safetensors",
    "PIL": "pillow",
    "cv2": "opencv-python-headless",
    "pytorch_msssim": "pytorch-msssim",
    "tqdm": "tqdm",
    "yaml": "pyyaml",
    "viser": "viser",
}
# ROS packages importable from Python that are not message packages.
ROS_MODULES = {"rclpy", "launch", "launch_ros", "rosidl_runtime_py", "ament_index_python", "cv_bridge",
               "sensor_msgs_py"}
# Optional imports guarded at runtime (not required on every machine).
OPTIONAL = {"launch", "launch_ros", "rosidl_runtime_py", "ament_index_python", "cv_bridge", "sensor_msgs_py"}


def _package_xml() -> ET.Element:
    return ET.parse(ROOT / "package.xml").getroot()


def _exec_depends() -> set[str]:
    root = _package_xml()
    return {e.text.strip() for tag in ("exec_depend", "depend") for e in root.findall(tag)}


def _requirements() -> set[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    names = set()
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            names.add(line.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip().lower())
    return names


def _top_level_imports() -> set[str]:
    found = set()
    files = list((ROOT / "ilrm_ros").rglob("*.py")) + list((ROOT / "launch").glob("*.py"))
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"ilrm_ros", "__future__"}


def test_package_xml_is_format_3_ament_python():
    root = _package_xml()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == "ilrm_ros"
    assert root.find("export/build_type").text == "ament_python"
    assert "ament_python" in {e.text for e in root.findall("buildtool_depend")}
    required = {"rclpy", "sensor_msgs", "geometry_msgs", "nav_msgs", "std_msgs", "std_srvs",
                "visualization_msgs", "diagnostic_msgs", "cv_bridge", "sensor_msgs_py"}
    assert required <= _exec_depends()


def test_every_import_is_declared():
    deps, reqs = _exec_depends(), _requirements()
    undeclared = []
    for module in sorted(_top_level_imports()):
        if module in PIP_MODULES:
            if PIP_MODULES[module] not in reqs:
                undeclared.append(f"{module} (requirements.txt: {PIP_MODULES[module]})")
        elif module in ROS_MODULES or module.endswith(("_msgs", "_srvs", "_interfaces")):
            if module not in deps:
                undeclared.append(f"{module} (package.xml exec_depend)")
        else:
            undeclared.append(f"{module} (unknown: add it to package.xml or requirements.txt and to this test)")
    assert not undeclared, "imports without a declared dependency: " + ", ".join(undeclared)


def test_ros_and_message_packages_are_installed_here():
    """Every declared ROS Python dependency except the robot-only ones imports in this environment."""
    import importlib

    for module in sorted(_top_level_imports()):
        if (module in ROS_MODULES or module.endswith(("_msgs", "_srvs", "_interfaces"))) and module not in OPTIONAL:
            importlib.import_module(module)


def test_console_scripts_installed():
    scripts = {ep.name: ep.value for ep in metadata.entry_points(group="console_scripts")
               if ep.dist is not None and ep.dist.name == "ilrm_ros"}
    assert scripts == {"ilrm_node": "ilrm_ros.node.main:main", "ilrm": "ilrm_ros.cli:main"}


def test_setup_installs_launch_config_and_marker():
    from distutils.core import run_setup

    import setuptools  # noqa: F401  (provides distutils on Python 3.12+)

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        dist = run_setup("setup.py", stop_after="config")
    finally:
        os.chdir(cwd)
    files = {dest: set(srcs) for dest, srcs in dist.data_files}
    assert files["share/ament_index/resource_index/packages"] == {"resource/ilrm_ros"}
    assert "package.xml" in files["share/ilrm_ros"]
    assert {f"launch/{p.name}" for p in (ROOT / "launch").glob("*.launch.py")} == files["share/ilrm_ros/launch"]
    assert "config/ilrm.yaml" in files["share/ilrm_ros/config"]
    assert (ROOT / "resource" / "ilrm_ros").exists()


def test_setup_cfg_puts_scripts_where_ros2_run_looks():
    text = (ROOT / "setup.cfg").read_text()
    assert "script_dir=$base/lib/ilrm_ros" in text and "install_scripts=$base/lib/ilrm_ros" in text
