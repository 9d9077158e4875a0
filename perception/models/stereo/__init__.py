"""Stereo matching models; importing registers them in ``perception.registry.MODELS``."""
from .raft_stereo import (
    RAFTStereo,
    StereoDataPreprocessor,
    convex_upsample,
    sequence_loss,
    sequence_loss_weights,
)

__all__ = ['RAFTStereo', 'StereoDataPreprocessor', 'convex_upsample', 'sequence_loss',
           'sequence_loss_weights']
