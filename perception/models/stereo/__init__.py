"""Stereo matching models; importing registers them in ``perception.registry.MODELS``."""
from .igev_stereo import IGEVStereo, igev_loss
from .raft_stereo import (
    RAFTStereo,
    StereoDataPreprocessor,
    convex_upsample,
    sequence_loss,
    sequence_loss_weights,
)

__all__ = ['IGEVStereo', 'RAFTStereo', 'StereoDataPreprocessor', 'convex_upsample', 'igev_loss',
           'sequence_loss', 'sequence_loss_weights']
