"""ament_python / pip build script for ilrm_ros."""

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "ilrm_ros"
HERE = Path(__file__).parent


def requirements() -> list[str]:
    lines = (HERE / "requirements.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["checkpoints/*.safetensors", "viewer/*.html", "node/*.xml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz")),
    ],
    install_requires=["setuptools"] + requirements(),
    python_requires=">=3.10",
    zip_safe=False,
    maintainer="ilrm_ros maintainers",
    maintainer_email="maintainers@ilrm-ros.dev",
    description="Live 3D Gaussian scene reconstruction from one posed camera with iLRM for ROS 2.",
    license="Apache-2.0",
    extras_require={"test": ["pytest", "ruff"]},
    entry_points={
        "console_scripts": [
            "ilrm_node = ilrm_ros.node.main:main",
            "ilrm = ilrm_ros.cli:main",
        ],
    },
)
