"""The node's Fast DDS profile: a shared-memory segment that holds its point clouds.

Fast DDS passes a message to a subscriber on the same host through shared memory only when it fits
the sending participant's segment, 512 KiB by default; a larger one travels as UDP fragments. At
20 bytes a point, `~/points` passes that size at about 26,000 points, and the shipped model's clouds
hold 29,000-34,000 (`points.max_points` allows 100,000). Two rclpy processes on a 2-core CPU
(docs/benchmarks.md): a 584 KB cloud took 11.7 ms with the default and 1.5 ms from a publisher with
an 8 MiB segment; 2 MB took 34 and 3.3 ms. Only the publisher needs the setting: RViz and other
subscribers keep theirs.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

PROFILE = Path(__file__).with_name("fastdds_profile.xml")
PROFILE_FILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
"""Where Fast DDS 3.x (Kilted on) and 2.x (Humble to Jazzy) look for a profile file."""
FAST_DDS_2_DISTROS = ("humble", "iron", "jazzy")
USER_SETTINGS = PROFILE_FILE_VARIABLES + ("FASTDDS_BUILTIN_TRANSPORTS",)
SWITCH = "ILRM_FASTDDS_PROFILE"
"""Set to 0 / off / false / none to start the node with Fast DDS's defaults."""
FAST_DDS_RMWS = ("", "rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp")


def apply_fastdds_profile(environ: MutableMapping[str, str] = os.environ) -> tuple[Path | None, str]:
    """Point Fast DDS at :data:`PROFILE` unless the user configured Fast DDS, chose another RMW or
    turned it off (:data:`SWITCH`). Must run before ``rclpy.init``. Returns the profile used (or
    None) and a line for the log."""
    if environ.get(SWITCH, "").strip().lower() in ("0", "off", "false", "none"):
        return None, f"Fast DDS defaults ({SWITCH}={environ[SWITCH]})"
    rmw = environ.get("RMW_IMPLEMENTATION", "")
    if rmw not in FAST_DDS_RMWS:
        return None, f"RMW_IMPLEMENTATION={rmw}: no Fast DDS profile"
    given = [name for name in USER_SETTINGS if environ.get(name)]
    if given:
        return None, f"Fast DDS as configured by {', '.join(given)}"
    # Fast DDS 3 reads the new name and warns about the old one; 2.x reads only the old one.
    old_name = environ.get("ROS_DISTRO", "").lower() in FAST_DDS_2_DISTROS
    environ[PROFILE_FILE_VARIABLES[1] if old_name else PROFILE_FILE_VARIABLES[0]] = str(PROFILE)
    return PROFILE, f"Fast DDS profile {PROFILE.name}: 8 MiB shared-memory segment for large messages"
