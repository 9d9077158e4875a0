"""Datasets, transforms and converters. Importing registers every dataset class and transform."""
from . import transforms  # noqa: F401
from .kitti import KittiDataset
from .nuscenes import NuScenesDataset
from .segmentation import ADE20KDataset, CityscapesDataset
from .stereo import ETH3DDataset, KittiStereoDataset, MiddleburyDataset, SceneFlowDataset
from .super_resolution import PairedImageDataset, SRTrainDataset, SyntheticSRDataset

__all__ = ['ADE20KDataset', 'CityscapesDataset', 'ETH3DDataset', 'KittiDataset',
           'KittiStereoDataset', 'MiddleburyDataset', 'NuScenesDataset', 'PairedImageDataset',
           'SRTrainDataset', 'SceneFlowDataset', 'SyntheticSRDataset']
