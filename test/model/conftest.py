"""Shared scene builders for the model tests."""

from __future__ import annotations

import pytest
import torch

from ilrm_ros.geometry import make_pose, quat_to_rotmat


def random_poses(*shape: int, generator: torch.Generator, spread: float = 1.0) -> torch.Tensor:
    """Random OpenCV camera-to-world matrices ``[*shape, 4, 4]`` (float32)."""
    q = torch.randn(*shape, 4, generator=generator)
    t = torch.randn(*shape, 3, generator=generator) * spread
    return make_pose(quat_to_rotmat(q), t)


def forward_facing_poses(batch: int, views: int, generator: torch.Generator) -> torch.Tensor:
    """Cameras roughly looking the same way (like RE10K context pairs)."""
    small = torch.randn(batch, views, 4, generator=generator) * 0.05
    small[..., 0] = 1.0
    t = torch.randn(batch, views, 3, generator=generator) * 0.5
    return make_pose(quat_to_rotmat(small), t)


def intrinsics_for(batch: int, views: int, height: int, width: int, focal: float = 1.0) -> torch.Tensor:
    K = torch.tensor([[focal * width, 0.0, width / 2], [0.0, focal * width, height / 2], [0.0, 0.0, 1.0]])
    return K.expand(batch, views, 3, 3).clone()


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


def make_scene(batch: int, views: int, height: int, width: int, generator: torch.Generator):
    images = torch.rand(batch, views, 3, height, width, generator=generator)
    K = intrinsics_for(batch, views, height, width)
    K[..., 0, 2] += torch.rand(batch, views, generator=generator) * 4 - 2  # off-centre principal points
    K[..., 1, 1] *= 1.1  # fx != fy
    return images, K, forward_facing_poses(batch, views, generator)


@pytest.fixture
def scene():
    """Factory: ``scene(batch, views, height, width, generator) -> (images, K, c2w)``."""
    return make_scene


@pytest.fixture
def poses():
    """Factory: ``poses(*shape, generator=g, spread=1.0)`` random camera-to-world matrices."""
    return random_poses
