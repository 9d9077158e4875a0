"""Evaluation protocols: one module per benchmark, each a pure function plus a BaseMetric."""
from .coco import CocoMetric, coco_evaluate
from .depth import DepthMetric, aggregate_depth_counts, depth_counts, depth_metrics
from .flow import FlowMetric, aggregate_flow_counts, endpoint_error, flow_counts
from .kitti import KittiMetric, annos_from_camera_boxes, evaluate_label_dirs, kitti_eval
from .nuscenes import NuScenesMetric, evaluate_detection, export_submission
from .segmentation import SegMetric, confusion_matrix, segmentation_scores
from .stereo import StereoMetric, bad_pixel_rate, d1, epe
from .super_resolution import SRMetric, evaluate_image_dirs, psnr, rgb_to_y, ssim

__all__ = ['CocoMetric', 'FlowMetric', 'KittiMetric', 'NuScenesMetric', 'SRMetric', 'SegMetric',
           'StereoMetric', 'DepthMetric', 'aggregate_depth_counts', 'depth_counts', 'depth_metrics',
           'aggregate_flow_counts', 'annos_from_camera_boxes', 'bad_pixel_rate',
           'coco_evaluate', 'confusion_matrix', 'd1', 'endpoint_error', 'epe', 'evaluate_detection',
           'evaluate_image_dirs', 'evaluate_label_dirs', 'export_submission', 'flow_counts',
           'kitti_eval', 'psnr', 'rgb_to_y', 'segmentation_scores', 'ssim']
