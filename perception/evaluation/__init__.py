"""Evaluation protocols: one module per benchmark, each a pure function plus a BaseMetric."""
from .super_resolution import SRMetric, psnr, rgb_to_y

__all__ = ['SRMetric', 'psnr', 'rgb_to_y']
