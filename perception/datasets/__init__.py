"""Datasets, transforms and converters. Importing registers every dataset class and transform."""
from . import transforms  # noqa: F401
from .kitti import KittiDataset
from .nuscenes import NuScenesDataset
from .super_resolution import PairedImageDataset, SyntheticSRDataset

__all__ = ['KittiDataset', 'NuScenesDataset', 'PairedImageDataset', 'SyntheticSRDataset']
