"""Pixel losses for image restoration, as BasicSR names them (``L1Loss``, ``MSELoss``, ...)."""
from __future__ import annotations

import torch
from torch import nn

from ...registry import MODELS


@MODELS.register_module()
class L1Loss(nn.Module):
    """Mean absolute error times ``loss_weight``."""

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss_weight * (pred - target).abs().mean()


@MODELS.register_module()
class MSELoss(nn.Module):
    """Mean squared error times ``loss_weight``."""

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss_weight * (pred - target).pow(2).mean()


@MODELS.register_module()
class CharbonnierLoss(nn.Module):
    """``mean(sqrt((pred - target)^2 + eps^2))``: L1 that is smooth at zero."""

    def __init__(self, loss_weight: float = 1.0, eps: float = 1e-3) -> None:
        super().__init__()
        self.loss_weight = loss_weight
        self.eps = eps

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss_weight * torch.sqrt((pred - target).pow(2) + self.eps**2).mean()
