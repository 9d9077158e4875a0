"""Multi-scale deformable attention (Deformable-DETR), in pure PyTorch.

Each query attends, per head, to ``num_levels * num_points`` bilinearly sampled positions of a
multi-level feature pyramid, with weights predicted from the query itself (Zhu et al., "Deformable
DETR", ICLR 2021). The sampling matches Deformable-DETR's CUDA kernel: a normalised location
``(x, y)`` in ``[0, 1]`` (0 = left/top edge of the first pixel, 1 = right/bottom edge of the last)
is read at pixel coordinate ``x * W - 0.5`` (pixel centres at integers), and bilinear corners that
fall outside the map contribute zero. That is exactly ``F.grid_sample`` with
``align_corners=False`` and ``padding_mode='zeros'`` on the grid ``2 * location - 1``.

The sub-module names and their initialisation follow Deformable-DETR's ``MSDeformAttn`` so official
checkpoints (Deformable-DETR, Mask2Former, MonoDETR, ...) map one to one.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ['MultiScaleDeformableAttention', 'flatten_levels', 'level_start_index',
           'multi_scale_deformable_attention']


def _check_spatial_shapes(spatial_shapes: torch.Tensor) -> list[tuple[int, int]]:
    if spatial_shapes.ndim != 2 or spatial_shapes.shape[1] != 2:
        raise ValueError('spatial_shapes must be (L, 2) of (H, W), got '
                         f'{tuple(spatial_shapes.shape)}')
    return [(int(h), int(w)) for h, w in spatial_shapes.tolist()]


def level_start_index(spatial_shapes: torch.Tensor) -> torch.Tensor:
    """Offsets of each level in the flattened sequence.

    Args:
        spatial_shapes: ``(L, 2)`` long tensor of ``(H_l, W_l)``.

    Returns:
        ``(L,)`` long tensor ``[0, H_0*W_0, H_0*W_0 + H_1*W_1, ...]`` on the same device.
    """
    _check_spatial_shapes(spatial_shapes)
    sizes = spatial_shapes.prod(1)
    return torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])


def flatten_levels(feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten a feature pyramid into one token sequence, row-major per level, levels in order.

    Args:
        feats: list of ``(B, C, H_l, W_l)`` maps with the same ``B`` and ``C``.

    Returns:
        ``(B, S, C)`` tokens with ``S = sum(H_l * W_l)`` and the ``(L, 2)`` long tensor of
        ``(H_l, W_l)`` (on the features' device).
    """
    if len(feats) == 0:
        raise ValueError('flatten_levels needs at least one feature map')
    b, c = feats[0].shape[:2]
    for i, f in enumerate(feats):
        if f.ndim != 4 or f.shape[0] != b or f.shape[1] != c:
            raise ValueError(f'flatten_levels: level {i} has shape {tuple(f.shape)}, expected '
                             f'({b}, {c}, H, W)')
    shapes = torch.tensor([list(f.shape[2:]) for f in feats], dtype=torch.long,
                          device=feats[0].device)
    tokens = torch.cat([f.flatten(2).transpose(1, 2) for f in feats], dim=1)
    return tokens, shapes


def multi_scale_deformable_attention(value: torch.Tensor, spatial_shapes: torch.Tensor,
                                     sampling_locations: torch.Tensor,
                                     attention_weights: torch.Tensor) -> torch.Tensor:
    """Weighted sum of bilinear samples of a multi-level value map (the MSDeformAttn core op).

    Args:
        value: ``(B, S, M, D)`` per-head values, ``S = sum(H_l * W_l)``, levels flattened
            row-major in order.
        spatial_shapes: ``(L, 2)`` long tensor of ``(H_l, W_l)``.
        sampling_locations: ``(B, Q, M, L, P, 2)`` normalised ``(x, y)``; 0 is the left/top edge of
            the first pixel, 1 the right/bottom edge of the last; values outside ``[0, 1]`` are
            allowed (out-of-map corners read zero).
        attention_weights: ``(B, Q, M, L, P)`` weights (already normalised over ``L * P``).

    Returns:
        ``(B, Q, M * D)``, heads concatenated along the channels.
    """
    shapes = _check_spatial_shapes(spatial_shapes)
    if value.ndim != 4:
        raise ValueError(f'value must be (B, S, M, D), got {tuple(value.shape)}')
    b, s, m, d = value.shape
    num_levels = len(shapes)
    if sum(h * w for h, w in shapes) != s:
        raise ValueError(f'value has {s} tokens but spatial_shapes {shapes} sum to '
                         f'{sum(h * w for h, w in shapes)}')
    if (sampling_locations.ndim != 6 or sampling_locations.shape[0] != b
            or sampling_locations.shape[2] != m or sampling_locations.shape[3] != num_levels
            or sampling_locations.shape[5] != 2):
        raise ValueError(f'sampling_locations must be (B={b}, Q, M={m}, L={num_levels}, P, 2), got '
                         f'{tuple(sampling_locations.shape)}')
    q, p = sampling_locations.shape[1], sampling_locations.shape[4]
    if attention_weights.shape != (b, q, m, num_levels, p):
        raise ValueError(f'attention_weights must be {(b, q, m, num_levels, p)}, got '
                         f'{tuple(attention_weights.shape)}')

    # grid_sample with align_corners=False maps grid -1 / +1 to the outer pixel edges, i.e.
    # pixel coordinate (grid + 1) / 2 * W - 0.5 = loc * W - 0.5, as the CUDA kernel.
    grids = 2 * sampling_locations - 1
    per_level = value.split([h * w for h, w in shapes], dim=1)
    samples = []
    for lvl, (h, w) in enumerate(shapes):
        # (B, H*W, M, D) -> (B*M, D, H, W): heads go into the batch so one call serves them all.
        v = per_level[lvl].permute(0, 2, 3, 1).reshape(b * m, d, h, w)
        # (B, Q, M, P, 2) -> (B*M, Q, P, 2)
        g = grids[:, :, :, lvl].transpose(1, 2).reshape(b * m, q, p, 2)
        samples.append(F.grid_sample(v, g, mode='bilinear', padding_mode='zeros',
                                     align_corners=False))  # (B*M, D, Q, P)
    sampled = torch.stack(samples, dim=-2).flatten(-2)  # (B*M, D, Q, L*P)
    weights = attention_weights.transpose(1, 2).reshape(b * m, 1, q, num_levels * p)
    out = (sampled * weights).sum(-1)  # (B*M, D, Q)
    return out.view(b, m * d, q).transpose(1, 2).contiguous()


class MultiScaleDeformableAttention(nn.Module):
    """Deformable-DETR's ``MSDeformAttn``: projections, offsets/weights prediction and sampling.

    No residual connection and no dropout: the caller adds them.

    Args:
        embed_dims: channels ``C`` of queries and values (divisible by ``num_heads``).
        num_heads: attention heads ``M``.
        num_levels: pyramid levels ``L``.
        num_points: sampling points ``P`` per head and level.
    """

    def __init__(self, embed_dims: int = 256, num_heads: int = 8, num_levels: int = 4,
                 num_points: int = 4) -> None:
        super().__init__()
        if embed_dims % num_heads != 0:
            raise ValueError(f'embed_dims ({embed_dims}) must be divisible by num_heads '
                             f'({num_heads})')
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.num_levels = num_levels
        self.num_points = num_points
        self.sampling_offsets = nn.Linear(embed_dims, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dims, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(embed_dims, embed_dims)
        self.output_proj = nn.Linear(embed_dims, embed_dims)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable-DETR's initialisation: offsets start on rings of ``M`` directions.

        Head ``i`` points along angle ``2 pi i / M`` scaled so its larger component is 1; point
        ``k`` sits ``k + 1`` times that far. Attention weights start uniform.
        """
        nn.init.zeros_(self.sampling_offsets.weight)
        thetas = torch.arange(self.num_heads, dtype=torch.float32) * (2 * math.pi / self.num_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True)[0]
        scale = torch.arange(1, self.num_points + 1, dtype=torch.float32)
        grid = grid[:, None, None, :] * scale[None, None, :, None]
        grid = grid.expand(self.num_heads, self.num_levels, self.num_points, 2)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def sampling_locations(self, query: torch.Tensor, reference_points: torch.Tensor,
                           spatial_shapes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted sampling locations and (softmaxed) attention weights.

        Args:
            query: ``(B, Q, C)``.
            reference_points: ``(B, Q, L, 2 | 4 | 6)`` normalised: ``(x, y)``; ``(cx, cy, w, h)``
                (offsets scaled by ``0.5 * wh / P``); or MonoDETR's ``(x, y, l, r, t, b)``
                (offsets scaled by ``((l + r) / 2, (t + b) / 2) / P``).
            spatial_shapes: ``(L, 2)`` long ``(H_l, W_l)``.

        Returns:
            locations ``(B, Q, M, L, P, 2)`` and weights ``(B, Q, M, L, P)``.
        """
        b, q, _ = query.shape
        m, lv, p = self.num_heads, self.num_levels, self.num_points
        if reference_points.ndim != 4 or reference_points.shape[:3] != (b, q, lv):
            raise ValueError(f'reference_points must be (B={b}, Q={q}, L={lv}, 2|4|6), got '
                             f'{tuple(reference_points.shape)}')
        offsets = self.sampling_offsets(query).view(b, q, m, lv, p, 2)
        weights = self.attention_weights(query).view(b, q, m, lv * p).softmax(-1)
        weights = weights.view(b, q, m, lv, p)
        ref = reference_points[:, :, None, :, None, :]  # (B, Q, 1, L, 1, k)
        k = reference_points.shape[-1]
        if k == 2:
            # Offsets are in pixels of each level: divide by (W_l, H_l).
            normalizer = spatial_shapes.flip(-1).to(offsets.dtype)  # (L, 2) as (W, H)
            locations = ref + offsets / normalizer[None, None, None, :, None, :]
        elif k == 4:
            locations = ref[..., :2] + offsets / p * ref[..., 2:] * 0.5
        elif k == 6:
            half_extent = (ref[..., 2::2] + ref[..., 3::2]) * 0.5  # ((l + r) / 2, (t + b) / 2)
            locations = ref[..., :2] + offsets / p * half_extent
        else:
            raise ValueError(f'reference_points last dim must be 2, 4 or 6, got {k}')
        return locations, weights

    def forward(self, query: torch.Tensor, reference_points: torch.Tensor, value: torch.Tensor,
                spatial_shapes: torch.Tensor,
                value_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Deformable attention of ``query`` over the flattened pyramid ``value``.

        Args:
            query: ``(B, Q, C)`` (positional embedding already added by the caller).
            reference_points: ``(B, Q, L, 2 | 4 | 6)``, see :meth:`sampling_locations`.
            value: ``(B, S, C)`` flattened levels (see :func:`flatten_levels`).
            spatial_shapes: ``(L, 2)`` long ``(H_l, W_l)``.
            value_padding_mask: ``(B, S)`` bool, True where ``value`` is padding (zeroed).

        Returns:
            ``(B, Q, C)``.
        """
        if query.ndim != 3 or query.shape[-1] != self.embed_dims:
            raise ValueError(f'query must be (B, Q, {self.embed_dims}), got {tuple(query.shape)}')
        if (value.ndim != 3 or value.shape[-1] != self.embed_dims
                or value.shape[0] != query.shape[0]):
            raise ValueError(f'value must be (B={query.shape[0]}, S, {self.embed_dims}), got '
                             f'{tuple(value.shape)}')
        if spatial_shapes.shape[0] != self.num_levels:
            raise ValueError(f'expected {self.num_levels} levels, spatial_shapes has '
                             f'{spatial_shapes.shape[0]}')
        b, s, _ = value.shape
        v = self.value_proj(value)
        if value_padding_mask is not None:
            if value_padding_mask.shape != (b, s):
                raise ValueError(f'value_padding_mask must be {(b, s)}, got '
                                 f'{tuple(value_padding_mask.shape)}')
            v = v.masked_fill(value_padding_mask[..., None], 0.0)
        v = v.view(b, s, self.num_heads, self.embed_dims // self.num_heads)
        locations, weights = self.sampling_locations(query, reference_points, spatial_shapes)
        out = multi_scale_deformable_attention(v, spatial_shapes, locations, weights)
        return self.output_proj(out)
