"""Pure geometry and target coding of MonoDETR: depth bins, heading bins, 2D boxes, decoding.

Box parameterisation of a query (all normalised by the network input's width / height):
``(x, y, l, r, t, b)``: the projected 3D (gravity) centre ``(x, y)`` and its distances to the left,
right, top and bottom edges of the 2D box, so the 2D box is ``(x - l, y - t, x + r, y + b)``.

3D sizes inside the model follow the official code's order ``(h, w, l)``; camera boxes store
``(l, h, w)`` (see ``docs/conventions.md``).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

NUM_HEADING_BINS = 12


# ----------------------------------------------------------------------------- depth bins
def lid_bin_values(depth_min: float = 1e-3, depth_max: float = 60.0,
                   num_bins: int = 80) -> Tensor:
    """Representative depths of the linear-increasing-discretisation (LID) bins, plus ``depth_max``.

    LID (CaDDN, Reading et al. 2021) makes bin ``i`` (0-based) ``delta * (i + 1)`` wide with
    ``delta = 2 (d_max - d_min) / (D (D + 1))``, so its edges are
    ``d_i = d_min + delta * i (i + 1) / 2``. MonoDETR gives bin ``i`` the value
    ``(i + 0.5)^2 delta / 2 - delta / 8 + d_min``, which simplifies to ``d_i``, the bin's lower
    edge (the depth-map expectation therefore sits about half a bin short). The last entry,
    ``depth_max``, stands for the "beyond range / background" bin.

    Returns:
        ``(num_bins + 1,)`` float32.
    """
    if not 0 <= depth_min < depth_max or num_bins < 1:
        raise ValueError(f'LID bins need 0 <= depth_min < depth_max and num_bins >= 1, got '
                         f'{depth_min}, {depth_max}, {num_bins}')
    delta = 2 * (depth_max - depth_min) / (num_bins * (1 + num_bins))
    index = torch.linspace(0, num_bins - 1, num_bins)
    values = (index + 0.5).pow(2) * delta / 2 - delta / 8 + depth_min
    return torch.cat([values, torch.tensor([depth_max])])


def lid_bin_index(depth: Tensor, depth_min: float = 1e-3, depth_max: float = 60.0,
                  num_bins: int = 80) -> Tensor:
    """Bin index (int64) of each depth under LID; out-of-range / non-finite depths -> ``num_bins``.

    Inverts ``d = d_min + delta * i (i + 1) / 2`` for the continuous index
    ``i = -0.5 + 0.5 sqrt(1 + 8 (d - d_min) / delta)`` and truncates, as the official
    ``DDNLoss.bin_depths(target=True)``. Any shape in, same shape out.
    """
    delta = 2 * (depth_max - depth_min) / (num_bins * (1 + num_bins))
    index = -0.5 + 0.5 * torch.sqrt(1 + 8 * (depth - depth_min) / delta)
    invalid = (index < 0) | (index > num_bins) | ~torch.isfinite(index)
    index = torch.where(invalid, torch.full_like(index, float(num_bins)), index)
    return index.long()


# ----------------------------------------------------------------------------- heading bins
def encode_heading(angle: Tensor, num_bins: int = NUM_HEADING_BINS) -> tuple[Tensor, Tensor]:
    """Angle (rad, any range) -> ``(bin (int64), residual)``; bins centred at ``k * 2 pi / n``.

    The residual lies in ``[-pi / n, pi / n)``: ``angle = bin * 2 pi / n + residual (mod 2 pi)``.
    """
    width = 2 * math.pi / num_bins
    shifted = torch.remainder(torch.remainder(angle, 2 * math.pi) + width / 2, 2 * math.pi)
    bins = torch.div(shifted, width, rounding_mode='floor').long().clamp(max=num_bins - 1)
    residual = shifted - (bins.to(shifted.dtype) * width + width / 2)
    return bins, residual


def decode_heading(heading: Tensor, num_bins: int = NUM_HEADING_BINS) -> Tensor:
    """``(..., 2 n)`` logits of n bins then n residuals -> angle of the best bin, wrapped to
    ``(-pi, pi]`` as the official ``get_heading_angle``."""
    if heading.shape[-1] != 2 * num_bins:
        raise ValueError(f'heading must end in {2 * num_bins} values, got {tuple(heading.shape)}')
    bins = heading[..., :num_bins].argmax(-1, keepdim=True)
    residual = heading[..., num_bins:].gather(-1, bins).squeeze(-1)
    angle = bins.squeeze(-1).to(heading.dtype) * (2 * math.pi / num_bins) + residual
    return torch.where(angle > math.pi, angle - 2 * math.pi, angle)


def ray_angle(u: Tensor, cam2img: Tensor) -> Tensor:
    """Horizontal angle of the viewing ray through pixel column ``u``: ``atan2(u - cu, fu)``.

    ``u``: ``(N,)``; ``cam2img``: ``(3|4, 4)`` of the same image. ``alpha = ry - ray_angle`` (the
    official ``ry2alpha``)."""
    return torch.atan2(u - cam2img[0, 2], cam2img[0, 0])


# ----------------------------------------------------------------------------- 2D boxes
def cxcylrtb_to_xyxy(boxes: Tensor) -> Tensor:
    """``(..., 6)`` ``(x, y, l, r, t, b)`` -> ``(..., 4)`` ``(x1, y1, x2, y2)``."""
    x, y, left, right, top, bottom = boxes.unbind(-1)
    return torch.stack([x - left, y - top, x + right, y + bottom], dim=-1)


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise GIoU (Rezatofighi et al. 2019) of ``(N, 4)`` / ``(M, 4)`` xyxy boxes -> ``(N, M)``.

    Degenerate (inverted) boxes are allowed, as early in training: their area is clamped at 0 only
    through the intersection, as DETR computes it.
    """
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    lt = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = area1[:, None] + area2[None, :] - inter
    iou = inter / union
    lt = torch.min(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.max(boxes1[:, None, 2:], boxes2[None, :, 2:])
    hull = (rb - lt).clamp(min=0).prod(-1)
    return iou - (hull - union) / hull


# ----------------------------------------------------------------------------- depth
def geometric_depth(height_3d: Tensor, box_height_norm: Tensor, image_height: float | Tensor,
                    focal: float | Tensor) -> Tensor:
    """Pinhole depth ``z = H_3d * f / h_2d`` with ``h_2d = box_height_norm * image_height`` pixels,
    clamped to at least 1 px (as the official code) so tiny boxes do not explode."""
    return height_3d / torch.clamp(box_height_norm * image_height, min=1.0) * focal


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """``log(x / (1 - x))`` with ``x`` clamped to ``[eps, 1 - eps]`` (Deformable-DETR's)."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def backproject(uv: Tensor, depth: Tensor, cam2img: Tensor) -> Tensor:
    """Camera point ``(x, y, z)`` with ``z = depth`` that ``cam2img`` projects to pixel ``uv``.

    Exact for any 3x4 projection (KITTI's P2 has a translation column): solves the two linear
    equations ``(P_0 - u P_2) X = 0`` and ``(P_1 - v P_2) X = 0`` for ``x, y``.

    Args:
        uv: ``(N, 2)`` pixels; depth: ``(N,)``; cam2img: ``(3|4, 4)`` (a 3x3 is padded).
    Returns:
        ``(N, 3)``.
    """
    p = cam2img.to(uv.dtype)
    if p.shape == (3, 3):
        p = torch.cat([p, p.new_zeros(3, 1)], dim=1)
    p = p[:3]
    u, v = uv[:, 0:1], uv[:, 1:2]
    row0 = p[0] - u * p[2]  # (N, 4)
    row1 = p[1] - v * p[2]
    a = torch.stack([row0[:, :2], row1[:, :2]], dim=1)  # (N, 2, 2)
    rhs = -torch.stack([row0[:, 2] * depth + row0[:, 3], row1[:, 2] * depth + row1[:, 3]], dim=1)
    xy = torch.linalg.solve(a, rhs.unsqueeze(-1)).squeeze(-1)
    return torch.cat([xy, depth.unsqueeze(-1)], dim=-1)
