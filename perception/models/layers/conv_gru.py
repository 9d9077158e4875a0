"""Convolutional GRU cell in the RAFT-Stereo form, with per-gate context biases."""
from __future__ import annotations

import torch
from torch import nn


class ConvGRU(nn.Module):
    """A 3x3 (by default) convolutional GRU whose gates take additive context terms.

    RAFT-Stereo runs the context features through one convolution per level once, before the
    iterations, and feeds the three results as biases ``cz``, ``cr``, ``cq`` of the update, reset
    and candidate gates; that saves re-convolving the (constant) context at every iteration::

        z = sigmoid(conv_z([h, x]) + cz)
        r = sigmoid(conv_r([h, x]) + cr)
        q = tanh(conv_q([r * h, x]) + cq)
        h' = (1 - z) * h + z * q

    Args:
        hidden_dim: channels of the hidden state ``h``.
        input_dim: total channels of the inputs ``x`` (concatenated along channels).
        kernel_size: odd kernel size of the three gate convolutions.
    """

    def __init__(self, hidden_dim: int, input_dim: int, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f'ConvGRU kernel_size must be odd, got {kernel_size}')
        self.hidden_dim = hidden_dim
        self.input_dim = input_dim
        pad = kernel_size // 2
        self.convz = nn.Conv2d(hidden_dim + input_dim, hidden_dim, kernel_size, padding=pad)
        self.convr = nn.Conv2d(hidden_dim + input_dim, hidden_dim, kernel_size, padding=pad)
        self.convq = nn.Conv2d(hidden_dim + input_dim, hidden_dim, kernel_size, padding=pad)

    def forward(self, h: torch.Tensor, cz: torch.Tensor, cr: torch.Tensor, cq: torch.Tensor,
                *inputs: torch.Tensor) -> torch.Tensor:
        """One GRU step.

        Args:
            h: hidden state ``(B, hidden_dim, H, W)``.
            cz, cr, cq: context biases, each ``(B, hidden_dim, H, W)`` (or broadcastable).
            inputs: tensors ``(B, C_i, H, W)`` with ``sum(C_i) == input_dim``.

        Returns:
            The new hidden state ``(B, hidden_dim, H, W)``.
        """
        x = torch.cat(inputs, dim=1)
        if x.shape[1] != self.input_dim or h.shape[1] != self.hidden_dim:
            raise ValueError(f'ConvGRU expects hidden {self.hidden_dim} and input {self.input_dim} '
                             f'channels, got {h.shape[1]} and {x.shape[1]}')
        hx = torch.cat([h, x], dim=1)
        z = torch.sigmoid(self.convz(hx) + cz)
        r = torch.sigmoid(self.convr(hx) + cr)
        q = torch.tanh(self.convq(torch.cat([r * h, x], dim=1)) + cq)
        return (1 - z) * h + z * q


class SepConvGRU(nn.Module):
    """RAFT's separable GRU: a 1x5 GRU step then a 5x1 step, without context biases.

    Attribute names (``convz1`` ... ``convq2``) follow the official module so that checkpoints
    load by name.
    """

    def __init__(self, hidden_dim: int, input_dim: int) -> None:
        super().__init__()
        self.hidden_dim, self.input_dim = hidden_dim, input_dim
        c = hidden_dim + input_dim
        for i, (k, p) in enumerate((((1, 5), (0, 2)), ((5, 1), (2, 0))), start=1):
            for gate in 'zrq':
                setattr(self, f'conv{gate}{i}', nn.Conv2d(c, hidden_dim, k, padding=p))

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``h`` ``(B, hidden_dim, H, W)``, ``x`` ``(B, input_dim, H, W)`` -> new ``h``."""
        if x.shape[1] != self.input_dim or h.shape[1] != self.hidden_dim:
            raise ValueError(f'SepConvGRU expects hidden {self.hidden_dim} and input '
                             f'{self.input_dim} channels, got {h.shape[1]} and {x.shape[1]}')
        for i in (1, 2):
            hx = torch.cat([h, x], dim=1)
            z = torch.sigmoid(getattr(self, f'convz{i}')(hx))
            r = torch.sigmoid(getattr(self, f'convr{i}')(hx))
            q = torch.tanh(getattr(self, f'convq{i}')(torch.cat([r * h, x], dim=1)))
            h = (1 - z) * h + z * q
        return h
