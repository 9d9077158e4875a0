"""Single-image super-resolution: networks, the training wrapper and pixel losses."""
from .drct import DRCT, drct_l_x2, drct_l_x3, drct_l_x4, drct_x2, drct_x3, drct_x4
from .espcn import ESPCN, espcn_x2, espcn_x3, espcn_x4
from .hit_sr import (
    HiTSIR,
    HiTSNG,
    HiTSR,
    HiTSRF,
    hit_sir_x2,
    hit_sir_x3,
    hit_sir_x4,
    hit_sng_x2,
    hit_sng_x3,
    hit_sng_x4,
    hit_srf_x2,
    hit_srf_x3,
    hit_srf_x4,
)
from .losses import CharbonnierLoss, L1Loss, MSELoss
from .super_resolver import DIV2K_RGB_MEAN, SRDataPreprocessor, SuperResolver
from .swinir import (
    SwinIR,
    swinir_classical_x2,
    swinir_classical_x3,
    swinir_classical_x4,
    swinir_light_x2,
    swinir_light_x3,
    swinir_light_x4,
)

__all__ = [
    'DIV2K_RGB_MEAN', 'ESPCN', 'CharbonnierLoss', 'HiTSIR', 'HiTSNG', 'HiTSR', 'HiTSRF', 'L1Loss',
    'MSELoss', 'SRDataPreprocessor', 'SuperResolver', 'espcn_x2', 'espcn_x3', 'espcn_x4',
    'hit_sir_x2', 'hit_sir_x3', 'hit_sir_x4', 'hit_sng_x2', 'hit_sng_x3', 'hit_sng_x4',
    'hit_srf_x2', 'hit_srf_x3', 'hit_srf_x4', 'DRCT', 'drct_l_x2', 'drct_l_x3', 'drct_l_x4',
    'drct_x2', 'drct_x3', 'drct_x4', 'SwinIR', 'swinir_classical_x2', 'swinir_classical_x3',
    'swinir_classical_x4', 'swinir_light_x2', 'swinir_light_x3', 'swinir_light_x4'
]
