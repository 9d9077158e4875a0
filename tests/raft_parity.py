"""Seeded weights and images for the RAFT parity fixtures (``tests/data/raft_parity_*.npz``).

The fixtures hold figures computed by the official princeton-vl/RAFT code (run outside this
project) on the weights and inputs these functions make; ``test_raft.py`` rebuilds both here.
"""
from __future__ import annotations

import torch
from torch import nn

# pixels (y, x) at full resolution whose flow values the fixtures keep
PROBE_YX = ((0, 0), (5, 17), (31, 64), (64, 80), (100, 3), (127, 159), (77, 120), (12, 140))


def fill_seeded_(model: nn.Module, seed: int) -> None:
    """Overwrite every parameter and BatchNorm statistic from a per-tensor seeded generator.

    Conv weights ~ N(0, 1 / fan_in); biases ~ N(0, 0.1^2); norm scales ~ 1 + N(0, 0.1^2);
    running means ~ N(0, 0.1^2), running variances ~ U(0.5, 1.5). Tensor ``i`` in sorted-name
    order uses seed ``seed * 1000 + i``, so the fill does not depend on construction order.
    """
    state = model.state_dict()
    names = sorted(k for k in state if not k.endswith('num_batches_tracked'))
    with torch.no_grad():
        for i, name in enumerate(names):
            t = state[name]
            g = torch.Generator().manual_seed(seed * 1000 + i)
            noise = torch.randn(t.shape, generator=g, dtype=torch.float64)
            if name.endswith('running_var'):
                value = 0.5 + torch.rand(t.shape, generator=g, dtype=torch.float64)
            elif t.dim() > 1:
                value = noise / (t[0].numel() ** 0.5)
            elif name.endswith('weight'):  # norm scale
                value = 1 + 0.1 * noise
            else:  # biases, running means
                value = 0.1 * noise
            t.copy_(value.to(t.dtype))


def seeded_images(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    """``(B, 2, 3, H, W)`` float64 images in 0-255: smooth random blobs, the second frame a
    shifted copy plus noise (so the flow is not arbitrary)."""
    b, _, c, h, w = shape
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(b, c, h // 8 + 2, w // 8 + 2, generator=g, dtype=torch.float64)
    big = torch.nn.functional.interpolate(coarse, size=(h + 8, w + 8), mode='bicubic',
                                          align_corners=False)
    first = big[..., 4:4 + h, 4:4 + w]
    second = big[..., 2:2 + h, 5:5 + w] + 0.05 * torch.rand(b, c, h, w, generator=g,
                                                             dtype=torch.float64)
    pair = torch.stack([first, second], dim=1)
    pair = (pair - pair.amin()) / (pair.amax() - pair.amin())
    return 255 * pair
