"""The node's Fast DDS profile: when it applies, and that it carries large clouds between real processes."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ilrm_ros.node.dds_profile import PROFILE, SWITCH, apply_fastdds_profile
from ilrm_ros.node.transport_probe import measure


def test_profile_is_set_only_where_the_user_left_fast_dds_alone():
    env = {}
    path, line = apply_fastdds_profile(env)
    assert path == PROFILE and env == {"FASTDDS_DEFAULT_PROFILES_FILE": str(PROFILE)} and "8 MiB" in line
    env = {"ROS_DISTRO": "jazzy"}  # Fast DDS 2.x reads the old variable
    assert apply_fastdds_profile(env)[0] == PROFILE and env["FASTRTPS_DEFAULT_PROFILES_FILE"] == str(PROFILE)
    for given in ({"FASTDDS_DEFAULT_PROFILES_FILE": "/mine.xml"}, {"FASTRTPS_DEFAULT_PROFILES_FILE": "/mine.xml"},
                  {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}, {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"},
                  {SWITCH: "off"}):
        env = dict(given)
        path, line = apply_fastdds_profile(env)
        assert path is None and env == given and line, given  # nothing changed, and the log says why
    env = {"RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"}
    assert apply_fastdds_profile(env)[0] == PROFILE


def test_profile_file_names_a_large_shared_memory_segment_and_udp():
    root = ET.parse(PROFILE).getroot()
    ns = {"d": "http://www.eprosima.com"}
    kinds = {t.findtext("d:transport_id", namespaces=ns): t for t in root.iterfind(".//d:transport_descriptor", ns)}
    assert {t.findtext("d:type", namespaces=ns) for t in kinds.values()} == {"SHM", "UDPv4"}
    shm = next(t for t in kinds.values() if t.findtext("d:type", namespaces=ns) == "SHM")
    assert int(shm.findtext("d:segment_size", namespaces=ns)) == 8 * 2**20
    participant = root.find(".//d:participant", ns)
    assert participant.get("is_default_profile") == "true"
    used = [e.text for e in participant.iterfind(".//d:userTransports/d:transport_id", ns)]
    assert sorted(used) == sorted(kinds) and participant.findtext(".//d:useBuiltinTransports", namespaces=ns) == "false"


def test_clouds_larger_than_the_default_segment_arrive_from_a_publisher_with_the_profile():
    """Real rclpy processes: a 600 kB cloud (above Fast DDS's default 512 KiB segment) reaches a
    subscriber that runs Fast DDS's defaults, with the profile and without (timings: ilrm bench)."""
    for profile in (True, False):
        row = measure(30_000, clouds=3, profile=profile)
        assert row["clouds"] == 3 and row["p50"] > 0 and row["bytes"] == 600_000, row
