"""3D boxes (LiDAR / camera frames), points, calibration and data samples."""
