"""RAFT's 2D all-pairs correlation pyramid with a lookup around per-pixel coordinates.

Level ``l`` holds the correlation of every level-0 feature of image 1 with image 2's features
average-pooled ``2**l`` times; a lookup samples, for each pixel of image 1, a ``(2r+1) x (2r+1)``
window of that level bilinearly around ``coords / 2**l`` (zeros outside the image).

Channel order (the official RAFT ``CorrBlock``'s): level outer; within a level the tap index is
``i * (2r+1) + j`` where ``i`` indexes the **x** offset ``i - r`` and ``j`` the **y** offset
``j - r``. Values are divided by ``sqrt(C)``.

Two modes give the same numbers (correlation, average pooling and bilinear sampling are all
linear, so pooling the volume equals correlating with pooled features):

- ``'full'`` builds the ``(B, H, W, H2 / 2**l, W2 / 2**l)`` volumes once (memory O((HW)^2));
  fastest when the image is small and many iterations reuse it.
- ``'alt'`` keeps the pooled feature maps and samples image-2 features at each lookup
  (memory O(HW * C * (2r+1))): for large images.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

MODES = ('full', 'alt')


def correlation_planes(num_levels: int = 4, radius: int = 4) -> int:
    """Channels of a lookup: ``num_levels * (2 * radius + 1) ** 2``."""
    return num_levels * (2 * radius + 1) ** 2


def window_offsets(radius: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``((2r+1)**2, 2)`` (dx, dy) offsets in the official tap order: x outer, y inner."""
    d = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    dx, dy = torch.meshgrid(d, d, indexing='ij')
    return torch.stack([dx, dy], dim=-1).reshape(-1, 2)


def pixel_to_grid(xy: Tensor, height: int, width: int) -> Tensor:
    """Pixel positions ``(..., 2)`` (x, y; pixel centres at integers) -> ``grid_sample``'s
    ``align_corners=False`` coordinates. Exact for any size, 1 included (the official
    ``align_corners=True`` form divides by ``W - 1``)."""
    size = xy.new_tensor([width, height])
    return (2 * xy + 1) / size - 1


def _sample(img: Tensor, xy: Tensor) -> Tensor:
    """Bilinear samples of ``img`` ``(N, C, h, w)`` at pixel positions ``xy`` ``(N, P, Q, 2)``,
    zeros outside: ``(N, C, P, Q)``."""
    grid = pixel_to_grid(xy, img.shape[-2], img.shape[-1])
    return F.grid_sample(img, grid, mode='bilinear', padding_mode='zeros', align_corners=False)


class CorrPyramid2D:
    """All-pairs correlation pyramid of two feature maps and its windowed lookup.

    Args:
        fmap1, fmap2: ``(B, C, H, W)`` features of the two images (same shape).
        num_levels: pyramid levels (4 in RAFT).
        radius: lookup radius ``r``; each level gives ``(2r+1)**2`` channels.
        mode: ``'full'`` (precomputed volume) or ``'alt'`` (on-demand, low memory).
    """

    def __init__(self, fmap1: Tensor, fmap2: Tensor, num_levels: int = 4, radius: int = 4,
                 mode: str = 'full') -> None:
        if mode not in MODES:
            raise ValueError(f"CorrPyramid2D mode must be one of {MODES}, got {mode!r}")
        if fmap1.dim() != 4 or fmap1.shape != fmap2.shape:
            raise ValueError('CorrPyramid2D needs two (B, C, H, W) feature maps of one shape, got '
                             f'{tuple(fmap1.shape)} and {tuple(fmap2.shape)}')
        if num_levels < 1 or radius < 0:
            raise ValueError(f'num_levels must be >= 1 and radius >= 0, got {num_levels}, {radius}')
        self.num_levels, self.radius, self.mode = num_levels, radius, mode
        b, c, h, w = fmap1.shape
        if min(h, w) < 2 ** (num_levels - 1):
            raise ValueError(f'{num_levels} correlation levels need feature maps of at least '
                             f'{2 ** (num_levels - 1)} pixels a side, got {h} x {w}')
        self.shape = (b, h, w)
        self.scale = 1.0 / math.sqrt(c)
        if mode == 'full':
            # Scaling fmap1 and correlating with pooled features (not pooling the volume) spares
            # passes over the (HW)^2 volume: 1.9x faster to build at 440x1024 on one thread.
            fmap1 = fmap1 * self.scale
            self.levels = []
            for lvl in range(num_levels):
                if lvl:
                    fmap2 = F.avg_pool2d(fmap2, 2, stride=2)
                corr = torch.einsum('bchw,bcuv->bhwuv', fmap1, fmap2)
                self.levels.append(corr.reshape(b * h * w, 1, *fmap2.shape[-2:]))
        else:
            self.fmap1 = fmap1
            self.levels = [fmap2]
            for _ in range(num_levels - 1):
                fmap2 = F.avg_pool2d(fmap2, 2, stride=2)
                self.levels.append(fmap2)

    def __call__(self, coords: Tensor) -> Tensor:
        """Look up windows around ``coords`` ``(B, 2, H, W)`` (x, y in image 2's level-0 pixels).

        Returns:
            ``(B, num_levels * (2r+1)**2, H, W)``.
        """
        b, h, w = self.shape
        if coords.shape != (b, 2, h, w):
            raise ValueError(f'coords must be {(b, 2, h, w)}, got {tuple(coords.shape)}')
        k = 2 * self.radius + 1
        offsets = window_offsets(self.radius, coords.dtype, coords.device)  # (k*k, 2)
        xy = coords.permute(0, 2, 3, 1)  # (B, H, W, 2)
        out = []
        for lvl, level in enumerate(self.levels):
            centre = xy / 2 ** lvl
            if self.mode == 'full':
                # a (k, k) grid, not (k * k, 1): the CPU grid_sample vectorises along the last
                # output axis, so a width-1 grid is several times slower
                taps = centre.reshape(b * h * w, 1, 1, 2) + offsets.view(1, k, k, 2)
                corr = _sample(level, taps).view(b, h, w, k * k)
                out.append(corr.permute(0, 3, 1, 2))
            else:
                out.append(self._alt_level(level, centre, offsets.view(k, k, 2)))
        return torch.cat(out, dim=1)

    def _alt_level(self, fmap2: Tensor, centre: Tensor, offsets: Tensor) -> Tensor:
        """Correlate ``fmap1`` with ``fmap2`` sampled around ``centre`` ``(B, H, W, 2)``, one x
        offset (``k`` taps) at a time so the sampled features stay ``(B, C, H, W, k)``."""
        b, h, w = self.shape
        k = offsets.shape[0]
        per_x = []
        for i in range(k):
            taps = centre.reshape(b, h * w, 1, 2) + offsets[i].view(1, 1, k, 2)
            feats = _sample(fmap2, taps).view(b, -1, h, w, k)  # (B, C, H, W, k)
            per_x.append(torch.einsum('bchw,bchwk->bkhw', self.fmap1, feats))
        return torch.cat(per_x, dim=1) * self.scale
