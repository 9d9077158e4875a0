"""Geometry kernels: voxelisation, sparse convolutions, rotated IoU / NMS, points in boxes."""
from .iou3d import (
    bev_iou,
    bev_overlap,
    box3d_iou,
    box3d_overlap,
    boxes3d_to_bev,
    pairwise_iou_upper,
)
from .nms import batched_nms_bev, circle_nms, nms_bev
from .points_in_boxes import count_points_in_boxes, points_in_boxes, points_in_boxes_index
from .sparse_conv import (
    SparseConv3d,
    SparseSequential,
    SubMConv3d,
    conv_output_shape,
    sparse_conv3d,
    spconv_available,
    submanifold_conv3d,
)
from .voxelize import (
    Voxelizer,
    grid_size,
    scatter_mean,
    unique_voxels,
    voxelize_dynamic,
    voxelize_hard,
)

__all__ = ['SparseConv3d', 'SparseSequential', 'SubMConv3d', 'Voxelizer', 'batched_nms_bev',
           'bev_iou', 'bev_overlap', 'box3d_iou', 'box3d_overlap', 'boxes3d_to_bev', 'circle_nms',
           'conv_output_shape', 'count_points_in_boxes', 'grid_size', 'nms_bev',
           'pairwise_iou_upper', 'points_in_boxes', 'points_in_boxes_index', 'scatter_mean',
           'sparse_conv3d', 'spconv_available', 'submanifold_conv3d', 'unique_voxels',
           'voxelize_dynamic', 'voxelize_hard']
