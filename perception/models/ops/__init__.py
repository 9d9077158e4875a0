"""Geometry kernels: voxelisation, rotated IoU / NMS, points in boxes."""
