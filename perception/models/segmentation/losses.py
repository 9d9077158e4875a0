"""Pixel-wise cross-entropy for semantic segmentation, with mmsegmentation's reductions.

``avg_non_ignore=False`` (mmseg's default) divides the summed loss by *all* pixels, ignored ones
included (they contribute 0); ``True`` divides by the number of non-ignored pixels. Class weights
scale each pixel's loss by the weight of its ground-truth class, but - unlike PyTorch's
``reduction='mean'`` - the divisor stays a pixel count, not the sum of the weights (as mmseg).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...registry import MODELS


def seg_cross_entropy(logits: Tensor, labels: Tensor, class_weight: Tensor | None = None,
                      ignore_index: int = 255, avg_non_ignore: bool = False) -> Tensor:
    """Mean pixel cross-entropy.

    Args:
        logits: ``(B, K, H, W)`` unnormalised class scores.
        labels: ``(B, H, W)`` integer labels in ``[0, K)`` or ``ignore_index``.
        class_weight: optional ``(K,)`` per-class weights.
        ignore_index: label value that contributes no loss.
        avg_non_ignore: divide by the non-ignored pixel count instead of all pixels.

    Returns:
        A scalar tensor.
    """
    if logits.dim() != 4 or labels.dim() != 3 or logits.shape[0] != labels.shape[0] \
            or logits.shape[2:] != labels.shape[1:]:
        raise ValueError(f'seg_cross_entropy: logits must be (B, K, H, W) and labels (B, H, W) of '
                         f'the same B, H, W; got {tuple(logits.shape)} and {tuple(labels.shape)}')
    if class_weight is not None and class_weight.shape != (logits.shape[1],):
        raise ValueError(f'seg_cross_entropy: class_weight must have {logits.shape[1]} entries, '
                         f'got {tuple(class_weight.shape)}')
    labels = labels.long()
    loss = F.cross_entropy(logits, labels, weight=class_weight, reduction='none',
                           ignore_index=ignore_index)
    if avg_non_ignore:
        # mmseg adds float32 eps so an all-ignored batch gives 0, not NaN.
        count = (labels != ignore_index).sum()
        return loss.sum() / (count + torch.finfo(torch.float32).eps)
    return loss.mean()


@MODELS.register_module()
class SegCrossEntropyLoss(nn.Module):
    """mmseg's ``CrossEntropyLoss`` (softmax variant) as a module.

    Args:
        class_weight: per-class weights ``(K,)`` or ``None``.
        loss_weight: multiplier of the reduced loss (0.4 for auxiliary heads, by convention).
        avg_non_ignore: see :func:`seg_cross_entropy`.
        loss_name: key suffix in the loss dict (``'loss_ce'``).

    ``forward(logits (B, K, H, W), labels (B, H, W), ignore_index=255) -> scalar``.
    """

    def __init__(self, class_weight: Sequence[float] | None = None, loss_weight: float = 1.0,
                 avg_non_ignore: bool = False, loss_name: str = 'loss_ce') -> None:
        super().__init__()
        self.loss_weight = loss_weight
        self.avg_non_ignore = avg_non_ignore
        self.loss_name = loss_name
        weight = None if class_weight is None else torch.tensor(class_weight, dtype=torch.float32)
        self.register_buffer('class_weight', weight, persistent=False)

    def forward(self, logits: Tensor, labels: Tensor, ignore_index: int = 255) -> Tensor:
        weight = None if self.class_weight is None else self.class_weight.to(logits)
        return self.loss_weight * seg_cross_entropy(logits, labels, weight, ignore_index,
                                                    self.avg_non_ignore)
