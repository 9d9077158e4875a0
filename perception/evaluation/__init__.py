"""Evaluation protocols: one module per benchmark, each a pure function plus a BaseMetric."""
from .coco import CocoMetric
from .kitti import KittiMetric
from .nuscenes import NuScenesMetric
from .segmentation import SegMetric
from .stereo import StereoMetric
from .super_resolution import SRMetric, psnr, rgb_to_y

__all__ = ['CocoMetric', 'KittiMetric', 'NuScenesMetric', 'SRMetric', 'SegMetric',
           'StereoMetric', 'psnr', 'rgb_to_y']
