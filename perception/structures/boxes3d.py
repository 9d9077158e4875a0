"""3D boxes in the LiDAR and camera frames (layouts of docs/conventions.md, as mmdetection3d v1.x).

``LiDARBoxes3D``: ``[x, y, z, l, w, h, yaw(, vx, vy)]``, (x, y, z) the bottom centre, z up, yaw
counter-clockwise about +z from +x. ``CameraBoxes3D``: ``[x, y, z, l, h, w, ry(, vx, vz)]``,
(x, y, z) the bottom centre, y down, ry about +y from +x (heading ``(cos ry, 0, -sin ry)``).

The geometry is written once, as pure functions of the frame's axis description (``_Frame``), so the
two classes are thin: they only name which column is which. Every method returns a new object
(boxes are small; copying keeps augmentation code free of aliasing bugs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch

from ..engine.errors import DataError

Array = torch.Tensor | np.ndarray | Sequence


@dataclass(frozen=True)
class _Frame:
    name: str
    up_axis: int          # index of the vertical axis
    up_sign: float        # +1 if the up axis points up (LiDAR z), -1 if it points down (camera y)
    plane: tuple[int, int]  # the two horizontal axes (a, b); yaw is measured in this plane
    yaw_sign: float       # heading = (cos(s*yaw), sin(s*yaw)) in the (a, b) plane
    size_order: tuple[int, int, int]  # columns of (length, width, height) among the 3 size columns


LIDAR = _Frame('lidar', up_axis=2, up_sign=1.0, plane=(0, 1), yaw_sign=1.0, size_order=(0, 1, 2))
# In the camera frame the horizontal plane is (x, z); heading (cos ry, -sin ry) in (x, z), i.e. the
# angle in that plane is -ry. Sizes are stored l, h, w.
CAMERA = _Frame('camera', up_axis=1, up_sign=-1.0, plane=(0, 2), yaw_sign=-1.0,
                size_order=(0, 2, 1))


def limit_period(angle: torch.Tensor | np.ndarray, offset: float = 0.5,
                 period: float = 2 * math.pi) -> torch.Tensor | np.ndarray:
    """Wrap ``angle`` (tensor, array or number) into ``[-offset, 1 - offset) * period``."""
    if isinstance(angle, torch.Tensor):
        return angle - torch.floor(angle / period + offset) * period
    angle = np.asarray(angle, dtype=np.float64)
    return angle - np.floor(angle / period + offset) * period


def rotation_matrix_about(axis: int, angle: torch.Tensor) -> torch.Tensor:
    """Right-handed rotation matrices about coordinate ``axis``: ``(N,)`` -> ``(N, 3, 3)``."""
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    if axis == 2:
        rows = [c, -s, zero, s, c, zero, zero, zero, one]
    elif axis == 1:
        rows = [c, zero, s, zero, one, zero, -s, zero, c]
    elif axis == 0:
        rows = [one, zero, zero, zero, c, -s, zero, s, c]
    else:
        raise ValueError(f'axis must be 0, 1 or 2, got {axis}')
    return torch.stack(rows, dim=-1).reshape(*angle.shape, 3, 3)


class Boxes3D:
    """``(N, 7)`` or ``(N, 9)`` (with velocity) boxes; see the module docstring for the layouts."""

    frame: _Frame = LIDAR

    def __init__(self, tensor: Array, box_dim: int | None = None) -> None:
        tensor = torch.as_tensor(np.asarray(tensor) if isinstance(tensor, Sequence) else tensor)
        if not tensor.is_floating_point():
            tensor = tensor.float()
        if tensor.numel() == 0:
            tensor = tensor.reshape(0, box_dim or 7)
        if tensor.dim() != 2 or tensor.shape[1] not in (7, 9):
            raise DataError(f'{type(self).__name__} expects an (N, 7) or (N, 9) array, '
                            f'got shape {tuple(tensor.shape)}')
        if not torch.isfinite(tensor).all():
            bad = (~torch.isfinite(tensor)).any(dim=1).nonzero().flatten().tolist()
            raise DataError(f'{type(self).__name__}: non-finite values in box rows {bad[:10]}')
        self.tensor = tensor

    # ----------------------------------------------------------------------------- containers
    def new(self, tensor: torch.Tensor) -> 'Boxes3D':
        return type(self)(tensor)

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def __getitem__(self, index) -> 'Boxes3D':
        selected = self.tensor[index]
        return self.new(selected.reshape(-1, self.box_dim))

    def __repr__(self) -> str:
        return f'{type(self).__name__}(\n{self.tensor})'

    @classmethod
    def cat(cls, boxes: Iterable['Boxes3D']) -> 'Boxes3D':
        boxes = list(boxes)
        if not boxes:
            return cls(torch.zeros(0, 7))
        return cls(torch.cat([b.tensor for b in boxes], dim=0))

    def to(self, *args, **kwargs) -> 'Boxes3D':
        return self.new(self.tensor.to(*args, **kwargs))

    def clone(self) -> 'Boxes3D':
        return self.new(self.tensor.clone())

    def numpy(self) -> np.ndarray:
        return self.tensor.detach().cpu().numpy()

    @property
    def device(self) -> torch.device:
        return self.tensor.device

    @property
    def box_dim(self) -> int:
        return self.tensor.shape[1]

    @property
    def with_velocity(self) -> bool:
        return self.box_dim == 9

    # ----------------------------------------------------------------------------- fields
    @property
    def bottom_center(self) -> torch.Tensor:
        """``(N, 3)``, as stored."""
        return self.tensor[:, :3]

    @property
    def gravity_center(self) -> torch.Tensor:
        """``(N, 3)`` geometric centre: half the height above the bottom centre."""
        center = self.tensor[:, :3].clone()
        center[:, self.frame.up_axis] += self.frame.up_sign * self.height / 2
        return center

    @property
    def dims(self) -> torch.Tensor:
        """``(N, 3)`` sizes in the stored order (LiDAR l, w, h; camera l, h, w)."""
        return self.tensor[:, 3:6]

    @property
    def length(self) -> torch.Tensor:
        return self.tensor[:, 3 + self.frame.size_order[0]]

    @property
    def width(self) -> torch.Tensor:
        return self.tensor[:, 3 + self.frame.size_order[1]]

    @property
    def height(self) -> torch.Tensor:
        return self.tensor[:, 3 + self.frame.size_order[2]]

    @property
    def yaw(self) -> torch.Tensor:
        return self.tensor[:, 6]

    @property
    def velocity(self) -> torch.Tensor:
        """``(N, 2)`` velocity along the two horizontal axes; zeros if boxes carry none."""
        if not self.with_velocity:
            return self.tensor.new_zeros(len(self), 2)
        return self.tensor[:, 7:9]

    @property
    def volume(self) -> torch.Tensor:
        return self.length * self.width * self.height

    @property
    def bev(self) -> torch.Tensor:
        """``(N, 5)`` rotated rectangles ``[cx, cy, dx, dy, angle]`` in the horizontal plane.

        LiDAR: ``(x, y, l, w, yaw)``; camera: ``(x, z, l, w, -ry)``. ``angle`` is counter-clockwise
        in the plane's (first, second) axes, as the BEV ops expect.
        """
        a, b = self.frame.plane
        t = self.tensor
        return torch.stack([t[:, a], t[:, b], self.length, self.width,
                            self.frame.yaw_sign * t[:, 6]], dim=1)

    @property
    def corners(self) -> torch.Tensor:
        """``(N, 8, 3)`` corners.

        Order (as mmdetection3d, in the box's own axes: length, width, then up from the bottom):
        ``(-l,-w,0) (-l,-w,h) (-l,+w,h) (-l,+w,0) (+l,-w,0) (+l,-w,h) (+l,+w,h) (+l,+w,0)``, halves
        of l and w; so corners 0-3 are the back face and 4-7 the front face.
        """
        unit = self.tensor.new_tensor([[0, 0, 0], [0, 0, 1], [0, 1, 1], [0, 1, 0],
                                       [1, 0, 0], [1, 0, 1], [1, 1, 1], [1, 1, 0]])
        unit = unit - unit.new_tensor([0.5, 0.5, 0.0])
        local_lwh = unit[None] * torch.stack([self.length, self.width, self.height], 1)[:, None]
        a, b = self.frame.plane
        angle = self.frame.yaw_sign * self.yaw
        c, s = torch.cos(angle)[:, None], torch.sin(angle)[:, None]
        corners = self.tensor.new_zeros(len(self), 8, 3)
        corners[..., a] = c * local_lwh[..., 0] - s * local_lwh[..., 1]
        corners[..., b] = s * local_lwh[..., 0] + c * local_lwh[..., 1]
        corners[..., self.frame.up_axis] = self.frame.up_sign * local_lwh[..., 2]
        return corners + self.bottom_center[:, None]

    # ----------------------------------------------------------------------------- transforms
    def translate(self, vector: Array) -> 'Boxes3D':
        """Shift the centres by ``vector`` ``(3,)`` or ``(N, 3)``."""
        t = self.tensor.clone()
        t[:, :3] += torch.as_tensor(vector, dtype=t.dtype, device=t.device)
        return self.new(t)

    def rotate(self, angle: float) -> 'Boxes3D':
        """Rotate boxes (and velocities) about the vertical axis through the origin.

        ``angle`` follows the frame's yaw: counter-clockwise seen from above for LiDAR (points
        rotate with ``rotation_matrix_about(2, angle)``), and about +y for camera boxes (points
        rotate with ``rotation_matrix_about(1, angle)``), so ``yaw`` grows by ``angle`` in both.
        """
        t = self.tensor.clone()
        a, b = self.frame.plane
        phi = self.frame.yaw_sign * angle
        c, s = math.cos(phi), math.sin(phi)
        xa, xb = t[:, a].clone(), t[:, b].clone()
        t[:, a], t[:, b] = c * xa - s * xb, s * xa + c * xb
        t[:, 6] = t[:, 6] + angle
        if self.with_velocity:
            va, vb = t[:, 7].clone(), t[:, 8].clone()
            t[:, 7], t[:, 8] = c * va - s * vb, s * va + c * vb
        return self.new(t)

    def flip(self, axis: str = 'horizontal') -> 'Boxes3D':
        """Mirror boxes as mmdetection3d's ``flip(bev_direction)``.

        ``'horizontal'`` mirrors left-right: LiDAR y -> -y (yaw -> -yaw); camera x -> -x
        (ry -> pi - ry). ``'vertical'`` mirrors front-back: LiDAR x -> -x (yaw -> pi - yaw); camera
        z -> -z (ry -> -ry). Yaw is wrapped to [-pi, pi).
        """
        if axis not in ('horizontal', 'vertical'):
            raise ValueError(f"flip axis must be 'horizontal' or 'vertical', got {axis!r}")
        t = self.tensor.clone()
        a, b = self.frame.plane
        # The mirrored coordinate: the plane's second axis (LiDAR y) or first axis (camera x) for
        # a left-right flip, the other one for a front-back flip.
        mirrored = {('lidar', 'horizontal'): b, ('lidar', 'vertical'): a,
                    ('camera', 'horizontal'): a, ('camera', 'vertical'): b}[(self.frame.name, axis)]
        t[:, mirrored] = -t[:, mirrored]
        if mirrored == b:
            t[:, 6] = -t[:, 6]
        else:
            t[:, 6] = math.pi - t[:, 6]
        t[:, 6] = limit_period(t[:, 6])
        if self.with_velocity:
            t[:, 7 if mirrored == a else 8] *= -1
        return self.new(t)

    def scale(self, factor: float) -> 'Boxes3D':
        """Scale positions, sizes and velocities about the origin."""
        t = self.tensor.clone()
        t[:, :6] *= factor
        if self.with_velocity:
            t[:, 7:9] *= factor
        return self.new(t)

    def limit_yaw(self, offset: float = 0.5, period: float = 2 * math.pi) -> 'Boxes3D':
        t = self.tensor.clone()
        t[:, 6] = limit_period(t[:, 6], offset, period)
        return self.new(t)

    def in_range_bev(self, bev_range: Sequence[float]) -> torch.Tensor:
        """``(N,)`` mask of boxes whose centre lies in ``[a_min, b_min, a_max, b_max]`` (strict)."""
        a, b = self.frame.plane
        t = self.tensor
        return ((t[:, a] > bev_range[0]) & (t[:, b] > bev_range[1]) &
                (t[:, a] < bev_range[2]) & (t[:, b] < bev_range[3]))

    def convert_to(self, frame: str, matrix: Array | None = None) -> 'Boxes3D':
        """Express the boxes in another frame through a 4x4 (or 3x4) rigid ``matrix``.

        Between the LiDAR and camera frames the axes are swapped by KITTI's rule
        (docs/conventions.md): sizes ``(l, w, h) <-> (l, h, w)`` and ``yaw <-> -yaw - pi/2``, as
        mmdetection3d does; the matrix moves the bottom centre. Within one frame kind (e.g. LiDAR ->
        ego) the matrix's rotation about the up axis is added to the yaw and applied to velocities.
        """
        target = {'lidar': LiDARBoxes3D, 'camera': CameraBoxes3D}.get(frame)
        if target is None:
            raise ValueError(f"frame must be 'lidar' or 'camera', got {frame!r}")
        t = self.tensor
        rotation, translation = _split_matrix(matrix, t)
        center = t[:, :3] @ rotation.T + translation
        if target.frame is self.frame:
            heading = self._heading_vectors() @ rotation.T
            a, b = self.frame.plane
            yaw = self.frame.yaw_sign * torch.atan2(heading[:, b], heading[:, a])
            out = torch.cat([center, t[:, 3:6], yaw[:, None]], dim=1)
            if self.with_velocity:
                velocity3 = t.new_zeros(len(self), 3)
                velocity3[:, a], velocity3[:, b] = t[:, 7], t[:, 8]
                velocity3 = velocity3 @ rotation.T
                out = torch.cat([out, velocity3[:, [a, b]]], dim=1)
            return target(out)
        sizes = t[:, [3, 5, 4]]  # (l, w, h) <-> (l, h, w) is the same swap both ways
        yaw = limit_period(-t[:, 6] - math.pi / 2)
        out = torch.cat([center, sizes, yaw[:, None]], dim=1)
        if self.with_velocity:
            a, b = self.frame.plane
            velocity3 = t.new_zeros(len(self), 3)
            velocity3[:, a], velocity3[:, b] = t[:, 7], t[:, 8]
            velocity3 = velocity3 @ rotation.T
            ta, tb = target.frame.plane
            out = torch.cat([out, velocity3[:, [ta, tb]]], dim=1)
        return target(out)

    def _heading_vectors(self) -> torch.Tensor:
        """``(N, 3)`` unit vectors along each box's length axis."""
        a, b = self.frame.plane
        angle = self.frame.yaw_sign * self.yaw
        heading = self.tensor.new_zeros(len(self), 3)
        heading[:, a], heading[:, b] = torch.cos(angle), torch.sin(angle)
        return heading

    def points_in_boxes(self, points: torch.Tensor) -> torch.Tensor:
        """``(P, N)`` bool: point p lies inside box n (points ``(P, >=3)`` in the same frame)."""
        from ..models.ops.points_in_boxes import points_in_boxes
        return points_in_boxes(points[:, :3], self.tensor[:, :7], frame=self.frame.name)


class LiDARBoxes3D(Boxes3D):
    """Boxes ``[x, y, z, l, w, h, yaw(, vx, vy)]`` in a LiDAR frame, bottom centre, z up."""
    frame = LIDAR


class CameraBoxes3D(Boxes3D):
    """Boxes ``[x, y, z, l, h, w, ry(, vx, vz)]`` in a camera frame, bottom centre, y down."""
    frame = CAMERA

    @property
    def local_yaw(self) -> torch.Tensor:
        """Observation angle ``alpha = ry - atan2(x, z)`` (KITTI), wrapped to [-pi, pi)."""
        return limit_period(self.yaw - torch.atan2(self.tensor[:, 0], self.tensor[:, 2]))


def _split_matrix(matrix: Array | None, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if matrix is None:
        return torch.eye(3, dtype=like.dtype, device=like.device), like.new_zeros(3)
    matrix = torch.as_tensor(np.asarray(matrix) if not isinstance(matrix, torch.Tensor) else matrix,
                             dtype=like.dtype, device=like.device)
    if matrix.shape not in ((4, 4), (3, 4)):
        raise ValueError(f'expected a 4x4 or 3x4 transform, got shape {tuple(matrix.shape)}')
    return matrix[:3, :3], matrix[:3, 3]
