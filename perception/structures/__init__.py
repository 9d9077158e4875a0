"""3D boxes (LiDAR / camera frames), points, calibration and data samples."""
from .boxes3d import Boxes3D, CameraBoxes3D, LiDARBoxes3D, limit_period, rotation_matrix_about
from .calibration import (
    KittiCalibration,
    SensorPoses,
    invert_pose,
    pose_matrix,
    project_to_image,
    quaternion_to_matrix,
    to_homogeneous,
    transform_points,
)
from .data_sample import Det3DDataSample
from .points import Points

__all__ = [
    'Boxes3D', 'CameraBoxes3D', 'Det3DDataSample', 'KittiCalibration', 'LiDARBoxes3D', 'Points',
    'SensorPoses', 'invert_pose', 'limit_period', 'pose_matrix', 'project_to_image',
    'quaternion_to_matrix', 'rotation_matrix_about', 'to_homogeneous', 'transform_points',
]
