"""A procedural, textured indoor room rendered exactly by analytic ray casting in PyTorch.

World frame: z up, metres, floor at z = 0, the room spans x in [-W/2, W/2], y in [-D/2, D/2],
z in [0, H]. Cameras are 4x4 camera-to-world matrices in the OpenCV convention (x right, y down,
z forward); intrinsics put the centre of pixel (x, y) at (x + 0.5, y + 0.5) (as gsplat and the
iLRM ray maps do), so a centred principal point is (W/2, H/2).

Rendered depth is z-depth along the camera's optical axis in metres (what a Gaussian renderer's
expected depth means), not the distance along the ray.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ilrm_ros.transfer import upload

from . import textures

_EPS_T = 1e-4  # minimum ray parameter (z-depth, metres) counted as a hit
_MAX_RAYS_PER_CHUNK = 1 << 21  # CUDA
_MAX_RAYS_PER_CHUNK_CPU = 1 << 14

# Surface ids of the room itself (materials 0..5); objects follow from 6 on.
FLOOR, CEILING, WALL_XNEG, WALL_XPOS, WALL_YNEG, WALL_YPOS = range(6)
_ROOM, _BOX, _SPHERE, _CYLINDER = range(4)


@dataclass(frozen=True)
class Box:
    """A box with half extents ``half`` (local x, y, z), rotated by ``yaw`` (rad) about world z."""

    center: tuple[float, float, float]
    half: tuple[float, float, float]
    yaw: float = 0.0


@dataclass(frozen=True)
class Sphere:
    center: tuple[float, float, float]
    radius: float


@dataclass(frozen=True)
class Cylinder:
    """A vertical (z-axis) capped cylinder; ``center`` is the middle of its axis."""

    center: tuple[float, float, float]
    radius: float
    half_height: float


Primitive = Box | Sphere | Cylinder


@dataclass(frozen=True)
class Material:
    pattern: int  # textures.CHECKER / STRIPES / NOISE / TILES
    color_a: tuple[float, float, float]
    color_b: tuple[float, float, float]
    scale: float  # metres per pattern cell
    angle: float  # pattern rotation (rad)
    grout: float  # tile grout half-width in cell units
    detail_freq: float  # fine noise frequency (1/m)
    detail_amp: float  # fine noise relative amplitude
    salt: int


def _footprint_radius(obj: Primitive) -> float:
    if isinstance(obj, Box):
        return math.hypot(obj.half[0], obj.half[1])
    return obj.radius


def _random_color(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]) -> tuple:
    return colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(*sat), rng.uniform(*val))


def _random_material(rng: np.random.Generator, salt: int, kind: str) -> Material:
    """A random material; ``kind`` is 'floor', 'wall', 'ceiling' or 'object' (scales, palettes)."""
    if kind == "floor":
        choices = [textures.CHECKER, textures.TILES, textures.STRIPES, textures.NOISE]
        pattern = int(rng.choice(choices, p=[0.3, 0.35, 0.2, 0.15]))
        scale = rng.uniform(0.25, 0.6)
    elif kind == "ceiling":
        pattern = int(rng.choice([textures.TILES, textures.NOISE, textures.CHECKER], p=[0.5, 0.3, 0.2]))
        scale = rng.uniform(0.4, 0.8)
    elif kind == "wall":
        pattern = int(rng.integers(0, 4))
        scale = rng.uniform(0.2, 0.7)
    else:
        pattern = int(rng.integers(0, 4))
        scale = rng.uniform(0.06, 0.25)
    val_a = (0.55, 0.95) if kind in ("wall", "ceiling") else (0.35, 0.95)
    color_a = _random_color(rng, (0.1, 0.8), val_a)
    if rng.uniform() < 0.5:  # a contrasting hue
        color_b = _random_color(rng, (0.2, 0.9), (0.15, 0.8))
    else:  # a darker shade of the same colour
        color_b = tuple(c * rng.uniform(0.2, 0.55) for c in color_a)
    axis_aligned = kind != "object" and rng.uniform() < 0.7
    angle = 0.0 if axis_aligned else rng.uniform(0, math.pi)
    return Material(
        pattern=pattern,
        color_a=tuple(float(c) for c in color_a),
        color_b=tuple(float(c) for c in color_b),
        scale=float(scale),
        angle=float(angle),
        grout=float(rng.uniform(0.03, 0.08)),
        detail_freq=float(rng.uniform(5.0, 14.0)),
        detail_amp=float(rng.uniform(0.12, 0.35)),
        salt=salt,
    )


class SyntheticRoom:
    """A seeded procedural room with textured walls, floor, ceiling and 4-8 textured objects.

    Args:
        seed: scene seed; the same seed gives the same scene and the same rendered bytes (CPU).
        device: where rendering tensors live ("cpu" or "cuda").
        size: (W, D, H) in metres to override the seeded room size.
        num_objects: how many random objects (default: 4 to 8 by seed).
        objects: explicit primitives instead of random ones (``num_objects`` is then ignored).
    """

    def __init__(
        self,
        seed: int,
        device: str | torch.device = "cpu",
        *,
        size: Sequence[float] | None = None,
        num_objects: int | None = None,
        objects: Sequence[Primitive] | None = None,
    ) -> None:
        self.seed = int(seed)
        self.device = torch.device(device)
        rng = np.random.default_rng([self.seed, 0x5EED])
        if size is None:
            size = (rng.uniform(5.0, 7.0), rng.uniform(4.0, 6.0), rng.uniform(2.5, 3.1))
        self.size = tuple(float(s) for s in size)
        W, D, H = self.size
        self.lo = np.array([-W / 2, -D / 2, 0.0])
        self.hi = np.array([W / 2, D / 2, H])
        if objects is None:
            n = int(rng.integers(4, 9)) if num_objects is None else int(num_objects)
            objects = self._random_objects(rng, n)
        # Group by type: primitive index order is room, boxes, spheres, cylinders.
        self.boxes = [o for o in objects if isinstance(o, Box)]
        self.spheres = [o for o in objects if isinstance(o, Sphere)]
        self.cylinders = [o for o in objects if isinstance(o, Cylinder)]
        self.objects: list[Primitive] = [*self.boxes, *self.spheres, *self.cylinders]
        self._box_fp, self._round_fp = _footprint_tables(self.boxes), _footprint_tables(self.spheres + self.cylinders)

        kinds = ["floor", "ceiling", "wall", "wall", "wall", "wall"] + ["object"] * len(self.objects)
        self.materials = [_random_material(rng, 1000 + 97 * i + self.seed % 100000, k) for i, k in enumerate(kinds)]
        az = rng.uniform(0, 2 * math.pi)
        el = rng.uniform(math.radians(35), math.radians(70))
        self.light_dir = (math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el))
        self.ambient = float(rng.uniform(0.35, 0.5))
        self.diffuse = float(rng.uniform(0.5, 0.65))
        self._build_tensors()

    # ------------------------------------------------------------------ scene generation
    def _random_objects(self, rng: np.random.Generator, n: int) -> list[Primitive]:
        """Objects that do not overlap and leave >= 1 m passages (or stand against a wall)."""
        W, D, H = self.size
        placed: list[tuple[np.ndarray, float]] = []
        out: list[Primitive] = []
        for _ in range(n):
            for _attempt in range(200):
                obj = self._random_object(rng, H)
                rho = _footprint_radius(obj)
                if rng.uniform() < 0.5:  # against a random wall
                    wall = int(rng.integers(0, 4))
                    gap = rng.uniform(0.01, 0.05) + rho
                    t = rng.uniform(-0.5, 0.5)
                    xy = {
                        0: (-W / 2 + gap, t * (D - 2 * rho)),
                        1: (W / 2 - gap, t * (D - 2 * rho)),
                        2: (t * (W - 2 * rho), -D / 2 + gap),
                        3: (t * (W - 2 * rho), D / 2 - gap),
                    }[wall]
                    xy = np.array(xy)
                else:  # free-standing, a passage to every wall
                    m = rho + 1.0
                    if W / 2 - m <= 0 or D / 2 - m <= 0:
                        continue
                    xy = np.array([rng.uniform(-W / 2 + m, W / 2 - m), rng.uniform(-D / 2 + m, D / 2 - m)])
                if all(np.linalg.norm(xy - c) >= rho + r + 1.0 for c, r in placed):
                    break
            else:
                continue  # no room for this one
            placed.append((xy, rho))
            out.append(_with_xy(obj, xy))
        return out

    @staticmethod
    def _random_object(rng: np.random.Generator, H: float) -> Primitive:
        kind = rng.choice(3, p=[0.45, 0.25, 0.3])
        if kind == 0:
            half = (rng.uniform(0.15, 0.6), rng.uniform(0.15, 0.6), rng.uniform(0.15, 0.8))
            yaw = 0.0 if rng.uniform() < 0.3 else rng.uniform(0, math.pi)
            return Box((0.0, 0.0, half[2]), half, float(yaw))
        if kind == 1:
            r = rng.uniform(0.2, 0.5)
            z = r if rng.uniform() < 0.6 else rng.uniform(r + 0.3, H - r - 0.3)
            return Sphere((0.0, 0.0, float(z)), float(r))
        r = rng.uniform(0.12, 0.4)
        hz = H / 2 if rng.uniform() < 0.3 else rng.uniform(0.2, 0.9)  # pillars reach the ceiling
        return Cylinder((0.0, 0.0, float(hz)), float(r), float(hz))

    def _build_tensors(self) -> None:
        """The scene's tables on the CPU (kept for renders of several rooms at once) and on the
        room's device (see :func:`_to_device`)."""
        self._host_tables = self._tables()
        tables = _to_device(self._host_tables, self.device)
        self._lo, self._hi = tables["_lo"], tables["_hi"]
        self._tables_on_device = _RoomTables.of_room(tables)

    def _tables(self) -> dict[str, torch.Tensor]:
        """Shape, primitive and material tables (CPU tensors) keyed by attribute name."""
        f32 = torch.float32
        t = lambda x, dtype=f32: torch.tensor(x, dtype=dtype)  # noqa: E731
        out = {"_lo": t(self.lo), "_hi": t(self.hi)}
        b, s, c = self.boxes, self.spheres, self.cylinders
        out["_box_c"] = t([o.center for o in b]).reshape(-1, 3)
        out["_box_h"] = t([o.half for o in b]).reshape(-1, 3)
        out["_box_cs"] = t([(math.cos(o.yaw), math.sin(o.yaw)) for o in b]).reshape(-1, 2)
        out["_sph_c"] = t([o.center for o in s]).reshape(-1, 3)
        out["_sph_r"] = t([o.radius for o in s]).reshape(-1)
        out["_cyl_c"] = t([o.center for o in c]).reshape(-1, 3)
        out["_cyl_r"] = t([o.radius for o in c]).reshape(-1)
        out["_cyl_h"] = t([o.half_height for o in c]).reshape(-1)
        # Per-primitive tables (index 0 = the room).
        centers = [tuple((self.lo + self.hi) / 2)] + [o.center for o in self.objects]
        halves, yaws, types = [tuple((self.hi - self.lo) / 2)], [0.0], [_ROOM]
        for o in self.objects:
            if isinstance(o, Box):
                half, yaw, kind = o.half, o.yaw, _BOX
            elif isinstance(o, Sphere):
                half, yaw, kind = (o.radius,) * 3, 0.0, _SPHERE
            else:
                half, yaw, kind = (o.radius, o.radius, o.half_height), 0.0, _CYLINDER
            halves.append(half)
            yaws.append(yaw)
            types.append(kind)
        out["_p_center"] = t(centers)
        out["_p_half"] = t(halves)
        out["_p_cs"] = t([(math.cos(y), math.sin(y)) for y in yaws])
        out["_p_cs_world"] = out["_p_cs"] * t([1.0, -1.0])  # local -> world: rotate by +yaw
        out["_p_type"] = t(types, torch.long)
        out["_p_mat"] = t([0] + [5 + i for i in range(1, len(types))], torch.long)  # material of an object
        m = self.materials
        out["_m_pattern"] = t([x.pattern for x in m], torch.long)
        out["_m_a"] = t([x.color_a for x in m])
        out["_m_b"] = t([x.color_b for x in m])
        out["_m_scale"] = t([x.scale for x in m])
        out["_m_cs"] = t([(math.cos(x.angle), math.sin(x.angle)) for x in m])
        out["_m_grout"] = t([x.grout for x in m])
        out["_m_dfreq"] = t([x.detail_freq for x in m])
        out["_m_damp"] = t([x.detail_amp for x in m])
        out["_m_salt"] = t([x.salt for x in m], torch.long)
        out["_light"] = t(self.light_dir)
        out["_ambient"], out["_diffuse"] = t(self.ambient), t(self.diffuse)
        out["_axes"] = t([0, 1, 2], torch.long)
        # Constants as 0-d tensors on the device: ``torch.where`` broadcasts them for free (a
        # ``full_like`` or a Python scalar would each cost a kernel launch on CUDA).
        out["_inf"], out["_zero"], out["_tiny"] = t(math.inf), t(0.0), t(1e-12)
        out["_one"], out["_minus_one"] = t(1.0), t(-1.0)
        return out

    def to(self, device: str | torch.device) -> "SyntheticRoom":
        """The same scene rendering on another device (this object is moved in place and returned)."""
        self.device = torch.device(device)
        self._build_tensors()
        return self

    def __getstate__(self) -> dict:
        """Pickles as a CPU room without its tensors (rebuilt on load): planner processes send
        rooms back with their paths, and torch's pickler would share each tensor's memory."""
        derived = ("_host_tables", "_tables_on_device")
        state = {k: v for k, v in self.__dict__.items() if not isinstance(v, torch.Tensor) and k not in derived}
        state["device"] = torch.device("cpu")
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._build_tensors()

    # ------------------------------------------------------------------ queries
    @property
    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(min_xyz, max_xyz) of the room interior, float32 on the room's device."""
        return self._lo.clone(), self._hi.clone()

    def free_distance_2d(self, xy: np.ndarray) -> np.ndarray:
        """Signed distance in the floor plane from points ``[..., 2]`` to the nearest wall or
        object footprint (positive in free space); every object counts at all heights."""
        xy = np.asarray(xy, dtype=np.float64)
        return self.free_distance_xy(xy[..., 0], xy[..., 1])

    def free_distance_xy(self, x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
        """:meth:`free_distance_2d` of points given by their coordinates (arrays of one shape).

        Objects are evaluated at once, on a leading axis: path planning calls this thousands of
        times per path for one point or a few hundred, where numpy's per-call cost dominates.
        """
        shape = np.shape(x)
        x, y = np.reshape(x, -1).astype(np.float64, copy=False), np.reshape(y, -1).astype(np.float64, copy=False)
        d = np.minimum(np.minimum(x - self.lo[0], self.hi[0] - x), np.minimum(y - self.lo[1], self.hi[1] - y))
        box = self._box_fp
        if box is not None:
            px, py = x - box["x"], y - box["y"]
            qx = np.abs(box["cos"] * px + box["sin"] * py) - box["hx"]
            qy = np.abs(box["-sin"] * px + box["cos"] * py) - box["hy"]
            od = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)
            d = np.minimum(d, od.min(0))
        rnd = self._round_fp
        if rnd is not None:
            d = np.minimum(d, (np.hypot(x - rnd["x"], y - rnd["y"]) - rnd["r"]).min(0))
        return d.reshape(shape)[()]

    def sdf(self, points: torch.Tensor) -> torch.Tensor:
        """Signed distance (metres) from points ``[..., 3]`` to the scene surfaces: positive in free
        space, negative inside objects or outside the room; ~0 on every rendered surface."""
        p = torch.as_tensor(points, dtype=torch.float32, device=self.device)
        d = torch.minimum(p - self._lo, self._hi - p).amin(-1)
        for o in self.objects:
            q = p - torch.tensor(o.center, dtype=torch.float32, device=self.device)
            if isinstance(o, Box):
                c, s = math.cos(o.yaw), math.sin(o.yaw)
                loc = torch.stack([c * q[..., 0] + s * q[..., 1], -s * q[..., 0] + c * q[..., 1], q[..., 2]], -1)
                e = loc.abs() - torch.tensor(o.half, dtype=torch.float32, device=self.device)
                od = e.clamp_min(0).norm(dim=-1) + e.amax(-1).clamp_max(0)
            elif isinstance(o, Sphere):
                od = q.norm(dim=-1) - o.radius
            else:
                e = torch.stack([q[..., :2].norm(dim=-1) - o.radius, q[..., 2].abs() - o.half_height], -1)
                od = e.clamp_min(0).norm(dim=-1) + e.amax(-1).clamp_max(0)
            d = torch.minimum(d, od)
        return d

    def sample_free_position(
        self,
        rng: np.random.Generator | int | None = None,
        clearance: float = 0.6,
        z: float | None = None,
        max_tries: int = 10000,
    ) -> np.ndarray:
        """A random floor position ``[2]`` (or ``[3]`` with height ``z``) at least ``clearance`` m
        from walls and object footprints."""
        rng = np.random.default_rng(rng)
        for _ in range(max_tries):
            xy = rng.uniform(self.lo[:2], self.hi[:2])
            if self.free_distance_2d(xy) >= clearance:
                return xy if z is None else np.array([xy[0], xy[1], z])
        raise RuntimeError(f"no free position with clearance {clearance} m in room seed {self.seed}")

    # ------------------------------------------------------------------ rendering
    def render(
        self, intrinsics: torch.Tensor, cam_to_world: torch.Tensor, height: int, width: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact RGB ``[C, H, W, 3]`` in [0, 1] and z-depth ``[C, H, W]`` (metres) for cameras
        ``intrinsics [C, 3, 3]`` / ``cam_to_world [C, 4, 4]`` (unbatched in -> unbatched out).

        Rays that leave the scene (a camera outside the room) get black and depth 0.
        """
        unbatched = torch.as_tensor(cam_to_world).dim() == 2
        rgb, depth = render_rooms([self], None, intrinsics, cam_to_world, height, width)
        return (rgb[0], depth[0]) if unbatched else (rgb, depth)


def render_rooms(
    rooms: Sequence[SyntheticRoom],
    room_of_camera: Sequence[int] | np.ndarray | None,
    intrinsics: torch.Tensor,
    cam_to_world: torch.Tensor,
    height: int,
    width: int,
    merged: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB ``[C, H, W, 3]`` and z-depth ``[C, H, W]`` of cameras in several rooms: camera ``i``
    sees ``rooms[room_of_camera[i]]`` (``None``: one room). Each image is bit for bit
    :meth:`SyntheticRoom.render`'s.

    ``merged`` casts all rooms' rays in one pass over tables padded to the largest room (default:
    on CUDA, where the renderer is bound by kernel launches, about 400 per pass); otherwise each
    run of cameras in one room is its own pass (default on the CPU, where padding only adds work).
    """
    device = rooms[0].device
    if any(room.device != device for room in rooms):
        raise ValueError("render_rooms: the rooms must be on one device")
    T = upload(torch.as_tensor(cam_to_world), device, torch.float32).reshape(-1, 4, 4)
    C, N = T.shape[0], height * width
    K = upload(torch.as_tensor(intrinsics), device, torch.float32).reshape(-1, 3, 3).expand(C, 3, 3)
    if len(rooms) == 1:
        tables = rooms[0]._tables_on_device
    else:
        index = np.asarray(room_of_camera, dtype=np.int64).reshape(-1)
        if index.shape != (C,) or index.min() < 0 or index.max() >= len(rooms):
            raise ValueError(f"render_rooms: room_of_camera needs one index in 0..{len(rooms) - 1} per camera ({C})")
        if not (device.type == "cuda" if merged is None else merged):
            starts = np.flatnonzero(np.diff(index, prepend=-1))
            runs = [(rooms[index[a]], a, b) for a, b in zip(starts, [*starts[1:], C])]
            parts = [render_rooms([room], None, K[a:b], T[a:b], height, width) for room, a, b in runs]
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        tables = _RoomTables.of_cameras([room._host_tables for room in rooms], index, device)
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device, dtype=torch.float32) + 0.5,
        torch.arange(width, device=device, dtype=torch.float32) + 0.5,
        indexing="ij",
    )
    xs, ys = xs.reshape(1, -1), ys.reshape(1, -1)
    # Small chunks keep CPU temporaries in cache; CUDA prefers big launches.
    limit = _MAX_RAYS_PER_CHUNK if device.type == "cuda" else _MAX_RAYS_PER_CHUNK_CPU
    cams = max(1, limit // N)
    pix = min(N, limit)
    if cams >= C and pix >= N:  # one chunk (one room's window on CUDA): no copies into a buffer
        rgb, depth = tables.render_rays(K, T, xs, ys)
        return rgb.reshape(C, height, width, 3), depth.reshape(C, height, width)
    rgb = torch.empty(C, N, 3, device=device)
    depth = torch.empty(C, N, device=device)
    for c0 in range(0, C, cams):
        c1 = min(C, c0 + cams)
        part = tables.cameras(c0, c1)
        for p0 in range(0, N, pix):
            p1 = min(N, p0 + pix)
            rgb[c0:c1, p0:p1], depth[c0:c1, p0:p1] = part.render_rays(K[c0:c1], T[c0:c1], xs[:, p0:p1], ys[:, p0:p1])
    return rgb.reshape(C, height, width, 3), depth.reshape(C, height, width)


# Hit-test tables: one row per camera (several rooms) or a single row for all (one room). A room
# has no ``*_ok`` masks and no ``slot_prim`` (its hit slots are its primitives).
_PER_CAMERA = ("lo", "hi", "box_c", "box_h", "box_cs", "box_ok", "sph_c", "sph_r", "sph_ok", "cyl_c", "cyl_r",
               "cyl_h", "cyl_ok", "slot_prim", "light", "ambient", "diffuse")
_CONSTANTS = ("_inf", "_zero", "_tiny", "_one", "_minus_one", "_axes")


class _RoomTables:
    """What the ray caster reads, for one room or for the cameras of several.

    Hit tests read per-camera rows of each kind's primitives (``[C or 1, K, ...]``; with several
    rooms padded to the largest count, ``*_ok`` masking the padding, and ``slot_prim`` mapping a
    hit's slot to its primitive). Shading reads primitive and material tables indexed by primitive
    (with several rooms, the rooms' tables concatenated)."""

    def __init__(self, **tables: torch.Tensor | None) -> None:
        self.__dict__.update(tables)

    @classmethod
    def of_room(cls, t: dict[str, torch.Tensor]) -> "_RoomTables":
        """One room's tables (on its device) as a single broadcast row: no copies."""
        rows = {k: t["_" + k][None] if "_" + k in t else None for k in _PER_CAMERA}
        shared = {k[1:]: v for k, v in t.items() if k.startswith(("_p_", "_m_")) or k in _CONSTANTS}
        return cls(**rows, **shared)

    @classmethod
    def of_cameras(cls, rooms: Sequence[dict[str, torch.Tensor]], index: np.ndarray, device: torch.device):
        """Tables for cameras in several rooms (``index``: each camera's room), built from the
        rooms' CPU tables and moved to ``device`` in one packed upload per dtype."""
        out: dict[str, torch.Tensor] = {}
        for kind, names in (("box", ("c", "h", "cs")), ("sph", ("c", "r")), ("cyl", ("c", "r", "h"))):
            counts = [t[f"_{kind}_c"].shape[0] for t in rooms]
            most = max(counts)
            out[f"{kind}_ok"] = (torch.arange(most)[None] < torch.tensor(counts)[:, None])[index]
            for name in names:
                first = rooms[0][f"_{kind}_{name}"]
                # padding: a 1-m primitive that rays do hit, so that the mask alone hides it
                padded = torch.ones((len(rooms), most) + first.shape[1:], dtype=first.dtype)
                for r, t in enumerate(rooms):
                    padded[r, : counts[r]] = t[f"_{kind}_{name}"]
                out[f"{kind}_{name}"] = padded[index]
        # A hit's slot (room, boxes, spheres, cylinders, each padded) -> global primitive index.
        n_box, n_sph = out["box_ok"].shape[1], out["sph_ok"].shape[1]
        slot_prim, p_mat, prim_base, mat_base = [], [], 0, 0
        for t in rooms:
            nb, ns, nc = (t[f"_{k}_c"].shape[0] for k in ("box", "sph", "cyl"))
            slots = torch.full((1 + n_box + n_sph + out["cyl_ok"].shape[1],), prim_base, dtype=torch.long)
            for start, first, n in ((1, 1, nb), (1 + n_box, 1 + nb, ns), (1 + n_box + n_sph, 1 + nb + ns, nc)):
                slots[start : start + n] = prim_base + first + torch.arange(n)
            slot_prim.append(slots)
            p_mat.append(t["_p_mat"] + mat_base)
            prim_base += t["_p_type"].shape[0]
            mat_base += t["_m_pattern"].shape[0]
        out["slot_prim"] = torch.stack(slot_prim)[index]
        out["p_mat"] = torch.cat(p_mat)
        for k in _PER_CAMERA:
            if k not in out:  # a room's own row (bounds, lighting): one per camera
                out[k] = torch.stack([t["_" + k] for t in rooms])[index]
        for k in rooms[0]:
            if k.startswith(("_p_", "_m_")) and k != "_p_mat":
                out[k[1:]] = torch.cat([t[k] for t in rooms])
        for k in _CONSTANTS:
            out[k[1:]] = rooms[0][k]
        return cls(**_to_device(out, device))

    def cameras(self, c0: int, c1: int) -> "_RoomTables":
        """The tables of cameras ``c0:c1`` (a render chunk)."""
        part = dict(self.__dict__)
        for k in _PER_CAMERA:
            v = part[k]
            if v is not None and v.shape[0] > 1:
                part[k] = v[c0:c1]
        return _RoomTables(**part)

    def render_rays(self, K: torch.Tensor, T: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor):
        """Colour [C, n, 3] and z-depth [C, n] of pixel centres (xs, ys) [1, n] for C cameras."""
        fx, fy, skew = K[:, 0, 0, None], K[:, 1, 1, None], K[:, 0, 1, None]
        cx, cy = K[:, 0, 2, None], K[:, 1, 2, None]
        yc = (ys - cy) / fy
        xc = (xs - cx - skew * yc) / fx
        # Camera-frame direction (xc, yc, 1): the ray parameter t is the z-depth.
        R = T[:, :3, :3]
        d = R[:, None, :, 0] * xc[..., None] + R[:, None, :, 1] * yc[..., None] + R[:, None, :, 2]  # [C, N, 3]
        o = T[:, None, :3, 3]  # [C, 1, 3]

        ts = [self._hit_room(o, d)[..., None]]
        if self.box_c.shape[1]:
            ts.append(self._hit_boxes(o, d))
        if self.sph_c.shape[1]:
            ts.append(self._hit_spheres(o, d))
        if self.cyl_c.shape[1]:
            ts.append(self._hit_cylinders(o, d))
        t_all = torch.cat(ts, -1)  # [C, N, slots]
        t_hit, prim = t_all.min(-1)
        if self.slot_prim is not None:
            prim = self.slot_prim.gather(1, prim)
        valid = torch.isfinite(t_hit)
        t_hit = torch.where(valid, t_hit, self.zero)
        rgb = self._shade(o + t_hit[..., None] * d, d, prim)
        rgb = torch.where(valid[..., None], rgb, self.zero)
        return rgb, t_hit

    # Intersections: o [C, 1, 3], d [C, N, 3] -> t [C, N, K] (inf where missed or padding).
    def _hit_room(self, o: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        t = torch.where(d > 0, (self.hi[:, None] - o) / d, torch.where(d < 0, (self.lo[:, None] - o) / d, self.inf))
        t = t.amin(-1)
        return torch.where(t > _EPS_T, t, self.inf)

    @staticmethod
    def _to_local(v: torch.Tensor, cs: torch.Tensor) -> torch.Tensor:
        c, s = cs[..., 0], cs[..., 1]
        return torch.stack([c * v[..., 0] + s * v[..., 1], -s * v[..., 0] + c * v[..., 1], v[..., 2]], -1)

    def _missed(self, hit: torch.Tensor, t: torch.Tensor, ok: torch.Tensor | None) -> torch.Tensor:
        return torch.where(hit if ok is None else hit & ok[:, None], t, self.inf)

    def _hit_boxes(self, o: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        box_c, box_cs = self.box_c[:, None], self.box_cs[:, None]  # [C or 1, 1, K, ...]
        ol = self._to_local(o[:, :, None, :] - box_c, box_cs)  # [C, 1, K, 3]
        dl = self._to_local(d[:, :, None, :].expand(-1, -1, self.box_c.shape[1], -1), box_cs)
        dl = torch.where(dl.abs() < 1e-12, self.tiny, dl)
        inv = 1.0 / dl
        half = self.box_h[:, None]
        t1 = (-half - ol) * inv
        t2 = (half - ol) * inv
        tnear = torch.minimum(t1, t2).amax(-1)
        tfar = torch.maximum(t1, t2).amin(-1)
        return self._missed((tnear <= tfar) & (tnear > _EPS_T), tnear, self.box_ok)

    def _hit_spheres(self, o: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        oc = o[:, :, None, :] - self.sph_c[:, None]  # [C, 1, K, 3]
        a = (d * d).sum(-1, keepdim=True)  # [C, N, 1]
        hb = (oc * d[:, :, None, :]).sum(-1)  # [C, N, K]
        cc = (oc * oc).sum(-1) - self.sph_r[:, None] ** 2  # [C, 1, K]
        disc = hb * hb - a * cc
        sq = disc.clamp_min(0).sqrt()
        t0 = (-hb - sq) / a
        t1 = (-hb + sq) / a
        t = torch.where(t0 > _EPS_T, t0, torch.where(t1 > _EPS_T, t1, self.inf))
        return self._missed(disc >= 0, t, self.sph_ok)

    def _hit_cylinders(self, o: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        oc = o[:, :, None, :] - self.cyl_c[:, None]  # [C, 1, K, 3]
        dx, dy, dz = d[..., 0, None], d[..., 1, None], d[..., 2, None]  # [C, N, 1]
        ox, oy, oz = oc[..., 0], oc[..., 1], oc[..., 2]
        r2, hz = self.cyl_r[:, None] ** 2, self.cyl_h[:, None]
        a = (dx * dx + dy * dy).clamp_min(1e-12)
        hb = ox * dx + oy * dy
        disc = hb * hb - a * (ox * ox + oy * oy - r2)
        ts = (-hb - disc.clamp_min(0).sqrt()) / a
        side_ok = (disc >= 0) & (ts > _EPS_T) & ((oz + ts * dz).abs() <= hz)
        t = torch.where(side_ok, ts, self.inf)
        dz_safe = torch.where(dz.abs() < 1e-12, self.tiny, dz)
        for sign in (-1.0, 1.0):
            tc = (sign * hz - oz) / dz_safe
            px, py = ox + tc * dx, oy + tc * dy
            cap_ok = (tc > _EPS_T) & (px * px + py * py <= r2)
            t = torch.minimum(t, torch.where(cap_ok, tc, self.inf))
        return t if self.cyl_ok is None else torch.where(self.cyl_ok[:, None], t, self.inf)

    def _shade(self, p: torch.Tensor, d: torch.Tensor, prim: torch.Tensor) -> torch.Tensor:
        """Albedo from the hit surface's procedural texture times Lambert lighting."""
        ptype = self.p_type[prim]
        cs = self.p_cs[prim]
        half = self.p_half[prim]
        loc = self._to_local(p - self.p_center[prim], cs)
        lx, ly, lz = loc.unbind(-1)
        q = loc / half
        # Box-like (room, boxes): the face is the axis where |q| is largest.
        axis = q.abs().argmax(-1)
        qa = torch.gather(q, -1, axis[..., None])[..., 0]
        sgn = torch.where(qa >= 0, self.one, self.minus_one)
        n_box = (axis[..., None] == self.axes).to(p.dtype) * sgn[..., None]  # one_hot without its checks
        # Sphere.
        n_sph = loc / loc.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        # Cylinder: cap when |q_z| beats the radial coordinate.
        radial = torch.sqrt(q[..., 0] ** 2 + q[..., 1] ** 2)
        cap = q[..., 2].abs() > radial
        rxy = torch.sqrt(lx * lx + ly * ly).clamp_min(1e-9)
        n_side = torch.stack([lx / rxy, ly / rxy, torch.zeros_like(lx)], -1)
        cap_sign = torch.where(q[..., 2] >= 0, self.one, self.minus_one)
        n_cap = torch.stack([torch.zeros_like(lx), torch.zeros_like(lx), cap_sign], -1)
        n_cyl = torch.where(cap[..., None], n_cap, n_side)
        is_box = (ptype == _ROOM) | (ptype == _BOX)
        n_loc = torch.where(is_box[..., None], n_box, torch.where((ptype == _SPHERE)[..., None], n_sph, n_cyl))

        # Texture coordinates (metres) on the surface.
        u_box = torch.where(axis == 0, ly, lx)
        v_box = torch.where(axis == 2, ly, lz)
        ang = torch.atan2(ly, lx) * half[..., 0]
        u_sph, v_sph = ang, torch.asin((lz / half[..., 0]).clamp(-1, 1)) * half[..., 0]
        u_cyl, v_cyl = torch.where(cap, lx, ang), torch.where(cap, ly, lz)
        u = torch.where(is_box, u_box, torch.where(ptype == _SPHERE, u_sph, u_cyl))
        v = torch.where(is_box, v_box, torch.where(ptype == _SPHERE, v_sph, v_cyl))

        # Material: a room's faces 0..5 by normal (after its material base), its objects by primitive.
        upper = (sgn > 0).long()  # == torch.where(sgn > 0, CEILING, FLOOR), as CEILING = 1 and FLOOR = 0
        face = torch.where(axis == 2, upper, 2 + 2 * axis + upper)
        mat = self.p_mat[prim] + face * (ptype == _ROOM)
        mcs = self.m_cs[mat]
        scale = self.m_scale[mat]
        su = (mcs[..., 0] * u + mcs[..., 1] * v) / scale
        sv = (-mcs[..., 1] * u + mcs[..., 0] * v) / scale
        salt = self.m_salt[mat]
        fq = self.m_dfreq[mat]
        w, detail = textures.surface_texture(
            self.m_pattern[mat], su, sv, salt, self.m_grout[mat], u * fq, v * fq, salt + 31, detail_octaves=2
        )
        albedo = torch.lerp(self.m_a[mat], self.m_b[mat], w[..., None])
        albedo = albedo * (1.0 + 2.0 * self.m_damp[mat] * (detail - 0.5))[..., None]

        # Lambert: world normal facing the camera, one directional light plus ambient.
        n = self._to_local(n_loc, self.p_cs_world[prim])  # local -> world: rotate by +yaw
        n = torch.where(((n * d).sum(-1) > 0)[..., None], -n, n)
        lam = (n * self.light[:, None]).sum(-1).clamp_min(0)
        return (albedo * (self.ambient[:, None] + self.diffuse[:, None] * lam)[..., None]).clamp(0.0, 1.0)


def _to_device(tables: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """CPU tensors moved to ``device`` without a host sync: on CUDA they travel packed, one
    pinned buffer per dtype copied asynchronously, instead of one blocking copy (a device
    sync, stalling the host until queued training work is done) per tensor."""
    if device.type == "cpu":
        return dict(tables)
    out = {}
    for dtype in dict.fromkeys(t.dtype for t in tables.values()):
        names = [k for k, t in tables.items() if t.dtype == dtype]
        flat = upload(torch.cat([tables[k].reshape(-1) for k in names]), device)
        for k, part in zip(names, flat.split([tables[k].numel() for k in names])):
            out[k] = part.view(tables[k].shape)
    return out


def _footprint_tables(objects: Sequence[Primitive]) -> dict[str, np.ndarray] | None:
    """Float64 per-object columns ``[K, 1]`` of floor footprints (boxes or round ones) for
    :meth:`SyntheticRoom.free_distance_xy`.

    The yaw's cos/sin come from ``math`` (not numpy's SIMD versions) so distances match the
    per-object formulas bit for bit.
    """
    if not objects:
        return None
    col = lambda values: np.array(values, dtype=np.float64)[:, None]  # noqa: E731
    table = {"x": col([o.center[0] for o in objects]), "y": col([o.center[1] for o in objects])}
    if isinstance(objects[0], Box):
        table.update(
            cos=col([math.cos(o.yaw) for o in objects]),
            sin=col([math.sin(o.yaw) for o in objects]),
            hx=col([o.half[0] for o in objects]),
            hy=col([o.half[1] for o in objects]),
        )
        table["-sin"] = -table["sin"]
    else:
        table["r"] = col([o.radius for o in objects])
    return table


def _with_xy(obj: Primitive, xy: np.ndarray) -> Primitive:
    center = (float(xy[0]), float(xy[1]), obj.center[2])
    if isinstance(obj, Box):
        return Box(center, tuple(float(h) for h in obj.half), obj.yaw)
    if isinstance(obj, Sphere):
        return Sphere(center, obj.radius)
    return Cylinder(center, obj.radius, obj.half_height)
