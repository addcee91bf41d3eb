"""The SDPA kernel choice: names resolve predictably, and the CPU path is untouched by it."""

from __future__ import annotations

import pytest
import torch

from ilrm_ros.model import CompiledForward, load_model
from ilrm_ros.model.attention import BACKENDS, attend, attention_backend, resolve_backend


def test_auto_is_pytorch_default_off_cuda():
    assert resolve_backend("auto", torch.device("cpu")) == "default"
    assert resolve_backend("cudnn", torch.device("cpu")) == "cudnn"


def test_unknown_backend_is_named_in_the_error():
    with pytest.raises(ValueError, match="fastest"):
        resolve_backend("fastest", torch.device("cpu"))
    with pytest.raises(ValueError, match="attention backend"):
        CompiledForward(load_model("tiny"), 2, 32, 32, mode="graph", attention="fastest")


def test_attend_is_softmax_attention_per_head():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 5, 3, 4, generator=g) for _ in range(3))  # [G, N, heads, D]
    out = attend(q, k, v)
    assert out.shape == (2, 5, 12)
    weights = torch.softmax(torch.einsum("gnhd,gmhd->ghnm", q, k) / 2.0, dim=-1)
    expected = torch.einsum("ghnm,gmhd->gnhd", weights, v).flatten(-2)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", BACKENDS)
def test_backend_context_leaves_cpu_results_unchanged(name):
    model = load_model("tiny")
    images = torch.rand(1, 2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    K = torch.tensor([[32.0, 0, 16], [0, 32.0, 16], [0, 0, 1]]).expand(1, 2, 3, 3)
    c2w = torch.eye(4).repeat(1, 2, 1, 1)
    c2w[0, 1, 0, 3] = 0.3
    with torch.no_grad():
        ref = model(images, K, c2w)
        with attention_backend(name) as resolved:
            out = model(images, K, c2w)
    assert resolved == ("default" if name == "auto" else name)
    torch.testing.assert_close(out.means, ref.means)
