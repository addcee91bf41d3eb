"""`ilrm bench --quick` runs on the CPU and writes its JSON (no timing assertions: numbers go to docs)."""

import json

from ilrm_ros.benchmark import kernel_group
from ilrm_ros.cli import main


def test_kernel_groups_of_real_kernel_names():
    """Names seen on the H100 (docs/benchmarks.md) and on the CPU land in the right group."""
    assert kernel_group("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_7") == "attention"
    assert kernel_group("aten::_scaled_dot_product_flash_attention_for_cpu") == "attention"
    assert kernel_group("nvjet_sm90_tst_192x128_64x5_1x2_h_bz_coopB_TNT") == "gemm"
    assert kernel_group("aten::mm") == "gemm"
    assert kernel_group("triton_poi_fused__unsafe_view_gelu_9") == "fused"
    assert kernel_group("triton_per_fused__fused_rms_norm__scaled_dot_product_cudnn_attention__to_copy_7") == "fused"
    assert kernel_group("Memset (Device)") == "other"


def test_bench_quick_with_node(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--node", "--profile", "--device", "cpu", "--node-param",
                 "points.max_points:=5000", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    model = result["model"][0]
    assert model["preset"] == "small" and model["ms"] > 0 and model["gflop"] > 1
    assert result["render"][0]["gaussians"] == 32_768 and result["pack_points_500k_ms"] > 0
    # The profile splits the forward into groups that add up, with its matmuls found as gemm.
    profile = result["profile"][0]
    assert profile["views"] == 2 and profile["groups_ms"]["gemm"] > 0
    assert abs(sum(profile["groups_ms"].values()) - profile["total_ms"]) < 1e-6 * max(1.0, profile["total_ms"])
    node = result["node"]
    assert node["refreshes_measured"] >= 1 and node["keyframe_to_points_ms"]["p95"] > 0
    assert node["renders"] >= 1
    assert len(node["keyframe_to_points_all_ms"]) == node["refreshes_measured"]
    assert 0.0 < node["rendered_fraction_after_first_scene"] <= 1.0
    # The node's own view, from its /diagnostics: refresh timings, and the extra parameter took effect.
    diag = node["node_diagnostics"]
    assert float(diag["refresh_latency_p50_ms"]) > 0 and float(diag["points_latency_p50_ms"]) > 0
    assert node["params"] == ["points.max_points:=5000"] and 0 < node["points_per_cloud_max"] <= 5000
