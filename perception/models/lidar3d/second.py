"""SECOND's sparse 3D encoder, the sparse-conv reference backbone for FlatFormer and LION.

The same layer list and module names as mmdetection3d's ``SparseEncoder``
(``mmdet3d/models/middle_encoders/sparse_encoder.py``), which its SECOND, voxel CenterPoint
(``centerpoint_voxel01_second_secfpn``), PV-RCNN and MVX-Net configs use:

* ``conv_input``: submanifold 3x3x3 conv ``in_channels -> base_channels`` + BN + ReLU;
* ``encoder_layers.encoder_layer{i}``: stage ``i``; with ``block_type='conv_module'`` every stage
  but the first opens with a stride-2 3x3x3 :class:`SparseConv3d` (its padding from
  ``encoder_paddings``) and continues with submanifold convs; with ``'basicblock'`` a stage is
  residual :class:`SparseBasicBlock` s closed by the stride-2 conv (all but the last stage);
* ``conv_out``: a ``(3, 1, 1)`` kernel, stride ``(2, 1, 1)`` sparse conv to ``output_channels``.

Every conv is bias-free and followed by ``BatchNorm1d(eps=1e-3, momentum=0.01)`` and ReLU. On
KITTI's 41 x 1600 x 1408 grid the stages run at strides 1, 2, 4, 8 (41 x 1600 x 1408,
21 x 800 x 704, 11 x 400 x 352, 5 x 200 x 176) and ``conv_out`` leaves 2 x 200 x 176 with 128
channels: ``sparse_to_bev`` makes SECOND's 256-channel BEV map.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from ...registry import MODELS
from ..layers.sparse_voxels import SparseVoxels
from ..ops.sparse_conv import SparseConv3d, SparseSequential, SubMConv3d, conv_output_shape

__all__ = ['SparseBasicBlock', 'SparseEncoder', 'convert_official_state_dict']

DEFAULT_NORM = dict(type='BN1d', eps=1e-3, momentum=0.01)
_NORM_TYPES = ('BN1d', 'BN', 'SyncBN', 'naiveSyncBN1d')


def _build_norm(norm_cfg: Mapping, channels: int) -> nn.BatchNorm1d:
    cfg = dict(norm_cfg)
    norm_type = cfg.pop('type', 'BN1d')
    if norm_type not in _NORM_TYPES:
        raise ValueError(f'SparseEncoder norm_cfg type must be one of {_NORM_TYPES} (a batch norm '
                         f'over the voxel rows), got {norm_type!r}')
    cfg.pop('requires_grad', None)
    return nn.BatchNorm1d(channels, **cfg)


def make_sparse_convmodule(in_channels: int, out_channels: int, kernel_size, stride=1,
                           padding=0, conv_type: str = 'SubMConv3d',
                           norm_cfg: Mapping = DEFAULT_NORM,
                           order: Sequence[str] = ('conv', 'norm', 'act'),
                           backend: str = 'auto') -> SparseSequential:
    """A conv / norm / ReLU sequence in ``order``, children named ``0, 1, 2`` as mmdetection3d's.

    ``padding`` is ignored by submanifold convs (their output sites are the input's), as in
    spconv.
    """
    layers: list[nn.Module] = []
    for name in order:
        if name == 'conv':
            if conv_type == 'SubMConv3d':
                layers.append(SubMConv3d(in_channels, out_channels, kernel_size, backend=backend))
            elif conv_type == 'SparseConv3d':
                layers.append(SparseConv3d(in_channels, out_channels, kernel_size, stride, padding,
                                           backend=backend))
            else:
                raise ValueError(f"conv_type must be 'SubMConv3d' or 'SparseConv3d', got "
                                 f'{conv_type!r}')
        elif name == 'norm':
            layers.append(_build_norm(norm_cfg, out_channels))
        elif name == 'act':
            layers.append(nn.ReLU(inplace=True))
        else:
            raise ValueError(f"order entries must be 'conv', 'norm' or 'act', got {name!r}")
    return SparseSequential(*layers)


class SparseBasicBlock(nn.Module):
    """Residual block of two submanifold 3x3x3 convs (mmdetection3d's ``SparseBasicBlock``).

    ``relu(bn2(conv2(relu(bn1(conv1(x))))) + x)``; keys ``conv1, bn1, conv2, bn2`` as mmdet's
    ``BasicBlock``.
    """

    is_sparse = True  # SparseSequential passes it the voxels, not the features

    def __init__(self, inplanes: int, planes: int, norm_cfg: Mapping = DEFAULT_NORM,
                 backend: str = 'auto') -> None:
        super().__init__()
        if inplanes != planes:
            raise ValueError(f'SparseBasicBlock has no downsample path: inplanes ({inplanes}) must '
                             f'equal planes ({planes})')
        self.conv1 = SubMConv3d(inplanes, planes, 3, backend=backend)
        self.bn1 = _build_norm(norm_cfg, planes)
        self.conv2 = SubMConv3d(planes, planes, 3, backend=backend)
        self.bn2 = _build_norm(norm_cfg, planes)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, voxels: SparseVoxels) -> SparseVoxels:
        """(N, C) voxels -> (N, C) voxels at the same sites."""
        out = self.conv1(voxels)
        out = self.conv2(out.with_features(self.relu(self.bn1(out.features))))
        return out.with_features(self.relu(self.bn2(out.features) + voxels.features))


@MODELS.register_module()
class SparseEncoder(nn.Module):
    """SECOND / CenterPoint sparse 3D encoder (mmdetection3d's ``SparseEncoder``).

    Args:
        in_channels: voxel feature channels.
        sparse_shape: grid ``(Z, Y, X)`` the encoder works in (mmdetection3d's KITTI configs: 41 x
            1600 x 1408, one z cell more than the voxeliser's 40; inputs on a grid that fits inside
            are re-declared on it).
        order: conv / norm / act order of every conv module.
        norm_cfg: batch norm settings (``type`` BN1d, ``eps``, ``momentum``).
        base_channels: channels of ``conv_input``.
        output_channels: channels of ``conv_out`` (and of the output voxels).
        encoder_channels: per stage, the output channels of each block.
        encoder_paddings: per stage, the padding of each block (used by the strided convs).
        block_type: 'conv_module' (SECOND) or 'basicblock' (CenterPoint's nuScenes config).
        return_middle_feats: also return every stage's output.
        backend: sparse conv backend, 'auto' | 'torch' | 'spconv' (see ``ops.sparse_conv``).

    Attributes:
        out_channels: ``output_channels``.
        out_spatial_shape: the output grid; ``out_channels * out_spatial_shape[0]`` is the channel
            count of ``sparse_to_bev`` on the output (``bev_channels``).
        stage_num, strides: number of stages and each stage output's total stride (1, 2, 4, 8 for
            SECOND; 2, 4, 8, 8 for CenterPoint's basic-block layout).
    """

    def __init__(self, in_channels: int, sparse_shape: Sequence[int],
                 order: Sequence[str] = ('conv', 'norm', 'act'),
                 norm_cfg: Mapping = DEFAULT_NORM, base_channels: int = 16,
                 output_channels: int = 128,
                 encoder_channels: Sequence[Sequence[int]] = ((16,), (32, 32, 32), (64, 64, 64),
                                                              (64, 64, 64)),
                 encoder_paddings: Sequence[Sequence] = ((1,), (1, 1, 1), (1, 1, 1),
                                                         ((0, 1, 1), 1, 1)),
                 block_type: str = 'conv_module', return_middle_feats: bool = False,
                 backend: str = 'auto') -> None:
        super().__init__()
        if block_type not in ('conv_module', 'basicblock'):
            raise ValueError("block_type must be 'conv_module' or 'basicblock', got "
                             f'{block_type!r}')
        order = tuple(order)
        if sorted(order) != ['act', 'conv', 'norm']:
            raise ValueError(f"order must be a permutation of ('conv', 'norm', 'act'), got {order}")
        if len(encoder_paddings) != len(encoder_channels) or any(
                len(p) != len(c) for p, c in zip(encoder_paddings, encoder_channels)):
            raise ValueError('encoder_paddings must have the nesting of encoder_channels, got '
                             f'{encoder_paddings} for {encoder_channels}')
        self.in_channels = in_channels
        self.sparse_shape = tuple(int(s) for s in sparse_shape)
        self.order = order
        self.base_channels = base_channels
        self.output_channels = self.out_channels = output_channels
        self.encoder_channels = encoder_channels
        self.encoder_paddings = encoder_paddings
        self.stage_num = len(encoder_channels)
        self.return_middle_feats = return_middle_feats
        self.backend = backend

        # A pre-activation order starts from the raw input: conv only, as mmdetection3d.
        self.conv_input = make_sparse_convmodule(
            in_channels, base_channels, 3, padding=1, conv_type='SubMConv3d', norm_cfg=norm_cfg,
            order=order if order[0] == 'conv' else ('conv',), backend=backend)
        self.encoder_layers = SparseSequential()
        channels, shape, stride = base_channels, self.sparse_shape, 1
        self.strides: list[int] = []
        for i, blocks in enumerate(encoder_channels):
            layers: list[nn.Module] = []
            for j, out_ch in enumerate(blocks):
                padding = encoder_paddings[i][j]
                downsample = (i != 0 and j == 0) if block_type == 'conv_module' else (
                    j == len(blocks) - 1 and i != self.stage_num - 1)
                if downsample:
                    layers.append(make_sparse_convmodule(
                        channels, out_ch, 3, stride=2, padding=padding, conv_type='SparseConv3d',
                        norm_cfg=norm_cfg, order=order, backend=backend))
                    shape = conv_output_shape(shape, 3, 2, padding)
                    stride *= 2
                elif block_type == 'basicblock':
                    layers.append(SparseBasicBlock(out_ch, out_ch, norm_cfg, backend))
                else:
                    layers.append(make_sparse_convmodule(
                        channels, out_ch, 3, padding=padding, conv_type='SubMConv3d',
                        norm_cfg=norm_cfg, order=order, backend=backend))
                channels = out_ch
            self.encoder_layers.add_module(f'encoder_layer{i + 1}', SparseSequential(*layers))
            self.strides.append(stride)  # of the stage's output (basic-block stages end strided)
        self.conv_out = make_sparse_convmodule(
            channels, output_channels, (3, 1, 1), stride=(2, 1, 1), padding=0,
            conv_type='SparseConv3d', norm_cfg=norm_cfg, order=order, backend=backend)
        self.out_spatial_shape = conv_output_shape(shape, (3, 1, 1), (2, 1, 1), 0)
        self.bev_channels = output_channels * self.out_spatial_shape[0]

    def forward(self, voxels: SparseVoxels) -> SparseVoxels | tuple[SparseVoxels,
                                                                    list[SparseVoxels]]:
        """Encode voxels to the stride-8 grid.

        Args:
            voxels: ``N`` voxels, (N, in_channels) features, on a grid that fits in
                ``sparse_shape``.

        Returns:
            :class:`SparseVoxels` on ``out_spatial_shape`` with ``output_channels`` features (and
            the list of the stages' outputs if ``return_middle_feats``).
        """
        if voxels.num_channels != self.in_channels:
            raise ValueError(f'SparseEncoder expects {self.in_channels} voxel channels, got '
                             f'{voxels.num_channels}')
        if any(s > t for s, t in zip(voxels.spatial_shape, self.sparse_shape)):
            raise ValueError(f'SparseEncoder: input grid {voxels.spatial_shape} does not fit in '
                             f'sparse_shape {self.sparse_shape}')
        features = voxels.features
        if torch.is_autocast_enabled(features.device.type):
            features = features.float()  # sparse convs run in float32, as mmdetection3d's
        with torch.autocast(features.device.type, enabled=False):
            x = SparseVoxels(features, voxels.coords, self.sparse_shape, voxels.batch_size)
            x = self.conv_input(x)
            middle = []
            for stage in self.encoder_layers:
                x = stage(x)
                middle.append(x)
            out = self.conv_out(x)
        return (out, middle) if self.return_middle_feats else out


_PREFIXES = ('middle_encoder.', 'pts_middle_encoder.')


def _kernel_like(dims: Sequence[int]) -> bool:
    return all(d in (1, 3, 5, 7) for d in dims)


def _conv_layout(key: str, shape: Sequence[int], metadata: Mapping | None) -> str:
    """'spconv2' (C_out, kz, ky, kx, C_in) or 'spconv1' (kz, ky, kx, C_in, C_out) for one weight."""
    module = key.rsplit('.', 1)[0]
    if metadata is not None and module in metadata:
        # mmdetection3d permutes a sparse conv weight unless its module was saved as version 2
        # (spconv 2.x modules, and ours, are).
        return 'spconv2' if metadata[module].get('version') == 2 else 'spconv1'
    new, old = _kernel_like(shape[1:4]), _kernel_like(shape[0:3])
    if new != old:
        return 'spconv2' if new else 'spconv1'
    raise ValueError(f'convert_official_state_dict: cannot tell the kernel layout of {key} '
                     f'{tuple(shape)}; pass weight_layout="spconv1" or "spconv2"')


def convert_official_state_dict(state: Mapping[str, Tensor],
                                weight_layout: str = 'auto') -> dict[str, Tensor]:
    """mmdetection3d ``SparseEncoder`` weights -> :class:`SparseEncoder` weights.

    The module names are mmdetection3d's, so the keys only lose the detector's
    ``middle_encoder.`` / ``pts_middle_encoder.`` prefix (other detector keys are dropped when one
    is present). Sparse conv weights come in two layouts: spconv 2.x's ``(C_out, kz, ky, kx,
    C_in)`` (ours) and mmcv / spconv 1.x's ``(kz, ky, kx, C_in, C_out)``, which mmdetection3d's
    released SECOND / CenterPoint checkpoints use; the latter are permuted.

    Args:
        state: official state dict (any ``module.`` prefix already stripped).
        weight_layout: 'auto' (mmdetection3d's rule from the state dict's ``_metadata`` versions
            where present, else from the shapes), 'spconv1' or 'spconv2'.

    Returns:
        Our state dict.
    """
    if weight_layout not in ('auto', 'spconv1', 'spconv2'):
        raise ValueError(f"weight_layout must be 'auto', 'spconv1' or 'spconv2', got "
                         f'{weight_layout!r}')
    metadata = getattr(state, '_metadata', None)
    prefix = next((p for p in _PREFIXES if any(k.startswith(p) for k in state)), '')
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        if value.dim() == 5 and name.endswith('weight'):
            layout = weight_layout
            if layout == 'auto':
                layout = _conv_layout(key, value.shape, metadata)
            if layout == 'spconv1':
                value = value.permute(4, 0, 1, 2, 3).contiguous()
        out[name] = value
    return out
