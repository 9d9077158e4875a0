"""Point clouds with named attribute columns.

``Points`` holds an ``(N, C)`` tensor whose first three columns are x, y, z in a stated frame
(``'lidar'``: z up; ``'camera'``: y down) and whose other columns are named, e.g.
``{'intensity': 3, 'time_lag': 4}`` for multi-sweep nuScenes points. Geometric transforms follow
the box transforms of :mod:`perception.structures.boxes3d`, so applying the same call to points and
boxes keeps them consistent.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import torch

from ..engine.errors import DataError
from .boxes3d import CAMERA, LIDAR


class Points:
    """``(N, C)`` points; ``attributes`` maps column names beyond x, y, z to column indices."""

    def __init__(self, tensor: torch.Tensor | np.ndarray, frame: str = 'lidar',
                 attributes: dict[str, int] | None = None) -> None:
        tensor = torch.as_tensor(tensor)
        if not tensor.is_floating_point():
            tensor = tensor.float()
        if tensor.dim() != 2 or tensor.shape[1] < 3:
            raise DataError(f'Points expects an (N, C>=3) array, got shape {tuple(tensor.shape)}')
        if frame not in ('lidar', 'camera'):
            raise ValueError(f"Points frame must be 'lidar' or 'camera', got {frame!r}")
        attributes = dict(attributes or {})
        for name, column in attributes.items():
            if not 3 <= column < tensor.shape[1]:
                raise DataError(f'Points attribute {name!r} points at column {column}, but the '
                                f'points have {tensor.shape[1]} columns (x, y, z are 0-2)')
        self.tensor = tensor
        self.frame = frame
        self.attributes = attributes

    def new(self, tensor: torch.Tensor) -> 'Points':
        return Points(tensor, self.frame, self.attributes)

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def __getitem__(self, index) -> 'Points':
        return self.new(self.tensor[index].reshape(-1, self.tensor.shape[1]))

    def __repr__(self) -> str:
        return f'Points({len(self)} x {self.tensor.shape[1]}, frame={self.frame!r}, ' \
               f'attributes={self.attributes})'

    @staticmethod
    def cat(points: Iterable['Points']) -> 'Points':
        points = list(points)
        first = points[0]
        for other in points[1:]:
            if other.frame != first.frame or other.attributes != first.attributes:
                raise ValueError('Points.cat: frames and attribute columns must match')
        return first.new(torch.cat([p.tensor for p in points], dim=0))

    def numpy(self) -> np.ndarray:
        return self.tensor.detach().cpu().numpy()

    def to(self, *args, **kwargs) -> 'Points':
        return self.new(self.tensor.to(*args, **kwargs))

    @property
    def coord(self) -> torch.Tensor:
        """``(N, 3)`` positions."""
        return self.tensor[:, :3]

    def attribute(self, name: str) -> torch.Tensor:
        """``(N,)`` values of a named column."""
        if name not in self.attributes:
            raise KeyError(f'points have no attribute {name!r}; '
                           f'they have {sorted(self.attributes)}')
        return self.tensor[:, self.attributes[name]]

    # The transforms mirror Boxes3D.translate / rotate / flip / scale.
    def translate(self, vector: Sequence[float] | torch.Tensor) -> 'Points':
        t = self.tensor.clone()
        t[:, :3] += torch.as_tensor(vector, dtype=t.dtype, device=t.device)
        return self.new(t)

    def rotate(self, angle: float) -> 'Points':
        """Rotate about the vertical axis as ``Boxes3D.rotate(angle)`` moves box centres."""
        frame = LIDAR if self.frame == 'lidar' else CAMERA
        a, b = frame.plane
        phi = frame.yaw_sign * angle
        c, s = math.cos(phi), math.sin(phi)
        t = self.tensor.clone()
        xa, xb = t[:, a].clone(), t[:, b].clone()
        t[:, a], t[:, b] = c * xa - s * xb, s * xa + c * xb
        return self.new(t)

    def flip(self, axis: str = 'horizontal') -> 'Points':
        """Mirror as ``Boxes3D.flip(axis)``: horizontal = left-right, vertical = front-back."""
        if axis not in ('horizontal', 'vertical'):
            raise ValueError(f"flip axis must be 'horizontal' or 'vertical', got {axis!r}")
        column = {('lidar', 'horizontal'): 1, ('lidar', 'vertical'): 0,
                  ('camera', 'horizontal'): 0, ('camera', 'vertical'): 2}[(self.frame, axis)]
        t = self.tensor.clone()
        t[:, column] = -t[:, column]
        return self.new(t)

    def scale(self, factor: float) -> 'Points':
        t = self.tensor.clone()
        t[:, :3] *= factor
        return self.new(t)

    def transform(self, matrix: torch.Tensor | np.ndarray, frame: str | None = None) -> 'Points':
        """Apply a 4x4 / 3x4 rigid transform to the positions; ``frame`` names the result's."""
        matrix = torch.as_tensor(np.asarray(matrix) if not isinstance(matrix, torch.Tensor)
                                 else matrix, dtype=self.tensor.dtype, device=self.tensor.device)
        t = self.tensor.clone()
        t[:, :3] = t[:, :3] @ matrix[:3, :3].T + matrix[:3, 3]
        return Points(t, frame or self.frame, self.attributes)

    def in_range_3d(self, point_range: Sequence[float]) -> torch.Tensor:
        """``(N,)`` mask of points inside ``[x_min, y_min, z_min, x_max, y_max, z_max]`` (min
        inclusive, max exclusive, as voxelisation counts them)."""
        low = self.tensor.new_tensor(point_range[:3])
        high = self.tensor.new_tensor(point_range[3:6])
        xyz = self.tensor[:, :3]
        return ((xyz >= low) & (xyz < high)).all(dim=1)

    def shuffle(self, generator: torch.Generator | None = None) -> tuple['Points', torch.Tensor]:
        """Randomly permuted points and the permutation used."""
        order = torch.randperm(len(self), generator=generator, device=self.tensor.device)
        return self.new(self.tensor[order]), order
