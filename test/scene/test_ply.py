"""3DGS PLY export/import: the standard layout, exact round trips, and other writers' files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ilrm_ros.gaussians import Gaussians
from ilrm_ros.geometry import quat_normalize
from ilrm_ros.scene import load_ply, save_ply
from ilrm_ros.scene.ply import read_header

STANDARD_HEADER = (
    "ply\nformat binary_little_endian 1.0\nelement vertex {n}\n"
    + "".join(
        f"property float {p}\n"
        for p in ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
                  "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    )
    + "end_header\n"
)


def random_gaussians(n: int, seed: int = 0) -> Gaussians:
    gen = torch.Generator().manual_seed(seed)
    op = torch.rand(n, generator=gen)
    op[:6] = torch.tensor([0.0, 1.0, 1e-7, 0.5, 0.9999999, 1.0 / 255])
    scales = torch.exp(torch.randn(n, 3, generator=gen) * 3)
    scales[0] = torch.tensor([1e-8, 1.0, 2.7182817])
    return Gaussians(
        means=torch.randn(n, 3, generator=gen) * 10,
        quats=quat_normalize(torch.randn(n, 4, generator=gen)),
        scales=scales,
        opacities=op,
        sh=torch.randn(n, 1, 3, generator=gen),
    )


def test_header_is_the_standard_3dgs_layout(tmp_path):
    g = random_gaussians(37)
    path = tmp_path / "scene.ply"
    save_ply(path, g)
    header = read_header(path)
    assert header == STANDARD_HEADER.format(n=37)
    assert path.stat().st_size == len(header) + 37 * 17 * 4
    data = np.frombuffer(path.read_bytes()[len(header):], dtype="<f4").reshape(37, 17)
    assert np.array_equal(data[:, 0:3], g.means.numpy())
    assert np.array_equal(data[:, 3:6], np.zeros((37, 3), np.float32))
    assert np.array_equal(data[:, 6:9], g.sh[:, 0].numpy())
    op = g.opacities.double().numpy()[6:]
    assert np.allclose(data[6:, 9], np.log(op / (1 - op)), atol=1e-5)
    assert np.allclose(data[:, 10:13], np.log(g.scales.double().numpy()), atol=1e-5)
    assert np.array_equal(data[:, 13:17], g.quats.numpy())


def test_round_trip_is_exact(tmp_path):
    g = random_gaussians(5000)
    a, b = tmp_path / "a.ply", tmp_path / "b.ply"
    save_ply(a, g)
    h = load_ply(a)
    for name in ("means", "quats", "sh"):
        assert torch.equal(getattr(h, name), getattr(g, name)), name
    assert torch.allclose(h.opacities, g.opacities, rtol=1.5e-6, atol=0)
    assert torch.allclose(h.scales, g.scales, rtol=1.5e-6, atol=0)
    assert h.opacities[0] == 0.0 and h.opacities[1] == 1.0
    save_ply(b, h)
    assert a.read_bytes() == b.read_bytes()  # save -> load -> save is bitwise stable
    save_ply(a, Gaussians.empty())
    assert len(load_ply(a)) == 0


def write_inria_style(path, g: Gaussians, fmt: str = "binary_little_endian", extra_element: bool = True) -> None:
    """A PLY as the INRIA trainer writes it (degree-3 SH: 45 f_rest_*), plus comments and another element."""
    n = len(g)
    names = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(45)]
             + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    cols = np.zeros((n, len(names)), np.float32)
    cols[:, 0:3] = g.means.numpy()
    cols[:, 6:9] = g.sh[:, 0].numpy()
    cols[:, 9:54] = 0.123
    cols[:, 54] = np.log(g.opacities.numpy() / (1 - g.opacities.numpy()))
    cols[:, 55:58] = np.log(g.scales.numpy())
    cols[:, 58:62] = g.quats.numpy() * 2.5  # unnormalised, as trainers store them
    header = ["ply", f"format {fmt} 1.0", "comment written by a test", f"element vertex {n}"]
    header += [f"property float {p}" for p in names]
    if extra_element:
        header += ["element camera 1", "property float32 fx", "property uchar id"]
    header += ["end_header"]
    with open(path, "wb") as f:
        f.write(("\r\n" if fmt == "binary_little_endian" else "\n").join(header).encode() + b"\n")
        if fmt == "ascii":
            f.write("\n".join(" ".join(repr(float(v)) for v in row) for row in cols).encode() + b"\n")
            if extra_element:
                f.write(b"500.0 3\n")
        else:
            order = "<" if fmt == "binary_little_endian" else ">"
            f.write(cols.astype(order + "f4").tobytes())
            if extra_element:
                f.write(np.array([500.0], order + "f4").tobytes() + b"\x03")


@pytest.mark.parametrize("fmt", ["binary_little_endian", "binary_big_endian", "ascii"])
def test_loads_other_writers_files(tmp_path, fmt):
    g = random_gaussians(50, seed=1)
    g.opacities = g.opacities.clamp(0.01, 0.99)
    path = tmp_path / "inria.ply"
    write_inria_style(path, g, fmt)
    h = load_ply(path)
    assert len(h) == 50 and h.sh.shape == (50, 1, 3)
    assert torch.equal(h.means, g.means) and torch.equal(h.sh, g.sh)
    assert torch.allclose(h.opacities, g.opacities, rtol=1e-5)
    assert torch.allclose(h.scales, g.scales, rtol=1e-5)
    assert torch.allclose(h.quats, g.quats, atol=1e-6)  # normalised on load


def test_rejects_non_3dgs_files(tmp_path):
    mesh = tmp_path / "mesh.ply"
    mesh.write_bytes(
        b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
        b"property uchar red\nproperty uchar green\nproperty uchar blue\n"
        b"element face 1\nproperty list uchar int vertex_indices\nend_header\n"
        b"0 0 0 255 0 0\n1 0 0 0 255 0\n0 1 0 0 0 255\n3 0 1 2\n"
    )
    with pytest.raises(ValueError, match="not a 3DGS PLY.*f_dc_0"):
        load_ply(mesh)
    junk = tmp_path / "junk.ply"
    junk.write_bytes(b"solid cube\nfacet normal 0 0 1\n")
    with pytest.raises(ValueError, match="not a PLY"):
        load_ply(junk)
    truncated = tmp_path / "short.ply"
    save_ply(truncated, random_gaussians(10))
    truncated.write_bytes(truncated.read_bytes()[:-8])
    with pytest.raises(ValueError, match="truncated"):
        load_ply(truncated)
