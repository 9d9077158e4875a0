"""MonoDETR's depth predictor and depth-aware transformer (Zhang et al., ICCV 2023).

Sub-module names follow the official code (``lib/models/monodetr``) so its checkpoints map by
prefix (see :func:`perception.models.mono3d.monodetr.convert_official_state_dict`). Layouts are
batch-first: tokens ``(B, N, C)``. Image padding is not masked (the official model passes all-False
masks: KITTI images are resized to one size), so every feature position is valid.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers.ms_deform_attn import MultiScaleDeformableAttention
from .coding import inverse_sigmoid, lid_bin_values


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them (DETR's box MLP). ``(..., in)`` ->
    ``(..., out)``."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def sine_position_embedding(batch: int, height: int, width: int, num_feats: int = 128,
                            temperature: float = 10000.0, device: torch.device | None = None
                            ) -> Tensor:
    """DETR's normalised sine embedding of an unpadded ``height x width`` map.

    Row / column indices ``1..H`` / ``1..W`` are scaled to ``(0, 2 pi]`` (divided by the last index
    plus 1e-6); channels are ``[y-features, x-features]``, each ``num_feats`` interleaving sin / cos
    of ``pos / temperature^(2 floor(k / 2) / num_feats)``.

    Returns:
        ``(batch, 2 num_feats, height, width)``.
    """
    eps, scale = 1e-6, 2 * math.pi
    y = torch.arange(1, height + 1, dtype=torch.float32, device=device)
    x = torch.arange(1, width + 1, dtype=torch.float32, device=device)
    y = y / (height + eps) * scale
    x = x / (width + eps) * scale
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode='floor') / num_feats)

    def embed(pos: Tensor) -> Tensor:  # (n,) -> (n, num_feats), sin/cos interleaved
        pos = pos[:, None] / dim_t
        return torch.stack([pos[:, 0::2].sin(), pos[:, 1::2].cos()], dim=2).flatten(1)

    pos_y = embed(y)[:, None, :].expand(height, width, num_feats)
    pos_x = embed(x)[None, :, :].expand(height, width, num_feats)
    pos = torch.cat([pos_y, pos_x], dim=-1).permute(2, 0, 1)
    return pos.unsqueeze(0).expand(batch, -1, -1, -1)


class DepthEncoderLayer(nn.Module):
    """Post-norm transformer encoder layer (self-attention with position added to q and k, then a
    ReLU FFN), the official depth encoder's ``TransformerEncoderLayer``."""

    def __init__(self, d_model: int = 256, num_heads: int = 8, d_ffn: int = 256,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout,
                                               batch_first=True)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, src: Tensor, pos: Tensor) -> Tensor:
        """``src``, ``pos``: ``(B, N, C)`` -> ``(B, N, C)``."""
        q = src + pos
        src = self.norm1(src + self.dropout1(self.self_attn(q, q, src, need_weights=False)[0]))
        ffn = self.linear2(self.dropout(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout2(ffn))


class DepthEncoder(nn.Module):
    def __init__(self, num_layers: int = 1, **kwargs) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DepthEncoderLayer(**kwargs) for _ in range(num_layers))

    def forward(self, src: Tensor, pos: Tensor) -> Tensor:
        for layer in self.layers:
            src = layer(src, pos)
        return src


def _conv_gn(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2),
                         nn.GroupNorm(32, out_ch))


class DepthPredictor(nn.Module):
    """Foreground depth map over LID bins, the depth encoder and depth positional embeddings.

    The 1/8, 1/16 and 1/32 levels are brought to 1/16 (stride-2 conv, 1x1 conv, bilinear upsample
    + 1x1 conv) and averaged; two 3x3 conv-GN-ReLU blocks and a 1x1 classifier give logits over
    ``num_bins + 1`` bins (the last: background / beyond ``depth_max``). The expected depth
    ``sum_k p_k d_k`` indexes a learned table of ``int(depth_max) + 1`` embeddings (one per metre,
    linearly interpolated) that is added to the depth encoder's output.
    """

    def __init__(self, d_model: int = 256, num_bins: int = 80, depth_min: float = 1e-3,
                 depth_max: float = 60.0, num_encoder_layers: int = 1, num_heads: int = 8,
                 d_ffn: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.num_bins = num_bins
        self.depth_min = depth_min
        self.depth_max = depth_max
        # Persistent, so the official key ``depth_bin_values`` maps one to one.
        self.register_buffer('depth_bin_values', lid_bin_values(depth_min, depth_max, num_bins))
        self.downsample = _conv_gn(d_model, d_model, 3, stride=2)
        self.proj = _conv_gn(d_model, d_model, 1)
        self.upsample = _conv_gn(d_model, d_model, 1)
        self.depth_head = nn.Sequential(
            nn.Conv2d(d_model, d_model, 3, padding=1), nn.GroupNorm(32, d_model), nn.ReLU(),
            nn.Conv2d(d_model, d_model, 3, padding=1), nn.GroupNorm(32, d_model), nn.ReLU())
        self.depth_classifier = nn.Conv2d(d_model, num_bins + 1, 1)
        self.depth_encoder = DepthEncoder(num_encoder_layers, d_model=d_model, num_heads=num_heads,
                                          d_ffn=d_ffn, dropout=dropout)
        self.depth_pos_embed = nn.Embedding(int(depth_max) + 1, d_model)

    def forward(self, feats: list[Tensor], pos_16: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``feats``: the 4 projected levels ``(B, C, H_l, W_l)``; ``pos_16``: ``(B, C, H, W)`` sine
        embedding of the 1/16 level.

        Returns:
            logits ``(B, D + 1, H, W)``, depth embedding ``(B, H*W, C)`` (encoder output plus the
            interpolated depth positional embedding), expected depth ``(B, H, W)`` (all at 1/16).
        """
        src_16 = self.proj(feats[1])
        src_32 = self.upsample(F.interpolate(feats[2], size=src_16.shape[-2:], mode='bilinear'))
        src_8 = self.downsample(feats[0])
        if src_8.shape != src_16.shape:
            raise ValueError(f'DepthPredictor: 1/8 level {tuple(feats[0].shape)} does not halve '
                             f'to the 1/16 level {tuple(feats[1].shape)}; pad images to /32')
        src = self.depth_head((src_8 + src_16 + src_32) / 3)
        logits = self.depth_classifier(src)
        depth = (logits.softmax(dim=1) * self.depth_bin_values.view(1, -1, 1, 1)).sum(dim=1)
        tokens = self.depth_encoder(src.flatten(2).transpose(1, 2),
                                    pos_16.flatten(2).transpose(1, 2))
        tokens = tokens + self.depth_embedding(depth).flatten(1, 2)
        return logits, tokens, depth

    def depth_embedding(self, depth: Tensor) -> Tensor:
        """Linear interpolation of the per-metre table at ``depth`` ``(B, H, W)`` ->
        ``(B, H, W, C)``."""
        depth = depth.clamp(min=0, max=self.depth_max)
        low = depth.floor()
        frac = (depth - low).unsqueeze(-1)
        low = low.long()
        high = (low + 1).clamp(max=self.depth_pos_embed.num_embeddings - 1)
        return self.depth_pos_embed(low) * (1 - frac) + self.depth_pos_embed(high) * frac


class VisualEncoderLayer(nn.Module):
    """Deformable self-attention over all levels then a ReLU FFN (post-norm)."""

    def __init__(self, d_model: int = 256, d_ffn: int = 256, dropout: float = 0.1,
                 num_levels: int = 4, num_heads: int = 8, num_points: int = 4) -> None:
        super().__init__()
        self.self_attn = MultiScaleDeformableAttention(
            embed_dims=d_model, num_heads=num_heads, num_levels=num_levels, num_points=num_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src: Tensor, pos: Tensor, reference_points: Tensor,
                spatial_shapes: Tensor) -> Tensor:
        attn = self.self_attn(src + pos, reference_points, src, spatial_shapes)
        src = self.norm1(src + self.dropout1(attn))
        ffn = self.linear2(self.dropout2(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout3(ffn))


class DepthAwareDecoderLayer(nn.Module):
    """Depth cross-attention -> group-wise self-attention -> deformable visual cross-attention ->
    FFN, each residual + LayerNorm (post-norm), as the official ``DepthAwareDecoderLayer``.

    Self-attention quirk kept from the official code: queries and keys are ``A(x) + B(x)`` with
    ``x = tgt + query_pos`` (two linear maps of the same input), values are ``tgt`` itself (the
    official ``sa_v_proj`` is never applied, so it is not built here), and the result goes through
    ``nn.MultiheadAttention`` with its own in/out projections.
    """

    def __init__(self, d_model: int = 256, d_ffn: int = 256, dropout: float = 0.1,
                 num_levels: int = 4, num_heads: int = 8, num_points: int = 4) -> None:
        super().__init__()
        self.cross_attn = MultiScaleDeformableAttention(
            embed_dims=d_model, num_heads=num_heads, num_levels=num_levels, num_points=num_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.cross_attn_depth = nn.MultiheadAttention(d_model, num_heads, dropout=dropout,
                                                      batch_first=True)
        self.dropout_depth = nn.Dropout(dropout)
        self.norm_depth = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout,
                                               batch_first=True)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)
        self.sa_qcontent_proj = nn.Linear(d_model, d_model)
        self.sa_qpos_proj = nn.Linear(d_model, d_model)
        self.sa_kcontent_proj = nn.Linear(d_model, d_model)
        self.sa_kpos_proj = nn.Linear(d_model, d_model)

    def forward(self, tgt: Tensor, query_pos: Tensor, reference_points: Tensor, memory: Tensor,
                spatial_shapes: Tensor, depth_tokens: Tensor, num_groups: int) -> Tensor:
        """``tgt``, ``query_pos``: ``(B, G*Q, C)``; ``reference_points`` ``(B, G*Q, L, 2|6)``;
        ``memory`` ``(B, S, C)``; ``depth_tokens`` ``(B, N_d, C)``. Queries attend to each other
        only within their group of ``Q``."""
        depth = self.cross_attn_depth(tgt, depth_tokens, depth_tokens, need_weights=False)[0]
        tgt = self.norm_depth(tgt + self.dropout_depth(depth))

        x = tgt + query_pos
        q = self.sa_qcontent_proj(x) + self.sa_qpos_proj(x)
        k = self.sa_kcontent_proj(x) + self.sa_kpos_proj(x)
        b, n, c = tgt.shape
        if n % num_groups:
            raise ValueError(f'{n} queries do not split into {num_groups} groups')

        def grouped(t: Tensor) -> Tensor:  # (B, G*Q, C) -> (B*G, Q, C)
            return t.reshape(b * num_groups, n // num_groups, c)

        attn = self.self_attn(grouped(q), grouped(k), grouped(tgt), need_weights=False)[0]
        tgt = self.norm2(tgt + self.dropout2(attn.reshape(b, n, c)))

        attn = self.cross_attn(tgt + query_pos, reference_points, memory, spatial_shapes)
        tgt = self.norm1(tgt + self.dropout1(attn))
        ffn = self.linear2(self.dropout3(F.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout4(ffn))


def encoder_reference_points(spatial_shapes: Tensor, device: torch.device) -> Tensor:
    """Pixel-centre reference points of every level, normalised: ``(S, 2)`` ``(x, y)``."""
    points = []
    for h, w in spatial_shapes.tolist():
        ys, xs = torch.meshgrid(torch.linspace(0.5, h - 0.5, h, device=device) / h,
                                torch.linspace(0.5, w - 0.5, w, device=device) / w, indexing='ij')
        points.append(torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1))
    return torch.cat(points, dim=0)


class DepthAwareTransformer(nn.Module):
    """Visual encoder (deformable self-attention) and depth-aware decoder with box refinement.

    Args:
        d_model, num_heads, d_ffn, dropout: layer sizes (published: 256, 8, 256, 0.1).
        num_encoder_layers, num_decoder_layers: 3 and 3 published.
        num_levels, enc_points, dec_points: deformable attention sampling (4, 4, 4).
    """

    def __init__(self, d_model: int = 256, num_heads: int = 8, d_ffn: int = 256,
                 dropout: float = 0.1, num_encoder_layers: int = 3, num_decoder_layers: int = 3,
                 num_levels: int = 4, enc_points: int = 4, dec_points: int = 4) -> None:
        super().__init__()
        self.d_model = d_model
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList(
            VisualEncoderLayer(d_model, d_ffn, dropout, num_levels, num_heads, enc_points)
            for _ in range(num_encoder_layers))
        self.decoder = nn.Module()
        self.decoder.layers = nn.ModuleList(
            DepthAwareDecoderLayer(d_model, d_ffn, dropout, num_levels, num_heads, dec_points)
            for _ in range(num_decoder_layers))
        self.level_embed = nn.Parameter(torch.empty(num_levels, d_model))
        self.reference_points = nn.Linear(d_model, 2)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # The official order: xavier on every matrix, then the deformable attention's own init.
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MultiScaleDeformableAttention):
                m.reset_parameters()
        nn.init.xavier_uniform_(self.reference_points.weight, gain=1.0)
        nn.init.zeros_(self.reference_points.bias)
        nn.init.normal_(self.level_embed)

    def encode(self, feats: list[Tensor], pos: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Flatten the levels and run the visual encoder.

        Returns:
            memory ``(B, S, C)`` and spatial shapes ``(L, 2)``.
        """
        shapes = torch.tensor([list(f.shape[-2:]) for f in feats], dtype=torch.long,
                              device=feats[0].device)
        src = torch.cat([f.flatten(2).transpose(1, 2) for f in feats], dim=1)
        pos = torch.cat([p.flatten(2).transpose(1, 2) + self.level_embed[i]
                         for i, p in enumerate(pos)], dim=1)
        ref = encoder_reference_points(shapes, src.device)
        ref = ref[None, :, None, :].expand(src.shape[0], -1, len(feats), -1)
        for layer in self.encoder.layers:
            src = layer(src, pos, ref, shapes)
        return src, shapes

    def decode(self, memory: Tensor, spatial_shapes: Tensor, query_embed: Tensor,
               depth_tokens: Tensor, num_groups: int, bbox_embed: nn.ModuleList,
               dim_embed: nn.ModuleList) -> tuple[Tensor, Tensor, Tensor]:
        """Run the decoder with iterative refinement of the 6-d reference boxes.

        Args:
            query_embed: ``(G*Q, 2C)``: positional half then content half.
            bbox_embed, dim_embed: per-layer heads (owned by the detector).

        Returns:
            hidden states ``(num_layers, B, G*Q, C)``, boxes ``(num_layers, B, G*Q, 6)`` (sigmoid
            ``(x, y, l, r, t, b)``) and sizes ``(num_layers, B, G*Q, 3)`` ``(h, w, l)``.
        """
        b, num_levels = memory.shape[0], spatial_shapes.shape[0]
        query_pos, tgt = torch.split(query_embed, self.d_model, dim=1)
        query_pos = query_pos.unsqueeze(0).expand(b, -1, -1)
        tgt = tgt.unsqueeze(0).expand(b, -1, -1)
        reference = self.reference_points(query_pos).sigmoid()  # (B, N, 2) at the first layer
        hidden, boxes, dims = [], [], []
        for lid, layer in enumerate(self.decoder.layers):
            ref_input = reference[:, :, None].expand(-1, -1, num_levels, -1)
            tgt = layer(tgt, query_pos, ref_input, memory, spatial_shapes, depth_tokens,
                        num_groups)
            delta = bbox_embed[lid](tgt)
            if reference.shape[-1] == 2:  # the first layer refines the centre only
                offset = torch.cat([inverse_sigmoid(reference),
                                    reference.new_zeros(*reference.shape[:-1], 4)], dim=-1)
            else:
                offset = inverse_sigmoid(reference)
            box = (delta + offset).sigmoid()
            hidden.append(tgt)
            boxes.append(box)
            dims.append(dim_embed[lid](tgt))
            reference = box.detach()
        return torch.stack(hidden), torch.stack(boxes), torch.stack(dims)
