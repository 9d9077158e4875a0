"""The optional extras work where they are installed (each test skips, saying so, otherwise)."""
import numpy as np
import pytest
import torch


def test_lidar_extra_spconv_voxelises_on_cpu():
    spconv_utils = pytest.importorskip('spconv.pytorch.utils', reason='extra [lidar] not installed')
    points = torch.tensor([[0.05, 0.05, 0.05, 1.0], [0.06, 0.04, 0.05, 2.0],
                           [0.55, 0.05, 0.05, 3.0]])
    gen = spconv_utils.PointToVoxel(vsize_xyz=[0.1, 0.1, 0.1], coors_range_xyz=[0, 0, 0, 1, 1, 1],
                                    num_point_features=4, max_num_voxels=10,
                                    max_num_points_per_voxel=5)
    voxels, coords, counts = gen(points)
    assert sorted(counts.tolist()) == [1, 2]
    assert sorted(map(tuple, coords.tolist())) == [(0, 0, 0), (0, 0, 5)]  # (z, y, x) order


def test_viz_extra_open3d_downsamples():
    o3d = pytest.importorskip('open3d', reason='extra [viz] not installed')
    rng = np.random.default_rng(0)
    clusters = np.concatenate([rng.random((50, 3)) * 0.01, 10 + rng.random((50, 3)) * 0.01])
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(clusters))
    down = np.asarray(cloud.voxel_down_sample(1.0).points)
    assert len(down) == 2  # one point per cluster, at the cluster's mean
    assert np.allclose(sorted(down[:, 0]), [clusters[:50, 0].mean(), clusters[50:, 0].mean()])


def test_nus_extra_devkit_metrics_import():
    algo = pytest.importorskip('nuscenes.eval.detection.algo', reason='extra [nus] not installed')
    assert callable(algo.accumulate) and callable(algo.calc_ap) and callable(algo.calc_tp)


def test_ros_extra_has_ros2_message_types():
    typesys = pytest.importorskip('rosbags.typesys', reason='extra [ros] not installed')
    store = typesys.get_typestore(typesys.Stores.ROS2_HUMBLE)
    assert 'sensor_msgs/msg/PointCloud2' in store.types


def test_deploy_extra_exports_and_runs_onnx(tmp_path):
    pytest.importorskip('onnxscript', reason='extra [deploy] not installed')
    ort = pytest.importorskip('onnxruntime', reason='extra [deploy] not installed')
    from perception.models.super_resolution import ESPCN
    model = ESPCN(scale=2, in_channels=1).eval()
    x = torch.rand(1, 1, 8, 8)
    path = tmp_path / 'espcn.onnx'
    torch.onnx.export(model, (x, ), str(path), input_names=['lr'], output_names=['sr'])
    (out, ) = ort.InferenceSession(str(path)).run(None, {'lr': x.numpy()})
    assert np.abs(out - model(x).detach().numpy()).max() < 1e-5
