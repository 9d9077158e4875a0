"""Mask2Former head for semantic segmentation (Cheng et al., "Masked-attention Mask Transformer for
Universal Image Segmentation", CVPR 2022).

Pipeline (published sizes in brackets):

* pixel decoder: the three coarsest backbone levels (strides 8, 16, 32) are projected to
  ``embed_dims`` [256] (1x1 conv + GroupNorm), refined jointly by ``pixel_decoder_layers`` [6]
  multi-scale deformable attention encoder layers (sine positional encoding + level embeddings,
  FFN [1024]), and the remaining finer level(s) are fused FPN-style (1x1 lateral + upsampled
  coarser map, 3x3 conv) into the stride-4 map, which a 1x1 conv turns into the mask features.
* transformer decoder: ``num_queries`` [100] learned queries go through ``decoder_layers`` [9]
  layers cycling over the 1/32, 1/16, 1/8 encoder outputs; each layer is masked cross-attention
  (a query only sees pixels where its previous mask prediction is > 0.5), self-attention, FFN
  [2048], all post-norm. Class logits (``K + 1`` with "no object") and mask logits (query
  embedding . mask features) are predicted after the query init and after every layer.
* training: per prediction, Hungarian matching with cost ``2 * CE_class + 5 * BCE + 5 * dice`` on
  12544 random points, then class cross-entropy (no-object weight 0.1) and BCE + dice on 12544
  importance-sampled points; all predictions are supervised (auxiliary losses).
* inference: ``einsum(softmax(class)[..., :K], sigmoid(mask))``.

Module and parameter names follow the official (detectron2) implementation, so
:func:`convert_official_state_dict` only renames the pixel decoder's encoder and FPN convs.
"""
from __future__ import annotations

import math
import re
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from ...registry import MODELS
from ..layers.ms_deform_attn import MultiScaleDeformableAttention, flatten_levels
from .heads import resize

__all__ = ['Mask2FormerHead', 'MSDeformAttnPixelDecoder', 'MaskedTransformerDecoder',
           'batch_dice_cost', 'batch_sigmoid_ce_cost', 'convert_official_state_dict',
           'dice_loss', 'hungarian_match', 'masked_attention_mask', 'point_sample',
           'semantic_inference', 'semantic_targets', 'sigmoid_ce_loss', 'sine_position_encoding',
           'uncertain_point_coords']


# -- pure functions ------------------------------------------------------------------------------
def sine_position_encoding(batch: int, height: int, width: int, num_feats: int = 128,
                           temperature: float = 10000.0, device: torch.device | None = None
                           ) -> Tensor:
    """DETR's normalised sine encoding (no padding mask), as Mask2Former's PositionEmbeddingSine.

    Positions are ``1..H`` / ``1..W`` divided by ``H`` / ``W`` (+1e-6) times ``2 pi``.

    Returns:
        ``(batch, 2 * num_feats, height, width)``: the ``y`` half first, then ``x``; within each,
        sin / cos interleaved.
    """
    eps, scale = 1e-6, 2 * math.pi
    y = torch.arange(1, height + 1, dtype=torch.float32, device=device) / (height + eps) * scale
    x = torch.arange(1, width + 1, dtype=torch.float32, device=device) / (width + eps) * scale
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=device)
    dim_t = temperature ** (2 * (dim_t // 2) / num_feats)

    def embed(v: Tensor) -> Tensor:  # (N,) -> (N, num_feats)
        p = v[:, None] / dim_t
        return torch.stack((p[:, 0::2].sin(), p[:, 1::2].cos()), dim=2).flatten(1)

    pos_y = embed(y)[:, None, :].expand(height, width, num_feats)
    pos_x = embed(x)[None, :, :].expand(height, width, num_feats)
    pos = torch.cat((pos_y, pos_x), dim=2).permute(2, 0, 1)
    return pos[None].expand(batch, -1, -1, -1)


def point_sample(x: Tensor, coords: Tensor) -> Tensor:
    """Bilinear samples of maps at normalised points (detectron2's ``point_sample``).

    Args:
        x: ``(N, C, H, W)``.
        coords: ``(N, P, 2)`` ``(x, y)`` in ``[0, 1]`` (pixel-edge convention, zero padding).

    Returns:
        ``(N, C, P)``.
    """
    grid = 2.0 * coords[:, :, None, :] - 1.0
    return F.grid_sample(x, grid, mode='bilinear', padding_mode='zeros',
                         align_corners=False)[..., 0]


def batch_sigmoid_ce_cost(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean binary cross-entropy of every prediction against every target.

    Args:
        logits: ``(N, P)`` mask logits at ``P`` points.
        targets: ``(T, P)`` binary targets at the same points.

    Returns:
        ``(N, T)``.
    """
    pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction='none')
    neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction='none')
    return (pos @ targets.T + neg @ (1 - targets).T) / logits.shape[1]


def batch_dice_cost(logits: Tensor, targets: Tensor) -> Tensor:
    """``1 - (2 |p t| + 1) / (|p| + |t| + 1)`` for every (prediction, target) pair; ``(N, T)``."""
    p = logits.sigmoid()
    numerator = 2 * p @ targets.T
    denominator = p.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


def sigmoid_ce_loss(logits: Tensor, targets: Tensor, num_masks: float) -> Tensor:
    """Per-mask mean BCE over points, summed over masks, divided by ``num_masks``; ``(N, P)``."""
    return F.binary_cross_entropy_with_logits(logits, targets, reduction='none').mean(1).sum() \
        / num_masks


def dice_loss(logits: Tensor, targets: Tensor, num_masks: float) -> Tensor:
    """Dice loss ``1 - (2 |p t| + 1) / (|p| + |t| + 1)`` summed over masks / ``num_masks``."""
    p = logits.sigmoid()
    numerator = 2 * (p * targets).sum(-1)
    denominator = p.sum(-1) + targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks


def uncertain_point_coords(logits: Tensor, num_points: int, oversample_ratio: float = 3.0,
                           importance_sample_ratio: float = 0.75) -> Tensor:
    """PointRend importance sampling, uncertainty ``-|logit|`` (Mask2Former's training points).

    ``num_points * oversample_ratio`` uniform candidates per mask; the
    ``importance_sample_ratio * num_points`` most uncertain are kept and the rest are fresh
    uniform points.

    Args:
        logits: ``(N, 1, H, W)`` mask logits.

    Returns:
        ``(N, num_points, 2)`` normalised ``(x, y)``.
    """
    n = logits.shape[0]
    num_sampled = int(num_points * oversample_ratio)
    candidates = torch.rand(n, num_sampled, 2, device=logits.device)
    uncertainty = -point_sample(logits, candidates)[:, 0].abs()  # (N, num_sampled)
    num_uncertain = int(importance_sample_ratio * num_points)
    idx = uncertainty.topk(num_uncertain, dim=1).indices
    picked = torch.gather(candidates, 1, idx[..., None].expand(-1, -1, 2))
    rest = torch.rand(n, num_points - num_uncertain, 2, device=logits.device)
    return torch.cat([picked, rest], dim=1)


@torch.no_grad()
def hungarian_match(class_logits: Tensor, mask_logits: Tensor, target_classes: Tensor,
                    target_masks: Tensor, num_points: int = 12544, class_cost: float = 2.0,
                    mask_cost: float = 5.0, dice_cost: float = 5.0) -> tuple[Tensor, Tensor]:
    """Mask2Former's matcher for one image.

    Cost ``class_cost * (-p_class) + mask_cost * BCE + dice_cost * dice`` with BCE and dice on
    ``num_points`` uniform random points shared by all masks.

    Args:
        class_logits: ``(Q, K + 1)``.
        mask_logits: ``(Q, h, w)``.
        target_classes: ``(T,)`` long.
        target_masks: ``(T, H, W)`` binary (any resolution: points are normalised).

    Returns:
        ``(query_idx, target_idx)``, each ``(min(Q, T),)`` long, sorted by query.
    """
    if target_classes.numel() == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty.clone()
    prob = class_logits.float().softmax(-1)
    cost_class = -prob[:, target_classes]
    coords = torch.rand(1, num_points, 2, device=mask_logits.device)
    out = point_sample(mask_logits[:, None].float(), coords.expand(mask_logits.shape[0], -1, -1))
    tgt = point_sample(target_masks[:, None].float(), coords.expand(target_masks.shape[0], -1, -1))
    out, tgt = out[:, 0], tgt[:, 0]
    cost = (mask_cost * batch_sigmoid_ce_cost(out, tgt) + class_cost * cost_class
            + dice_cost * batch_dice_cost(out, tgt))
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    return torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)


def semantic_targets(labels: Tensor, ignore_index: int = 255) -> list[tuple[Tensor, Tensor]]:
    """One binary mask per class present in each label map (Mask2Former's semantic mapper).

    Ignored pixels belong to no mask (they are negatives of every mask, as in the official
    dataset mapper, which also pads with the ignore label).

    Args:
        labels: ``(B, H, W)`` integer labels.

    Returns:
        per image ``(classes (T,) long, masks (T, H, W) float)``.
    """
    out = []
    for lab in labels:
        classes = lab.unique()
        classes = classes[classes != ignore_index]
        out.append((classes.long(), (lab[None] == classes[:, None, None]).float()))
    return out


def masked_attention_mask(mask_logits: Tensor, size: Sequence[int], num_heads: int) -> Tensor:
    """Boolean attention mask (True = blocked) from the previous mask prediction.

    The logits are resized bilinearly to the attended level, a pixel is blocked for a query where
    ``sigmoid < 0.5``; queries whose whole row would be blocked see everything instead (else the
    softmax would be undefined).

    Args:
        mask_logits: ``(B, Q, h, w)``.
        size: ``(H_l, W_l)`` of the attended level.

    Returns:
        ``(B * num_heads, Q, H_l * W_l)`` bool, batch-major as ``nn.MultiheadAttention`` expects.
    """
    b, q = mask_logits.shape[:2]
    m = F.interpolate(mask_logits, size=tuple(size), mode='bilinear', align_corners=False)
    blocked = (m.sigmoid().flatten(2) < 0.5).detach()
    blocked = blocked & ~blocked.all(-1, keepdim=True)
    return blocked[:, None].expand(b, num_heads, q, blocked.shape[-1]).flatten(0, 1)


def semantic_inference(class_logits: Tensor, mask_logits: Tensor) -> Tensor:
    """Per-class scores ``sum_q softmax(class_q)[k] * sigmoid(mask_q)``.

    Args:
        class_logits: ``(B, Q, K + 1)``.
        mask_logits: ``(B, Q, H, W)``.

    Returns:
        ``(B, K, H, W)`` (not normalised).
    """
    return torch.einsum('bqk,bqhw->bkhw', class_logits.softmax(-1)[..., :-1],
                        mask_logits.sigmoid())


# -- pixel decoder -------------------------------------------------------------------------------
def _c2_xavier_fill(conv: nn.Conv2d) -> None:
    # detectron2's c2_xavier_fill (Caffe2's XavierFill): kaiming uniform with a=1, zero bias.
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class MSDeformAttnEncoderLayer(nn.Module):
    """Post-norm deformable self-attention + ReLU FFN (dropout 0, as Mask2Former's configs)."""

    def __init__(self, embed_dims: int, num_heads: int, num_levels: int, num_points: int,
                 ffn_dims: int) -> None:
        super().__init__()
        self.self_attn = MultiScaleDeformableAttention(embed_dims, num_heads, num_levels,
                                                       num_points)
        self.norm1 = nn.LayerNorm(embed_dims)
        self.linear1 = nn.Linear(embed_dims, ffn_dims)
        self.linear2 = nn.Linear(ffn_dims, embed_dims)
        self.norm2 = nn.LayerNorm(embed_dims)

    def forward(self, x: Tensor, pos: Tensor, reference_points: Tensor,
                spatial_shapes: Tensor) -> Tensor:
        """``x``, ``pos`` ``(B, S, C)``; ``reference_points`` ``(B, S, L, 2)`` -> ``(B, S, C)``."""
        x = self.norm1(x + self.self_attn(x + pos, reference_points, x, spatial_shapes))
        return self.norm2(x + self.linear2(F.relu(self.linear1(x))))


def encoder_reference_points(spatial_shapes: Tensor, num_levels: int) -> Tensor:
    """Pixel centres ``((j + 0.5) / W_l, (i + 0.5) / H_l)`` of every token, repeated per level.

    Returns:
        ``(S, num_levels, 2)``.
    """
    refs = []
    for h, w in spatial_shapes.tolist():
        ys = (torch.arange(h, dtype=torch.float32, device=spatial_shapes.device) + 0.5) / h
        xs = (torch.arange(w, dtype=torch.float32, device=spatial_shapes.device) + 0.5) / w
        gy, gx = torch.meshgrid(ys, xs, indexing='ij')
        refs.append(torch.stack([gx.reshape(-1), gy.reshape(-1)], -1))
    return torch.cat(refs)[:, None, :].expand(-1, num_levels, 2)


class MSDeformAttnPixelDecoder(nn.Module):
    """Mask2Former's pixel decoder (``MSDeformAttnPixelDecoder``).

    Args:
        in_channels: channels of the backbone levels, finest first, strides doubling (e.g. strides
            4, 8, 16, 32). The last ``num_transformer_levels`` go through the deformable encoder;
            the earlier ones are FPN-fused on the way down to the finest level.
        embed_dims: ``conv_dim`` = ``mask_dim``.
        num_heads, num_points, ffn_dims, num_layers: the deformable encoder's.
        num_groups: GroupNorm groups.

    ``forward(feats)`` -> mask features ``(B, C, H_0, W_0)`` and the encoder outputs, coarsest
    first (``[(B, C, H/32, W/32), (B, C, H/16, W/16), (B, C, H/8, W/8)]``).
    """

    def __init__(self, in_channels: Sequence[int], embed_dims: int = 256, num_heads: int = 8,
                 num_points: int = 4, ffn_dims: int = 1024, num_layers: int = 6,
                 num_transformer_levels: int = 3, num_groups: int = 32) -> None:
        super().__init__()
        if len(in_channels) < num_transformer_levels:
            raise ValueError(f'MSDeformAttnPixelDecoder: {len(in_channels)} input levels, needs '
                             f'at least num_transformer_levels={num_transformer_levels}')
        self.in_channels = list(in_channels)
        self.num_levels = num_transformer_levels
        self.num_fpn_levels = len(in_channels) - num_transformer_levels
        # Coarsest first, as the official module.
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, embed_dims, 1), nn.GroupNorm(num_groups, embed_dims))
            for c in self.in_channels[self.num_fpn_levels:][::-1])
        self.level_embed = nn.Parameter(torch.empty(num_transformer_levels, embed_dims))
        self.layers = nn.ModuleList(
            MSDeformAttnEncoderLayer(embed_dims, num_heads, num_transformer_levels, num_points,
                                     ffn_dims) for _ in range(num_layers))
        # Top-down order: index 0 is the coarsest FPN level.
        fpn_in = self.in_channels[:self.num_fpn_levels][::-1]
        self.lateral_convs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, embed_dims, 1, bias=False),
                          nn.GroupNorm(num_groups, embed_dims)) for c in fpn_in)
        self.output_convs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(embed_dims, embed_dims, 3, padding=1, bias=False),
                          nn.GroupNorm(num_groups, embed_dims), nn.ReLU()) for _ in fpn_in)
        self.mask_features = nn.Conv2d(embed_dims, embed_dims, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The official initialisation (xavier projections / encoder, normal level embedding)."""
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight)
            nn.init.zeros_(proj[0].bias)
        for p in self.layers.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for layer in self.layers:
            layer.self_attn.reset_parameters()
        nn.init.normal_(self.level_embed)
        for conv in [self.mask_features, *(s[0] for s in self.lateral_convs),
                     *(s[0] for s in self.output_convs)]:
            _c2_xavier_fill(conv)

    def forward(self, feats: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
        if len(feats) != len(self.in_channels):
            raise ValueError(f'MSDeformAttnPixelDecoder: expected {len(self.in_channels)} levels, '
                             f'got {len(feats)}')
        for i, (x, c) in enumerate(zip(feats, self.in_channels)):
            if x.dim() != 4 or x.shape[1] != c:
                raise ValueError(f'MSDeformAttnPixelDecoder: level {i} must be (B, {c}, H, W), '
                                 f'got {tuple(x.shape)}')
        coarse_first = list(feats[self.num_fpn_levels:])[::-1]
        srcs = [proj(x) for proj, x in zip(self.input_proj, coarse_first)]
        b = srcs[0].shape[0]
        tokens, shapes = flatten_levels(srcs)
        pos = torch.cat([
            sine_position_encoding(b, h, w, tokens.shape[-1] // 2, device=tokens.device)
            .flatten(2).transpose(1, 2).to(tokens.dtype) + self.level_embed[lvl]
            for lvl, (h, w) in enumerate(shapes.tolist())], dim=1)
        ref = encoder_reference_points(shapes, self.num_levels)[None].expand(b, -1, -1, -1)
        for layer in self.layers:
            tokens = layer(tokens, pos, ref, shapes)
        outs = [t.transpose(1, 2).reshape(b, -1, h, w) for t, (h, w) in
                zip(tokens.split(shapes.prod(1).tolist(), dim=1), shapes.tolist())]
        fpn_feats = list(feats[:self.num_fpn_levels])[::-1]
        for lateral, output, x in zip(self.lateral_convs, self.output_convs, fpn_feats):
            cur = lateral(x)
            outs.append(output(cur + F.interpolate(outs[-1], size=cur.shape[-2:],
                                                   mode='bilinear', align_corners=False)))
        return self.mask_features(outs[-1]), outs[:self.num_levels]


# -- transformer decoder -------------------------------------------------------------------------
class SelfAttentionLayer(nn.Module):
    """Post-norm self-attention among the queries (positional embedding on q and k)."""

    def __init__(self, embed_dims: int, num_heads: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(embed_dims, num_heads, batch_first=True)
        self.norm = nn.LayerNorm(embed_dims)

    def forward(self, x: Tensor, query_pos: Tensor) -> Tensor:
        q = x + query_pos
        return self.norm(x + self.self_attn(q, q, x, need_weights=False)[0])


class CrossAttentionLayer(nn.Module):
    """Post-norm (masked) cross-attention from the queries to one level of pixel features."""

    def __init__(self, embed_dims: int, num_heads: int) -> None:
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(embed_dims, num_heads, batch_first=True)
        self.norm = nn.LayerNorm(embed_dims)

    def forward(self, x: Tensor, memory: Tensor, attn_mask: Tensor | None, pos: Tensor,
                query_pos: Tensor) -> Tensor:
        out = self.multihead_attn(x + query_pos, memory + pos, memory, attn_mask=attn_mask,
                                  need_weights=False)[0]
        return self.norm(x + out)


class FFNLayer(nn.Module):
    """Post-norm ReLU feed-forward block."""

    def __init__(self, embed_dims: int, ffn_dims: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(embed_dims, ffn_dims)
        self.linear2 = nn.Linear(ffn_dims, embed_dims)
        self.norm = nn.LayerNorm(embed_dims)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x + self.linear2(F.relu(self.linear1(x))))


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them (the mask embedding)."""

    def __init__(self, in_dims: int, hidden_dims: int, out_dims: int, num_layers: int) -> None:
        super().__init__()
        dims = [in_dims] + [hidden_dims] * (num_layers - 1) + [out_dims]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


class MaskedTransformerDecoder(nn.Module):
    """Mask2Former's ``MultiScaleMaskedTransformerDecoder`` (pixel features already at width C).

    ``forward(multi_scale (coarsest first, each (B, C, H_l, W_l)), mask_features (B, C, H, W))``
    -> list of ``1 + num_layers`` predictions ``(class_logits (B, Q, K + 1), mask_logits
    (B, Q, H, W))``.
    """

    def __init__(self, num_classes: int, embed_dims: int = 256, num_queries: int = 100,
                 num_heads: int = 8, ffn_dims: int = 2048, num_layers: int = 9,
                 num_levels: int = 3) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.num_levels = num_levels
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(embed_dims, num_heads) for _ in range(num_layers))
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(embed_dims, num_heads) for _ in range(num_layers))
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(embed_dims, ffn_dims) for _ in range(num_layers))
        for layers in (self.transformer_self_attention_layers,
                       self.transformer_cross_attention_layers, self.transformer_ffn_layers):
            for p in layers.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
        self.decoder_norm = nn.LayerNorm(embed_dims)
        self.query_feat = nn.Embedding(num_queries, embed_dims)
        self.query_embed = nn.Embedding(num_queries, embed_dims)
        self.level_embed = nn.Embedding(num_levels, embed_dims)
        self.class_embed = nn.Linear(embed_dims, num_classes + 1)
        self.mask_embed = MLP(embed_dims, embed_dims, embed_dims, 3)

    def predict(self, x: Tensor, mask_features: Tensor) -> tuple[Tensor, Tensor]:
        """Queries ``(B, Q, C)`` -> class logits ``(B, Q, K + 1)``, mask logits ``(B, Q, H, W)``."""
        x = self.decoder_norm(x)
        masks = torch.einsum('bqc,bchw->bqhw', self.mask_embed(x), mask_features)
        return self.class_embed(x), masks

    def forward(self, multi_scale: Sequence[Tensor],
                mask_features: Tensor) -> list[tuple[Tensor, Tensor]]:
        if len(multi_scale) != self.num_levels:
            raise ValueError(f'MaskedTransformerDecoder: expected {self.num_levels} levels, got '
                             f'{len(multi_scale)}')
        b, c = mask_features.shape[:2]
        sizes = [tuple(x.shape[-2:]) for x in multi_scale]
        memory = [x.flatten(2).transpose(1, 2) + self.level_embed.weight[i]
                  for i, x in enumerate(multi_scale)]
        pos = [sine_position_encoding(b, h, w, c // 2, device=mask_features.device)
               .flatten(2).transpose(1, 2).to(mask_features.dtype) for h, w in sizes]
        query_pos = self.query_embed.weight[None].expand(b, -1, -1)
        x = self.query_feat.weight[None].expand(b, -1, -1)
        outputs = [self.predict(x, mask_features)]
        for i, (cross, self_attn, ffn) in enumerate(zip(
                self.transformer_cross_attention_layers, self.transformer_self_attention_layers,
                self.transformer_ffn_layers)):
            lvl = i % self.num_levels
            attn_mask = masked_attention_mask(outputs[-1][1], sizes[lvl], self.num_heads)
            x = cross(x, memory[lvl], attn_mask, pos[lvl], query_pos)
            x = self_attn(x, query_pos)
            x = ffn(x)
            outputs.append(self.predict(x, mask_features))
        return outputs


# -- head ----------------------------------------------------------------------------------------
@MODELS.register_module()
class Mask2FormerHead(nn.Module):
    """Mask2Former semantic segmentation head for :class:`EncoderDecoder`.

    Args:
        in_channels: channels of the backbone levels (strides 4, 8, 16, 32 for ResNet / Swin).
        num_classes: ``K``.
        num_queries, embed_dims, num_heads: 100, 256, 8 as published.
        decoder_layers, decoder_ffn_dims: transformer decoder depth (9) and FFN width (2048).
        pixel_decoder_layers, pixel_decoder_ffn_dims, num_points_attn: deformable encoder depth
            (6), FFN width (1024) and sampling points (4).
        num_groups: GroupNorm groups in the pixel decoder.
        train_num_points, oversample_ratio, importance_sample_ratio: point sampling (12544, 3,
            0.75).
        class_weight, mask_weight, dice_weight: loss and matching-cost weights (2, 5, 5).
        no_object_weight: class-CE weight of the "no object" class (0.1).
        align_corners, ignore_index: as the other heads.

    ``forward(feats)`` -> per-class probabilities ``(B, K, H/4, W/4)`` (the semantic scores
    normalised to sum to 1 over classes, hence ``returns_probabilities``); ``loss(feats, labels)``
    -> ``{'loss_cls', 'loss_mask', 'loss_dice', 'd<i>.loss_*' (auxiliary), 'acc_seg'}``.
    """

    returns_probabilities = True

    def __init__(self, in_channels: Sequence[int], num_classes: int, num_queries: int = 100,
                 embed_dims: int = 256, num_heads: int = 8, decoder_layers: int = 9,
                 decoder_ffn_dims: int = 2048, pixel_decoder_layers: int = 6,
                 pixel_decoder_ffn_dims: int = 1024, num_points_attn: int = 4,
                 num_groups: int = 32, train_num_points: int = 12544,
                 oversample_ratio: float = 3.0, importance_sample_ratio: float = 0.75,
                 class_weight: float = 2.0, mask_weight: float = 5.0, dice_weight: float = 5.0,
                 no_object_weight: float = 0.1, align_corners: bool = False,
                 ignore_index: int = 255) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f'Mask2FormerHead: num_classes must be >= 1, got {num_classes}')
        self.in_channels = list(in_channels)
        self.num_classes = num_classes
        self.align_corners = align_corners
        self.ignore_index = ignore_index
        self.train_num_points = train_num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.class_weight = class_weight
        self.mask_weight = mask_weight
        self.dice_weight = dice_weight
        self.pixel_decoder = MSDeformAttnPixelDecoder(
            in_channels, embed_dims, num_heads, num_points_attn, pixel_decoder_ffn_dims,
            pixel_decoder_layers, num_groups=num_groups)
        self.predictor = MaskedTransformerDecoder(num_classes, embed_dims, num_queries, num_heads,
                                                  decoder_ffn_dims, decoder_layers)
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = no_object_weight
        self.register_buffer('empty_weight', empty_weight, persistent=False)

    def predictions(self, feats: Sequence[Tensor]) -> list[tuple[Tensor, Tensor]]:
        """All ``1 + decoder_layers`` predictions.

        Returns:
            list of ``(class_logits (B, Q, K + 1), mask_logits (B, Q, H/4, W/4))``.
        """
        mask_features, multi_scale = self.pixel_decoder(feats)
        return self.predictor(multi_scale, mask_features)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        class_logits, mask_logits = self.predictions(feats)[-1]
        scores = semantic_inference(class_logits, mask_logits)
        return scores / scores.sum(1, keepdim=True).clamp_min(1e-12)

    def _single_loss(self, class_logits: Tensor, mask_logits: Tensor,
                     targets: list[tuple[Tensor, Tensor]], num_masks: float) -> dict[str, Tensor]:
        matches = [hungarian_match(cl, ml, tc, tm, self.train_num_points, self.class_weight,
                                   self.mask_weight, self.dice_weight)
                   for cl, ml, (tc, tm) in zip(class_logits, mask_logits, targets)]
        target_classes = torch.full(class_logits.shape[:2], self.num_classes, dtype=torch.long,
                                    device=class_logits.device)
        src_masks, tgt_masks = [], []
        for b, ((q_idx, t_idx), (tc, tm)) in enumerate(zip(matches, targets)):
            target_classes[b, q_idx] = tc[t_idx]
            src_masks.append(mask_logits[b, q_idx])
            tgt_masks.append(tm[t_idx])
        loss_cls = F.cross_entropy(class_logits.transpose(1, 2), target_classes,
                                   self.empty_weight.to(class_logits.dtype))
        src = torch.cat(src_masks)[:, None]
        if src.shape[0] == 0:  # no labelled pixel in the batch: mask losses are zero
            zero = mask_logits.sum() * 0
            return {'loss_cls': self.class_weight * loss_cls, 'loss_mask': zero,
                    'loss_dice': zero}
        tgt = torch.cat(tgt_masks)[:, None]
        with torch.no_grad():
            coords = uncertain_point_coords(src, self.train_num_points, self.oversample_ratio,
                                            self.importance_sample_ratio)
            point_labels = point_sample(tgt, coords)[:, 0]
        point_logits = point_sample(src, coords)[:, 0]
        return {'loss_cls': self.class_weight * loss_cls,
                'loss_mask': self.mask_weight * sigmoid_ce_loss(point_logits, point_labels,
                                                                num_masks),
                'loss_dice': self.dice_weight * dice_loss(point_logits, point_labels, num_masks)}

    def loss(self, feats: Sequence[Tensor], labels: Tensor) -> dict[str, Tensor]:
        """Losses of the final and all auxiliary predictions.

        Args:
            feats: the backbone's feature tuple.
            labels: ``(B, H, W)`` long label maps at input resolution (``ignore_index`` allowed).
        """
        if labels.dim() != 3:
            raise ValueError(f'Mask2FormerHead.loss: labels must be (B, H, W), got '
                             f'{tuple(labels.shape)}')
        preds = self.predictions(feats)
        targets = semantic_targets(labels, self.ignore_index)
        num_masks = max(float(sum(len(tc) for tc, _ in targets)), 1.0)
        losses = self._single_loss(*preds[-1], targets, num_masks)
        for i, (cl, ml) in enumerate(preds[:-1]):
            for k, v in self._single_loss(cl, ml, targets, num_masks).items():
                losses[f'd{i}.{k}'] = v
        with torch.no_grad():
            scores = resize(semantic_inference(*preds[-1]), labels.shape[-2:], self.align_corners)
            valid = labels != self.ignore_index
            correct = (scores.argmax(1) == labels) & valid
            losses['acc_seg'] = 100.0 * correct.sum() / valid.sum().clamp(min=1)
        return losses


# -- official checkpoints ------------------------------------------------------------------------
def convert_official_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Map an official (detectron2) Mask2Former state dict to :class:`Mask2FormerHead` names.

    Only ``sem_seg_head.*`` keys are taken (the backbone is converted by the backbone's own
    mapping); ``criterion.empty_weight`` and other buffers are dropped. Renames:
    ``pixel_decoder.transformer.level_embed`` -> ``pixel_decoder.level_embed``,
    ``pixel_decoder.transformer.encoder.layers.i`` -> ``pixel_decoder.layers.i``,
    ``pixel_decoder.adapter_k`` / ``layer_k`` (``.weight``, ``.norm.*``) ->
    ``pixel_decoder.lateral_convs.{n-k}`` / ``output_convs.{n-k}`` (``.0.weight``, ``.1.*``;
    top-down order, ``n`` = number of adapters); ``predictor.*`` is unchanged.
    """
    prefix = 'sem_seg_head.'
    head = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not head:
        raise ValueError('convert_official_state_dict: no sem_seg_head.* keys (is this a '
                         'Mask2Former checkpoint?)')
    adapters = {int(m.group(1)) for k in head
                if (m := re.match(r'pixel_decoder\.adapter_(\d+)\.', k))}
    n = len(adapters)
    out = {}
    for key, value in head.items():
        new = key
        new = new.replace('pixel_decoder.transformer.encoder.layers.', 'pixel_decoder.layers.')
        new = new.replace('pixel_decoder.transformer.level_embed', 'pixel_decoder.level_embed')
        m = re.match(r'pixel_decoder\.(adapter|layer)_(\d+)\.(norm\.)?(weight|bias)$', key)
        if m:
            group = 'lateral_convs' if m.group(1) == 'adapter' else 'output_convs'
            sub = 1 if m.group(3) else 0
            new = f'pixel_decoder.{group}.{n - int(m.group(2))}.{sub}.{m.group(4)}'
        elif not (new.startswith('pixel_decoder.') or new.startswith('predictor.')):
            continue
        out[new] = value
    return out
