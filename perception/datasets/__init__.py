"""Datasets, transforms and converters. Importing registers every dataset class and transform."""
from . import transforms  # noqa: F401
from .flow import (
    FlyingChairsDataset,
    FlyingThings3DFlowDataset,
    HD1KDataset,
    KittiFlowDataset,
    SintelDataset,
)
from .kitti import KittiDataset
from .nuscenes import NuScenesDataset
from .posed_depth import PosedDepthDataset
from .segmentation import ADE20KDataset, CityscapesDataset
from .stereo import ETH3DDataset, KittiStereoDataset, MiddleburyDataset, SceneFlowDataset
from .super_resolution import PairedImageDataset, SRTrainDataset, SyntheticSRDataset

__all__ = ['ADE20KDataset', 'CityscapesDataset', 'ETH3DDataset', 'FlyingChairsDataset',
           'FlyingThings3DFlowDataset', 'HD1KDataset', 'KittiDataset', 'KittiFlowDataset',
           'PosedDepthDataset', 'SintelDataset',
           'KittiStereoDataset', 'MiddleburyDataset', 'NuScenesDataset', 'PairedImageDataset',
           'SRTrainDataset', 'SceneFlowDataset', 'SyntheticSRDataset']
