"""Sparse 3D convolutions on :class:`SparseVoxels`, in plain PyTorch, with spconv as an option.

Two kinds, as spconv and every SECOND-style LiDAR backbone use them:

* submanifold convolution (:func:`submanifold_conv3d`): outputs only at the input's active sites, so
  the set of active sites never grows through a stack of them;
* regular sparse convolution (:func:`sparse_conv3d`): an output site is active iff its receptive
  field holds an active input site; with a stride it downsamples the grid.

Both find neighbours without a dense grid (KITTI's is 41 x 1600 x 1408 per cloud): the linear keys
of the active sites are sorted once and every kernel offset looks its neighbours up with
``torch.searchsorted``; then each offset is one gather, one ``(n, C_in) @ (C_in, C_out)`` matmul and
one ``index_add_``. Python loops run over the ``k^3`` kernel offsets only, never over voxels.

Weights use spconv 2.x's layout ``(C_out, kz, ky, kx, C_in)`` and the same offset convention as
``torch.nn.functional.conv3d`` (cross-correlation: input ``i = o * stride - padding + k *
dilation``), so spconv 2.x state dicts load unchanged. The modules :class:`SubMConv3d` and
:class:`SparseConv3d` run spconv's kernels instead when spconv is installed and asked for
(``backend='auto'`` or ``'spconv'``), with the same weight tensor.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..layers.sparse_voxels import SparseVoxels
from .voxelize import row_major_keys

__all__ = ['SparseConv3d', 'SparseSequential', 'SubMConv3d', 'conv_output_shape',
           'sparse_conv3d', 'spconv_available', 'submanifold_conv3d']

IntOr3 = int | Sequence[int]


def _triple(value: IntOr3, name: str) -> tuple[int, int, int]:
    if isinstance(value, int):
        return (value, value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 3:
        raise ValueError(f'{name} must be an int or a (z, y, x) triple, got {value}')
    return value


def conv_output_shape(spatial_shape: Sequence[int], kernel_size: IntOr3, stride: IntOr3 = 1,
                      padding: IntOr3 = 0, dilation: IntOr3 = 1) -> tuple[int, int, int]:
    """Grid size after a regular convolution, per axis ``floor((S + 2p - d(k-1) - 1) / s) + 1``."""
    k, s = _triple(kernel_size, 'kernel_size'), _triple(stride, 'stride')
    p, d = _triple(padding, 'padding'), _triple(dilation, 'dilation')
    out = tuple((size + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1
                for i, size in enumerate(spatial_shape))
    if min(out) < 1:
        raise ValueError(f'a convolution with kernel {k}, stride {s}, padding {p}, dilation {d} '
                         f'leaves no output cell of the grid {tuple(spatial_shape)}')
    return out


def _check_weight(voxels: SparseVoxels, weight: Tensor, bias: Tensor | None) -> None:
    if weight.dim() != 5:
        raise ValueError('sparse conv weight must be (C_out, kz, ky, kx, C_in), got '
                         f'{tuple(weight.shape)}')
    if weight.shape[4] != voxels.num_channels:
        raise ValueError(f'sparse conv weight expects {weight.shape[4]} input channels, the voxels '
                         f'have {voxels.num_channels}')
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f'sparse conv bias must be ({weight.shape[0]},), got {tuple(bias.shape)}')


def _kernel_offsets(kernel_size: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """Kernel cells ``(kz, ky, kx)`` in spconv's order: z slowest, x fastest."""
    return list(itertools.product(*(range(k) for k in kernel_size)))


def submanifold_conv3d(voxels: SparseVoxels, weight: Tensor, bias: Tensor | None = None,
                       dilation: IntOr3 = 1) -> SparseVoxels:
    """Submanifold sparse convolution (spconv's ``SubMConv3d``), zero padding, stride 1.

    Output site ``o`` (one per input row, same coordinates and order) sums
    ``weight[:, kz, ky, kx, :] @ features[i]`` over the active inputs
    ``i = o + ((kz, ky, kx) - (k - 1) / 2) * dilation``.

    Args:
        voxels: ``N`` active sites with ``C_in`` channels.
        weight: (C_out, kz, ky, kx, C_in), odd kernel sizes.
        bias: (C_out,) or None.
        dilation: int or (z, y, x).

    Returns:
        :class:`SparseVoxels` with (N, C_out) features, the input's coordinates and grid.
    """
    _check_weight(voxels, weight, bias)
    kernel = tuple(weight.shape[1:4])
    if any(k % 2 == 0 for k in kernel):
        raise ValueError(f'submanifold conv needs odd kernel sizes, got {kernel}')
    dil = _triple(dilation, 'dilation')
    z_size, y_size, x_size = voxels.spatial_shape
    # Work in key order: the neighbour keys of sorted keys under one offset are sorted as well, so
    # each searchsorted walks memory in order (about 2x faster than unsorted queries). Offsets
    # come in mirror pairs (delta, -delta) with the same site pairs: one search serves both.
    sorted_keys, order = torch.sort(voxels.linear_index())
    coords = voxels.coords[order, 1:]
    feats = voxels.features[order]
    num = coords.shape[0]
    out = feats.new_zeros(num, weight.shape[0])
    centre = tuple((k - 1) // 2 for k in kernel)
    sizes = (z_size, y_size, x_size)
    for kz, ky, kx in _kernel_offsets(kernel):
        delta = [(kz - centre[0]) * dil[0], (ky - centre[1]) * dil[1], (kx - centre[2]) * dil[2]]
        if delta == [0, 0, 0]:  # every site is its own neighbour: no lookup
            out += feats @ weight[:, kz, ky, kx, :].t()
            continue
        if num == 0 or delta < [0, 0, 0]:
            continue  # a negative offset's pairs are its mirror's, reversed: found below
        inside = None
        for axis, step in enumerate(delta):  # padding: neighbours outside the grid are zeros
            if step != 0:
                moved = coords[:, axis] + step
                ok = (moved >= 0) & (moved < sizes[axis])
                inside = ok if inside is None else inside & ok
        queries = sorted_keys + (delta[0] * y_size + delta[1]) * x_size + delta[2]
        pos = torch.searchsorted(sorted_keys, queries).clamp_(max=num - 1)
        rows = (inside & (sorted_keys[pos] == queries)).nonzero().squeeze(1)
        if rows.numel() == 0:
            continue
        nbrs = pos[rows]  # site rows[j] + delta is site nbrs[j], so nbrs[j] - delta is rows[j]
        mirror = weight[:, kernel[0] - 1 - kz, kernel[1] - 1 - ky, kernel[2] - 1 - kx, :]
        out.index_add_(0, rows, feats[nbrs] @ weight[:, kz, ky, kx, :].t())
        out.index_add_(0, nbrs, feats[rows] @ mirror.t())
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(num, device=order.device)
    out = out[inverse]  # back to the input's row order
    if bias is not None:
        out = out + bias
    return voxels.with_features(out)


def sparse_conv3d(voxels: SparseVoxels, weight: Tensor, bias: Tensor | None = None,
                  stride: IntOr3 = 1, padding: IntOr3 = 0, dilation: IntOr3 = 1) -> SparseVoxels:
    """Regular sparse convolution (spconv's ``SparseConv3d``), zero padding.

    Output site ``o`` is active iff some active input ``i = o * stride - padding + k * dilation``
    exists for a kernel cell ``k``; it sums ``weight[:, kz, ky, kx, :] @ features[i]`` over them.
    This is ``torch.nn.functional.conv3d`` on the dense grid, kept at the active output sites.

    Args:
        voxels: ``N`` active sites with ``C_in`` channels in a ``(Z, Y, X)`` grid.
        weight: (C_out, kz, ky, kx, C_in).
        bias: (C_out,) or None.
        stride, padding, dilation: int or (z, y, x).

    Returns:
        :class:`SparseVoxels` with ``M`` active output sites, rows sorted by their linear index in
        the output grid of :func:`conv_output_shape`, features (M, C_out).
    """
    _check_weight(voxels, weight, bias)
    kernel = tuple(weight.shape[1:4])
    st, pad = _triple(stride, 'stride'), _triple(padding, 'padding')
    dil = _triple(dilation, 'dilation')
    out_shape = conv_output_shape(voxels.spatial_shape, kernel, st, pad, dil)
    coords = voxels.coords
    device = coords.device
    st_t, pad_t = torch.tensor(st, device=device), torch.tensor(pad, device=device)
    out_shape_t = torch.tensor(out_shape, device=device)
    # Every (input, kernel cell) pair that lands on an output site: the union of those sites is the
    # active output set; the pairs themselves are the gather-scatter lists.
    in_rows, out_keys = [], []
    offsets = _kernel_offsets(kernel)
    for kz, ky, kx in offsets:
        k_t = torch.tensor([kz * dil[0], ky * dil[1], kx * dil[2]], device=device)
        numer = coords[:, 1:] + pad_t - k_t  # o * stride
        valid = (numer % st_t == 0).all(1)
        out_zyx = torch.div(numer, st_t, rounding_mode='floor')
        valid &= ((out_zyx >= 0) & (out_zyx < out_shape_t)).all(1)
        rows = valid.nonzero().squeeze(1)
        in_rows.append(rows)
        out_keys.append(row_major_keys(torch.cat([coords[rows, :1], out_zyx[rows]], 1),
                                       out_shape))
    unique_keys, out_rows = torch.unique(torch.cat(out_keys), sorted=True, return_inverse=True)
    out_rows = out_rows.split([len(rows) for rows in in_rows])
    out = voxels.features.new_zeros(unique_keys.shape[0], weight.shape[0])
    for (kz, ky, kx), rows, targets in zip(offsets, in_rows, out_rows):
        if rows.numel() > 0:
            out.index_add_(0, targets, voxels.features[rows] @ weight[:, kz, ky, kx, :].t())
    if bias is not None:
        out = out + bias
    z_size, y_size, x_size = out_shape
    x = unique_keys % x_size
    y = unique_keys // x_size % y_size
    z = unique_keys // (x_size * y_size) % z_size
    b = unique_keys // (x_size * y_size * z_size)
    return SparseVoxels(out, torch.stack([b, z, y, x], 1), out_shape, voxels.batch_size)


@functools.lru_cache(maxsize=1)
def spconv_available() -> bool:
    """Whether ``spconv.pytorch`` (2.x) imports (checked once: forwards ask every call)."""
    try:
        import spconv.pytorch  # noqa: F401
    except ImportError:
        return False
    return True


def _patch_spconv_cpu_stream() -> None:
    """Let spconv 2.3's CPU build run backward.

    Its backward asks ``torch.cuda.current_stream()`` for a stream handle, which raises on a torch
    without CUDA; on CPU the handle is unused, so 0 is correct (measured: gradients then match a
    dense conv3d). Applied once, only when spconv runs on CPU.
    """
    import spconv.pytorch.ops as spconv_ops

    if getattr(spconv_ops, '_perception_cpu_patch', False):
        return
    original = spconv_ops.get_current_stream

    def get_current_stream() -> int:
        if not torch.cuda.is_available():
            return 0
        return original()

    spconv_ops.get_current_stream = get_current_stream
    spconv_ops._perception_cpu_patch = True


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _params(module: nn.Module) -> list[torch.Tensor]:
    return [p for p in (module.weight, module.bias) if p is not None]


def _run_spconv(module: nn.Module, voxels: SparseVoxels, features: torch.Tensor) -> Any:
    import spconv.pytorch as spconv

    return module(spconv.SparseConvTensor(features, voxels.coords.int(),
                                          list(voxels.spatial_shape), voxels.batch_size))


class _SpconvOnOneThread(torch.autograd.Function):
    """spconv's CPU forward and backward, each on one torch thread.

    spconv 2.3's CPU kernels race when torch runs them on several threads: with
    OMP_NUM_THREADS=2 the SECOND encoder's output varies run to run and is off by up to 1.2e-2
    even in float64 (KITTI grid); on one thread it matches the torch path to 3e-17. Gradients race
    the same way. The forward runs without a graph; the backward recomputes it with one (as
    activation checkpointing does), so every spconv kernel, forward or backward, runs on one
    thread. Returns ``(features (N', C_out), indices (N', 4) int, spatial_shape)``.
    """

    @staticmethod
    def forward(ctx: Any, module: nn.Module, voxels: SparseVoxels, features: torch.Tensor,
                *params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        ctx.module, ctx.voxels = module, voxels
        ctx.save_for_backward(features, *params)
        with torch.no_grad(), _one_torch_thread():
            out = _run_spconv(module, voxels, features)
        ctx.mark_non_differentiable(out.indices)
        return out.features, out.indices, list(out.spatial_shape)

    @staticmethod
    def backward(ctx: Any, grad_features: torch.Tensor, *unused: Any) -> tuple:
        features, *params = ctx.saved_tensors
        wanted = ctx.needs_input_grad[2:]
        with torch.enable_grad(), _one_torch_thread():
            leaf = features.detach().requires_grad_(wanted[0])
            out = _run_spconv(ctx.module, ctx.voxels, leaf)
            inputs = [t for t, need in zip((leaf, *params), wanted) if need]
            grads = iter(torch.autograd.grad(out.features, inputs, grad_features,
                                             allow_unused=True))
        return (None, None, *(next(grads) if need else None for need in wanted))


class _SparseConvBase(nn.Module):
    """Weight/bias holder shared by :class:`SubMConv3d` and :class:`SparseConv3d`."""

    subm = False
    # State-dict metadata version of spconv 2.x modules under mmdetection3d: loaders that follow
    # mmdetection3d's rule then know the weights are (C_out, kz, ky, kx, C_in) already.
    _version = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOr3, stride: IntOr3,
                 padding: IntOr3, dilation: IntOr3, bias: bool, backend: str) -> None:
        super().__init__()
        if backend not in ('auto', 'torch', 'spconv'):
            raise ValueError(f"backend must be 'auto', 'torch' or 'spconv', got {backend!r}")
        if backend == 'spconv' and not spconv_available():
            raise ImportError("backend='spconv' needs spconv 2.x: pip install .[lidar]")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = _triple(kernel_size, 'kernel_size')
        self.stride, self.padding = _triple(stride, 'stride'), _triple(padding, 'padding')
        self.dilation = _triple(dilation, 'dilation')
        self.backend = backend
        self.weight = nn.Parameter(torch.empty(self.out_channels, *self.kernel_size,
                                               self.in_channels))
        self.bias = nn.Parameter(torch.empty(self.out_channels)) if bias else None
        self._spconv_module: list[nn.Module] = []  # a list keeps it out of state_dict / .to()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """spconv's init: kaiming-uniform with a = sqrt(5) and fan_in = C_in * kz * ky * kx."""
        fan_in = self.in_channels * math.prod(self.kernel_size)
        bound = 1 / math.sqrt(fan_in)  # gain sqrt(2 / (1 + a^2)) times sqrt(3 / fan_in)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

    def extra_repr(self) -> str:
        return (f'{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, '
                f'stride={self.stride}, padding={self.padding}, dilation={self.dilation}, '
                f'bias={self.bias is not None}, backend={self.backend!r}')

    def uses_spconv(self) -> bool:
        return self.backend != 'torch' and spconv_available()

    def _forward_spconv(self, voxels: SparseVoxels) -> SparseVoxels:
        import spconv.pytorch as spconv

        if not self._spconv_module:
            cls = spconv.SubMConv3d if self.subm else spconv.SparseConv3d
            self._spconv_module.append(cls(self.in_channels, self.out_channels, self.kernel_size,
                                           stride=self.stride, padding=self.padding,
                                           dilation=self.dilation, bias=False))
        module = self._spconv_module[0]
        # Share our parameters, so training and state_dict see one weight whatever the backend.
        module.weight = self.weight
        module.bias = self.bias
        if voxels.features.device.type == 'cpu':
            _patch_spconv_cpu_stream()
            features, indices, spatial_shape = _SpconvOnOneThread.apply(
                module, voxels, voxels.features, *_params(module))
        else:
            out = _run_spconv(module, voxels, voxels.features)
            features, indices, spatial_shape = out.features, out.indices, out.spatial_shape
        coords = indices.long()
        if not self.subm and coords.shape[0] > 0:  # spconv's order is not sorted; ours is
            shape = tuple(int(s) for s in spatial_shape)
            order = torch.argsort(row_major_keys(coords, shape))
            coords, features = coords[order], features[order]
        return SparseVoxels(features, coords, tuple(int(s) for s in spatial_shape),
                            voxels.batch_size)


class SubMConv3d(_SparseConvBase):
    """Submanifold sparse conv module; spconv's ``SubMConv3d`` parameters and state-dict keys.

    Args:
        in_channels, out_channels: feature channels.
        kernel_size: odd int or (z, y, x).
        bias: learn a bias.
        dilation: int or (z, y, x).
        backend: 'torch' (:func:`submanifold_conv3d`), 'spconv' (spconv's kernels, must be
            installed) or 'auto' (spconv where installed).
    """

    subm = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOr3 = 3,
                 bias: bool = False, dilation: IntOr3 = 1, backend: str = 'auto') -> None:
        super().__init__(in_channels, out_channels, kernel_size, 1, 0, dilation, bias, backend)
        if any(k % 2 == 0 for k in self.kernel_size):
            raise ValueError(f'SubMConv3d needs odd kernel sizes, got {self.kernel_size}')

    def forward(self, voxels: SparseVoxels) -> SparseVoxels:
        """(N, C_in) voxels -> (N, C_out) voxels at the same sites."""
        if self.uses_spconv():
            return self._forward_spconv(voxels)
        return submanifold_conv3d(voxels, self.weight, self.bias, self.dilation)


class SparseConv3d(_SparseConvBase):
    """Regular (strided) sparse conv module; spconv's ``SparseConv3d`` parameters and keys.

    Args:
        in_channels, out_channels: feature channels.
        kernel_size, stride, padding, dilation: int or (z, y, x).
        bias: learn a bias.
        backend: 'torch' (:func:`sparse_conv3d`), 'spconv' or 'auto' (spconv where installed).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOr3,
                 stride: IntOr3 = 1, padding: IntOr3 = 0, bias: bool = False,
                 dilation: IntOr3 = 1, backend: str = 'auto') -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, bias,
                         backend)

    def forward(self, voxels: SparseVoxels) -> SparseVoxels:
        """(N, C_in) voxels -> (M, C_out) voxels on the output grid, rows sorted by linear index."""
        if self.uses_spconv():
            return self._forward_spconv(voxels)
        return sparse_conv3d(voxels, self.weight, self.bias, self.stride, self.padding,
                             self.dilation)


class SparseSequential(nn.Sequential):
    """``nn.Sequential`` over :class:`SparseVoxels`, as spconv's ``SparseSequential``.

    Sparse modules (convs, blocks: anything whose ``forward`` takes :class:`SparseVoxels`, marked by
    an ``is_sparse = True`` attribute or being a conv here) get the voxels; every other module
    (BatchNorm1d, ReLU, ...) is applied to the ``(N, C)`` features. Children are named ``0, 1, ...``
    like spconv's, so state-dict keys match.
    """

    def forward(self, voxels: SparseVoxels) -> SparseVoxels:
        for module in self:
            if isinstance(module, (_SparseConvBase, SparseSequential)) or getattr(
                    module, 'is_sparse', False):
                voxels = module(voxels)
            else:
                voxels = voxels.with_features(module(voxels.features))
        return voxels
