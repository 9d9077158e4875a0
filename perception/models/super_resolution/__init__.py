"""Single-image super-resolution: networks, the training wrapper and pixel losses."""
from .espcn import ESPCN, espcn_x2, espcn_x3, espcn_x4
from .losses import CharbonnierLoss, L1Loss, MSELoss
from .super_resolver import SRDataPreprocessor, SuperResolver

__all__ = [
    'ESPCN', 'espcn_x2', 'espcn_x3', 'espcn_x4', 'CharbonnierLoss', 'L1Loss', 'MSELoss',
    'SRDataPreprocessor', 'SuperResolver'
]
