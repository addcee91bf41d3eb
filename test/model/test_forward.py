"""Forward pass: shapes, ranges, ray geometry, token order and block maths vs. naive re-computations."""

from __future__ import annotations

import math

import pytest
import torch

from ilrm_ros.model import GSLRM, PRESETS, CompiledForward, count_flops, load_model
from ilrm_ros.model.blocks import ReadBlock, SelfBlock
from ilrm_ros.model.rays import patchify, unpatchify

TINY = PRESETS["tiny"]


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny")


def check_gaussians(g, batch: int, n: int):
    assert g.means.shape == (batch, n, 3)
    assert g.quats.shape == (batch, n, 4)
    assert g.scales.shape == (batch, n, 3)
    assert g.opacities.shape == (batch, n)
    assert g.sh.shape == (batch, n, 1, 3)
    for t in (g.means, g.quats, g.scales, g.opacities, g.sh):
        assert t.dtype == torch.float32 and torch.isfinite(t).all()
    torch.testing.assert_close(g.quats.norm(dim=-1), torch.ones(batch, n))
    assert (g.scales > 0).all() and (g.scales <= math.exp(TINY.log_scale_max) + 1e-6).all()
    assert ((g.opacities > 0) & (g.opacities < 1)).all()


@pytest.mark.parametrize("views, h, w", [(1, 32, 32), (2, 64, 64), (4, 32, 32), (2, 32, 48), (3, 48, 16)])
def test_shapes_and_ranges(tiny, scene, gen, views, h, w):
    images, K, c2w = scene(2, views, h, w, gen)
    with torch.no_grad():
        g = tiny(images, K, c2w)
    check_gaussians(g, 2, views * h * w)


def test_means_lie_on_their_pixel_rays_at_the_predicted_depth(tiny, scene, gen):
    """Each Gaussian sits on its own pixel's ray (order view, row, col), at
    sigmoid(mean(xyz_raw)) * 500 along it, with xyz_raw read from the decoder output."""
    views, h, w, p = 2, 32, 48, TINY.patch_size
    images, K, c2w = scene(1, views, h, w, gen)
    captured = {}
    hook = tiny.token_decoder.register_forward_hook(lambda m, i, o: captured.setdefault("tokens", o))
    with torch.no_grad():
        g = tiny(images, K, c2w)
    hook.remove()
    tokens = captured["tokens"][0]  # [V * h/p * w/p, p * p * 14]
    for v, y, x in [(0, 0, 0), (0, 5, 47), (1, 31, 0), (1, 13, 22), (0, 31, 47)]:
        n = (v * h + y) * w + x
        K_v, c2w_v = K[0, v], c2w[0, v]
        d = c2w_v[:3, :3] @ torch.stack(
            [(x + 0.5 - K_v[0, 2]) / K_v[0, 0], (y + 0.5 - K_v[1, 2]) / K_v[1, 1], torch.tensor(1.0)]
        )
        d = d / d.norm()
        token = (v * (h // p) + y // p) * (w // p) + x // p
        raw = tokens[token].reshape(p, p, 14)[y % p, x % p]
        depth = torch.sigmoid(raw[:3].mean()) * 500
        torch.testing.assert_close(g.means[0, n], c2w_v[:3, 3] + depth * d, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(g.sh[0, n, 0], raw[3:6])
        torch.testing.assert_close(g.scales[0, n], torch.exp((raw[6:9] - 6.9).clamp(max=-1.2)))
        torch.testing.assert_close(g.quats[0, n], raw[9:13] / raw[9:13].norm())
        torch.testing.assert_close(g.opacities[0, n], torch.sigmoid(raw[13] - 2.0))


def test_patchify_order_and_inverse(gen):
    b, v, h, w, c, p = 2, 3, 16, 24, 5, 8
    x = torch.randn(b, v, h, w, c, generator=gen)
    t = patchify(x, p)
    assert t.shape == (b, v * 2 * 3, p * p * c)
    for bi, vi, i, j, py, px, ci in [(0, 0, 0, 0, 0, 0, 0), (1, 2, 1, 2, 7, 3, 4), (0, 1, 1, 0, 2, 6, 1)]:
        assert t[bi, (vi * 2 + i) * 3 + j, (py * p + px) * c + ci] == x[bi, vi, i * p + py, j * p + px, ci]
    pixels = unpatchify(t, v, h, w, p)
    torch.testing.assert_close(pixels, x.reshape(b, v * h * w, c), rtol=0, atol=0)


def naive_rms(x, weight, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def naive_ln(x, weight, eps=1e-5):
    return (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + eps) * weight


def naive_attention(q, k, v, heads, head_dim, qn, kn):
    """One group: q [Nq, C], k/v [Nk, C]; explicit per-head softmax."""
    outs = []
    for hd in range(heads):
        sl = slice(hd * head_dim, (hd + 1) * head_dim)
        qh, kh = naive_rms(q[:, sl], qn), naive_rms(k[:, sl], kn)
        att = torch.softmax(qh @ kh.T / math.sqrt(head_dim), dim=-1)
        outs.append(att @ v[:, sl])
    return torch.cat(outs, dim=-1)


def naive_mlp(x, ff):
    h = naive_ln(x, ff.norm.weight) @ ff.fc1.weight.T
    return (0.5 * h * (1 + torch.erf(h / math.sqrt(2)))) @ ff.fc2.weight.T


def test_read_block_matches_a_naive_per_view_recomputation(gen):
    torch.manual_seed(0)
    block = ReadBlock(64, 32, 256).double()
    with torch.no_grad():
        for prm in block.parameters():
            if prm.dim() == 1:
                prm.uniform_(0.5, 1.5)
    views, tokens = 3, 5
    x = torch.randn(2, views * tokens, 64, generator=gen, dtype=torch.float64)
    s = torch.randn(2, views * tokens, 64, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        out = block(x, s, views)
        ca, ff = block.read_cross, block.read_ff
        expected = torch.empty_like(x)
        for b in range(2):
            for v in range(views):
                sl = slice(v * tokens, (v + 1) * tokens)
                xv, sv = x[b, sl], s[b, sl]  # support tokens are not normalised
                hq = naive_ln(xv, ca.norm.weight)
                att = naive_attention(hq @ ca.q.weight.T, sv @ ca.k.weight.T, sv @ ca.v.weight.T, 2, 32,
                                      ca.q_norm.weight, ca.k_norm.weight)
                y = xv + att @ ca.proj.weight.T
                expected[b, sl] = y + naive_mlp(y, ff)
    torch.testing.assert_close(out, expected)


def test_self_block_matches_a_naive_recomputation(gen):
    torch.manual_seed(0)
    block = SelfBlock(64, 32, 256).double()
    with torch.no_grad():
        for prm in block.parameters():
            if prm.dim() == 1:
                prm.uniform_(0.5, 1.5)
    x = torch.randn(2, 12, 64, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        out = block(x, None, 3)
        at = block.attn
        expected = torch.empty_like(x)
        for b in range(2):
            qkv = naive_ln(x[b], at.norm.weight) @ at.qkv.weight.T  # splits as (3, heads, head_dim)
            q, k, v = qkv[:, :64], qkv[:, 64:128], qkv[:, 128:]
            y = x[b] + naive_attention(q, k, v, 2, 32, at.q_norm.weight, at.k_norm.weight) @ at.proj.weight.T
            expected[b] = y + naive_mlp(y, block.mlp)
    torch.testing.assert_close(out, expected)


def test_read_block_only_attends_within_a_view(gen):
    torch.manual_seed(0)
    block = ReadBlock(64, 32, 256).eval()
    views, tokens = 3, 16
    x = torch.randn(1, views * tokens, 64, generator=gen)
    s = torch.randn(1, views * tokens, 64, generator=gen)
    s2 = s.clone()
    s2[:, tokens : 2 * tokens] += torch.randn(tokens, 64, generator=gen)  # perturb view 1's support only
    with torch.no_grad():
        a, b = block(x, s, views), block(x, s2, views)
    assert torch.equal(a[:, :tokens], b[:, :tokens])
    assert torch.equal(a[:, 2 * tokens :], b[:, 2 * tokens :])
    assert not torch.allclose(a[:, tokens : 2 * tokens], b[:, tokens : 2 * tokens])


def test_views_exchange_information_through_self_blocks(tiny, scene, gen):
    images, K, c2w = scene(1, 2, 32, 32, gen)
    images2 = images.clone()
    images2[:, 1] = torch.rand(3, 32, 32, generator=gen)
    with torch.no_grad():
        a, b = tiny(images, K, c2w), tiny(images2, K, c2w)
    n = 32 * 32
    assert (a.means[:, :n] - b.means[:, :n]).abs().max() > 1e-5  # view 0 changes through the self block


def test_gslrm_forward_contract(scene, gen):
    model = load_model(PRESETS["tiny"].replace(arch="gslrm"))
    assert isinstance(model, GSLRM)
    assert all(isinstance(b, SelfBlock) for b in model.processor.blocks)
    for views, h, w in [(1, 32, 32), (2, 32, 48), (4, 16, 16)]:
        images, K, c2w = scene(2, views, h, w, gen)
        with torch.no_grad():
            check_gaussians(model(images, K, c2w), 2, views * h * w)


def test_bad_shapes_are_rejected(tiny, scene, gen):
    images, K, c2w = scene(1, 2, 32, 36, gen)
    with pytest.raises(ValueError, match="divisible"):
        tiny(images, K, c2w)
    images, K, c2w = scene(1, 2, 32, 32, gen)
    with pytest.raises(ValueError):
        tiny(images, K[:, :1], c2w)


def test_gradient_checkpointing_gives_the_same_gradients(scene, gen):
    images, K, c2w = scene(1, 2, 32, 32, gen)
    grads = []
    for flag in (False, True):
        model = load_model("tiny").train()
        model.gradient_checkpointing = flag
        g = model(images, K, c2w)
        (g.means.sum() + g.opacities.sum() + g.sh.sum()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])
    assert grads[0].abs().sum() > 0


def test_count_flops_on_tiny(tiny):
    flops = count_flops(tiny, 2, 64, 64)
    tokens = 2 * 8 * 8
    matmul_params = sum(p.numel() for p in tiny.parameters() if p.dim() == 2)
    assert 2 * tokens * matmul_params <= flops <= 4 * tokens * matmul_params


def test_compiled_forward_falls_back_to_eager_on_cpu(tiny, scene, gen):
    for mode in ("graph", "compile", "eager"):
        fast = CompiledForward(tiny, 2, 32, 32, mode=mode)
        assert fast.mode == "eager"
        images, K, c2w = scene(1, 2, 32, 32, gen)
        with torch.no_grad():
            ref = tiny(images, K, c2w)
        out = fast(images, K, c2w)
        torch.testing.assert_close(out.means, ref.means)
    with pytest.raises(ValueError):
        fast(*scene(1, 3, 32, 32, gen))
    with pytest.raises(ValueError):
        CompiledForward(tiny, 2, 32, 32, mode="fast")


def test_float64_inputs_and_cpu_float32(tiny, scene, gen):
    images, K, c2w = scene(1, 2, 32, 32, gen)
    with torch.no_grad():
        a = tiny(images, K, c2w)
        b = tiny(images.double(), K.double(), c2w.double())
    torch.testing.assert_close(a.means, b.means)
