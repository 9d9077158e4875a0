"""Posed two-view depth data: DeMoN-layout dataset, transforms, synthetic scenes, bad input."""
from __future__ import annotations

import math
import shutil

import cv2
import numpy as np
import pytest
import torch

from perception.datasets.depth_io import (
    read_depth,
    read_poses_txt,
    relative_pose,
    write_depth,
    write_poses_txt,
)
from perception.datasets.posed_depth import PosedDepthDataset, official_pair_indices
from perception.datasets.synthetic import write_synthetic_posed_depth
from perception.datasets.synthetic.posed_depth import (
    PosedScene,
    TexturedPlane,
    random_posed_scene,
    render_posed_frame,
    rotation_from_axis_angle,
)
from perception.datasets.transforms.depth import (
    LoadDepth,
    LoadPosedPair,
    PackPosedDepthInputs,
    PosedRandomCrop,
    PosedRandomResize,
    PosedResize,
)
from perception.engine.errors import DataError
from perception.registry import DATASETS

PIPELINE = [LoadPosedPair(), LoadDepth(min_depth=0.5, max_depth=7.0), PackPosedDepthInputs()]


def _grid(height, width):
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    return np.stack([xs, ys], -1)


def _reproject(depth, intrinsics, pose):
    """Reference pixels -> source pixel coordinates and source z, with the depth and pose."""
    height, width = depth.shape
    pix = np.concatenate([_grid(height, width), np.ones((height, width, 1))], -1)
    points = (pix @ np.linalg.inv(intrinsics).T) * depth[..., None]
    points = points @ pose[:3, :3].T + pose[:3, 3]
    uvw = points @ intrinsics.T
    return uvw[..., :2] / uvw[..., 2:], points[..., 2]


# ------------------------------------------------------------------------------ pose geometry

def test_official_pair_indices():
    # UniMatch's DemonDataset (sequence_length 2): frame 0 -> 1, frame i -> i - 1
    assert official_pair_indices(3) == [(0, 1), (1, 0), (2, 1)]
    assert official_pair_indices(4) == [(0, 1), (1, 0), (2, 1), (3, 2)]
    assert official_pair_indices(3, 'neighbours') == [(0, 1), (1, 0), (1, 2), (2, 1)]
    assert official_pair_indices(1) == []


def test_relative_pose_conventions_by_hand():
    # reference camera at the world origin; the source camera 1 m to the right (+x), turned 90
    # degrees about y (its +z looks along world +x): a point 5 m ahead of the reference camera,
    # world (0, 0, 5), is at (-5, 0, -1) in the source camera (R = rot_y(-90) world -> camera)
    cam_to_world_src = np.eye(4)
    cam_to_world_src[:3, :3] = rotation_from_axis_angle([0.0, math.pi / 2, 0.0])
    cam_to_world_src[:3, 3] = (1.0, 0.0, 0.0)
    np.testing.assert_allclose(cam_to_world_src[:3, :3] @ [0, 0, 1], [1, 0, 0], atol=1e-12)
    world_to_cam_src = np.linalg.inv(cam_to_world_src)
    point = np.array([0.0, 0.0, 5.0, 1.0])
    for convention, ref, src in (('world_to_camera', np.eye(4), world_to_cam_src),
                                 ('camera_to_world', np.eye(4), cam_to_world_src)):
        pose = relative_pose(ref, src, convention)
        np.testing.assert_allclose(pose @ point, [-5.0, 0.0, -1.0, 1.0], atol=1e-12)


# ------------------------------------------------------------------------- synthetic scenes

def test_ray_plane_depth_by_hand():
    # plane z - 0.5 y = 4 (camera frame); a 2 x 2 m square at z = 2 in front of it
    k = np.array([[100.0, 0.0, 50.0], [0.0, 100.0, 40.0], [0.0, 0.0, 1.0]])
    tex = dict(freqs=np.array([[0.5, 0.0]]), phases=np.array([0.3]), amps=np.ones((1, 3)),
               base=np.full(3, 100.0))
    e2 = np.array([0.0, 1.0, 0.5]) / math.sqrt(1.25)
    planes = [TexturedPlane(np.array([0.0, 0.0, 4.0]), np.stack([np.eye(3)[0], e2]), None, **tex),
              TexturedPlane(np.array([0.0, -1.5, 2.0]), np.eye(3)[:2], np.array([1.0, 1.0]),
                            **tex)]
    scene = PosedScene(80, 100, k, np.eye(4)[None], planes)
    points = np.array([[50.0, 40.0], [50.0, 60.0], [10.0, 75.0], [50.0, 20.0], [50.0, 0.0],
                       [50.0, 10.0]])
    colour, depth, index = render_posed_frame(scene, 0, points)
    # y' = (v - 40) / 100 on the ray (x', y', 1): Z = 4 / (1 - 0.5 y')
    np.testing.assert_allclose(depth[:4], [4.0, 4 / 0.9, 4 / (1 - 0.5 * 0.35), 4 / 1.1],
                               rtol=1e-12)
    # at z = 2 the rays of v = 0 and 10 have y = -0.8 and -0.6, inside the square's y range
    # [-2.5, -0.5] (v = 20: y = -0.4, outside, so the plane behind shows)
    np.testing.assert_allclose(depth[4:], [2.0, 2.0], rtol=1e-12)
    np.testing.assert_array_equal(index, [0, 0, 0, 0, 1, 1])
    # the texture at the plane's origin (pixel (50, 40)): base + sin(phase)
    np.testing.assert_allclose(colour[0], 100.0 + math.sin(0.3), rtol=1e-12)
    # a camera 1 m further back (world-to-camera t = (0, 0, 1)) sees the origin at depth 5
    scene.poses = np.array([[[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1.0], [0, 0, 0, 1]]])
    np.testing.assert_allclose(render_posed_frame(scene, 0, points[:1])[1], [5.0], rtol=1e-12)


def test_depth_and_pose_are_geometrically_exact():
    # Reprojecting reference pixels with the exact depth and relative pose lands on the same
    # surface point in the source view: the continuous renders agree to float precision.
    scene = random_posed_scene(np.random.default_rng(1), 48, 64, num_frames=2)
    colour0, depth0, index0 = render_posed_frame(scene, 0)
    uv, z_src = _reproject(depth0, scene.intrinsics, scene.relative_pose(0, 1))
    colour1, depth1, index1 = render_posed_frame(scene, 1, uv)
    inside = (uv >= 0).all(-1) & (uv[..., 0] <= 63) & (uv[..., 1] <= 47)
    noc = inside & (np.abs(depth1 - z_src) < 1e-9 * z_src)
    assert 0.7 < noc.mean() < 1.0  # some points leave the view or are hidden, most do not
    np.testing.assert_allclose(colour1[noc], colour0[noc], atol=1e-6)
    assert (index1[noc] == index0[noc]).all()
    assert np.isfinite(depth0).all() and 1.5 < depth0.min() and depth0.max() < 9.0


def test_synthetic_scenes_through_the_dataset_are_consistent(tmp_path):
    # Through the files and the data layer (8-bit PNG frames, float32 depth, poses.txt): sampling
    # the source image at the reprojected pixels gives the reference colour, far better than the
    # zero-motion assumption; the inverse pose (the other convention) is as bad as no motion.
    names = write_synthetic_posed_depth(tmp_path, num_scenes=3, frames_per_scene=2, height=48,
                                        width=64, seed=5)
    dataset = DATASETS.build(dict(type='PosedDepthDataset', data_root=str(tmp_path),
                                  split='train', pipeline=PIPELINE))
    assert len(dataset) == 6
    errors, zero_errors, wrong_errors = [], [], []
    for i in range(0, 6, 2):  # the (0, 1) pair of every scene
        packed = dataset[i]
        sample = packed['data_samples']
        ref, src = (packed['inputs'][j].permute(1, 2, 0).numpy().astype(np.float32)
                    for j in range(2))
        depth = sample.gt_depth.data[0].numpy().astype(np.float64)
        k = sample.metainfo['intrinsics'].astype(np.float64)
        pose = sample.metainfo['pose'].astype(np.float64)
        scene = random_posed_scene(np.random.default_rng([5, i // 2]), 48, 64, 2)
        uv, z_src = _reproject(depth, k, pose)
        depth_src = render_posed_frame(scene, 1, uv)[1]
        inside = (uv >= 0).all(-1) & (uv[..., 0] <= 63) & (uv[..., 1] <= 47)
        noc = inside & (np.abs(depth_src - z_src) < 1e-4 * z_src)  # float32 depth in the file
        assert noc.mean() > 0.6
        warped = cv2.remap(src, uv[..., 0].astype(np.float32), uv[..., 1].astype(np.float32),
                           cv2.INTER_LINEAR)
        errors.append(np.abs(warped - ref)[noc].mean())
        zero_errors.append(np.abs(src - ref)[noc].mean())
        uv_wrong, _ = _reproject(depth, k, np.linalg.inv(pose))
        ok = (uv_wrong >= 0).all(-1) & (uv_wrong[..., 0] <= 63) & (uv_wrong[..., 1] <= 47) & noc
        warped = cv2.remap(src, uv_wrong[..., 0].astype(np.float32),
                           uv_wrong[..., 1].astype(np.float32), cv2.INTER_LINEAR)
        wrong_errors.append(np.abs(warped - ref)[ok].mean())
    # measured (seed 5): 1.4-1.8 grey levels (bilinear sampling, plane edges) against 16-22 for
    # zero motion and 25-30 for the inverted pose
    assert max(errors) < 2.5
    assert min(zero_errors) > 3 * max(errors)
    assert min(wrong_errors) > 3 * max(errors)
    assert names == [f'synthetic_train_{i:05d}' for i in range(3)]


def test_dataset_fields_pairs_and_packing(tmp_path):
    write_synthetic_posed_depth(tmp_path, 2, 3, 24, 32, seed=2)
    dataset = PosedDepthDataset(str(tmp_path), split='train', pipeline=PIPELINE)
    infos = [dataset.get_data_info(i) for i in range(len(dataset))]
    assert [f['frame_id'] for f in infos[:3]] == [
        'synthetic_train_00000/0000_0001', 'synthetic_train_00000/0001_0000',
        'synthetic_train_00000/0002_0001']
    scene = random_posed_scene(np.random.default_rng([2, 1]), 24, 32, 3)
    info = infos[5]  # scene 1, reference 2, source 1
    assert info['img_path'].endswith('synthetic_train_00001/0002.png')
    assert info['img_src_path'].endswith('synthetic_train_00001/0001.png')
    assert info['depth_path'].endswith('synthetic_train_00001/0002.npy')
    np.testing.assert_allclose(info['pose'], scene.relative_pose(2, 1), atol=1e-8)
    np.testing.assert_allclose(info['intrinsics'], scene.intrinsics, atol=1e-8)

    packed = dataset[5]
    inputs, sample = packed['inputs'], packed['data_samples']
    assert inputs.shape == (2, 3, 24, 32) and inputs.dtype == torch.uint8
    ref_file = cv2.cvtColor(cv2.imread(info['img_path']), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(inputs[0].permute(1, 2, 0).numpy(), ref_file)
    depth = render_posed_frame(scene, 2)[1]
    assert sample.gt_depth.data.shape == (1, 24, 32)
    np.testing.assert_allclose(sample.gt_depth.data[0].numpy(), depth, rtol=1e-6)
    # valid = within [0.5, 7] (LoadDepth's range); the back wall at ~8 m is outside
    np.testing.assert_array_equal(sample.gt_valid.data[0].numpy(), (depth >= 0.5) & (depth <= 7))
    assert 0.05 < sample.gt_valid.data.float().mean() < 0.95
    meta = sample.metainfo
    assert meta['intrinsics'].shape == (3, 3) and meta['intrinsics'].dtype == np.float32
    assert meta['pose'].shape == (4, 4) and meta['pose'].dtype == np.float32
    np.testing.assert_allclose(meta['pose'], scene.relative_pose(2, 1), atol=1e-6)
    assert meta['frame_id'] == 'synthetic_train_00001/0002_0001' and meta['sample_idx'] == 5

    # neighbours: 4 pairs per 3-frame scene; a scene filter keeps matching folder names
    assert len(PosedDepthDataset(str(tmp_path), pairs='neighbours')) == 8
    assert len(PosedDepthDataset(str(tmp_path), scene_filter='00001')) == 3


def test_camera_to_world_poses_and_png_depth(tmp_path):
    # The same scene as 4x4 camera-to-world poses (ScanNet-style), JPEG frames and 16-bit mm PNG
    # depth: the relative poses are identical and the depth agrees to the millimetre.
    write_synthetic_posed_depth(tmp_path, 1, 3, 24, 32, seed=4, depth_format='png_mm',
                                image_format='jpg')
    scene_dir = tmp_path / 'train' / 'synthetic_train_00000'
    poses = read_poses_txt(scene_dir / 'poses.txt')
    write_poses_txt(scene_dir / 'poses.txt', np.linalg.inv(poses), rows=4)
    dataset = PosedDepthDataset(str(tmp_path), depth_format='png_mm',
                                pose_convention='camera_to_world', pipeline=PIPELINE[:2])
    scene = random_posed_scene(np.random.default_rng([4, 0]), 24, 32, 3)
    np.testing.assert_allclose(dataset.get_data_info(0)['pose'], scene.relative_pose(0, 1),
                               atol=1e-8)
    results = dataset[1]
    assert results['depth_path'].endswith('depth/0001.png')
    assert results['img_path'].endswith('0001.jpg')
    np.testing.assert_allclose(results['gt_depth'], render_posed_frame(scene, 1)[1],
                               atol=0.5e-3 + 1e-6)
    # the encoding by hand: 1500 mm -> 1.5 m, 0 -> unknown
    path = str(tmp_path / 'd.png')
    cv2.imwrite(path, np.array([[1500, 0]], dtype=np.uint16))
    depth, known = read_depth(path, 'png_mm')
    np.testing.assert_allclose(depth, [[1.5, 0.0]])
    np.testing.assert_array_equal(known, [[True, False]])


# ---------------------------------------------------------------------- resize / crop geometry

def _blob_frame(k, point, height, width, sigma=2.5):
    """An image showing one Gaussian blob where ``k`` projects ``point``; its results dict."""
    u, v = (k @ point)[:2] / point[2]
    grid = _grid(height, width)
    blob = 200.0 * np.exp(-((grid[..., 0] - u) ** 2 + (grid[..., 1] - v) ** 2) / (2 * sigma ** 2))
    image = np.repeat(blob[..., None], 3, -1).astype(np.float32)
    depth = np.full((height, width), point[2], dtype=np.float32)
    valid = np.ones((height, width), dtype=bool)
    valid[10, 20] = False  # a hole in the ground truth
    return {'img': image, 'img_src': image.copy(), 'intrinsics': k.copy(), 'pose': np.eye(4),
            'gt_depth': np.where(valid, depth, 0), 'gt_valid': valid,
            'img_shape': (height, width)}


def _centroid(image):
    weight = image[..., 0].astype(np.float64)
    grid = _grid(*weight.shape)
    return (grid * weight[..., None]).sum((0, 1)) / weight.sum()


def _project(k, point):
    return (k @ point)[:2] / point[2]


def test_resize_and_crop_move_the_intrinsics_with_the_pixels():
    # A 3D point projected with the new intrinsics lands on the blob the transformed image shows.
    k = np.array([[80.0, 0.0, 38.3], [0.0, 75.0, 29.6], [0.0, 0.0, 1.0]])
    point = np.array([0.3, -0.2, 2.0])
    results = _blob_frame(k, point, 60, 80)
    np.testing.assert_allclose(_centroid(results['img']), _project(k, point), atol=0.02)

    results = PosedResize(size=(45, 120))(results)  # s_x = 1.5, s_y = 0.75
    assert results['img'].shape == (45, 120, 3) and results['scale_factor'] == (1.5, 0.75)
    k1 = results['intrinsics']
    np.testing.assert_allclose(k1[[0, 1], [0, 1]], [120.0, 56.25])
    np.testing.assert_allclose(k1[:2, 2], [(38.3 + 0.5) * 1.5 - 0.5, (29.6 + 0.5) * 0.75 - 0.5])
    centroid = _centroid(results['img'])
    assert np.abs(centroid - _project(k1, point)).max() < 0.05
    # scaling cx, cy alone (UniMatch's RandomResize) is off by (s - 1) / 2 px: 0.25, -0.125
    k_naive = k.copy()
    k_naive[0] *= 1.5
    k_naive[1] *= 0.75
    assert np.abs(centroid - _project(k_naive, point))[0] > 0.2
    # depth values unchanged; invalid neighbourhood dropped, not blended with the hole's 0
    depth, valid = results['gt_depth'], results['gt_valid']
    np.testing.assert_allclose(depth[valid], 2.0, rtol=1e-6)
    assert (~valid).sum() >= 2 and (depth[~valid] == 0).all()

    np.random.seed(3)
    results = PosedRandomCrop((30, 100))(results)
    y0, x0 = results['crop_offset']
    assert results['img'].shape == (30, 100, 3) and (y0, x0) != (0, 0)
    np.testing.assert_allclose(results['intrinsics'][:2, 2], k1[:2, 2] - [x0, y0])
    assert np.abs(_centroid(results['img']) - _project(results['intrinsics'], point)).max() < 0.05

    np.random.seed(0)
    resize = PosedRandomResize(min_size=(64, 90), prob=1.0, stretch_prob=1.0)
    results = resize(_blob_frame(k, point, 60, 80))
    height, width = results['img'].shape[:2]
    assert height >= 64 and width >= 90
    assert results['scale_factor'] == (width / 80, height / 60)
    assert np.abs(_centroid(results['img']) - _project(results['intrinsics'], point)).max() < 0.05


def test_resize_nearest_depth_and_pose_untouched():
    k = np.array([[50.0, 0.0, 20.0], [0.0, 50.0, 15.0], [0.0, 0.0, 1.0]])
    results = _blob_frame(k, np.array([0.0, 0.0, 3.0]), 30, 40)
    results['gt_depth'][:, 20:] = 6.0  # a depth edge: nearest keeps only 3 and 6
    pose = np.array([[1.0, 0, 0, 0.1], [0, 1, 0, 0.0], [0, 0, 1, 0.2], [0, 0, 0, 1]])
    results['pose'] = pose.copy()
    out = PosedResize(scale=0.5, depth_interpolation='nearest')(results)
    assert set(np.unique(out['gt_depth'][out['gt_valid']])) <= {np.float32(3.0), np.float32(6.0)}
    np.testing.assert_array_equal(out['pose'], pose)
    packed = PackPosedDepthInputs()(out)
    assert packed['inputs'].shape == (2, 3, 15, 20) and packed['inputs'].dtype == torch.float32
    np.testing.assert_allclose(packed['data_samples'].metainfo['intrinsics'][0, 2],
                               (20 + 0.5) * 0.5 - 0.5)


# ---------------------------------------------------------------------------------- bad input

@pytest.fixture
def scene_root(tmp_path):
    write_synthetic_posed_depth(tmp_path, 1, 3, 24, 32, seed=9)
    return tmp_path, tmp_path / 'train' / 'synthetic_train_00000'


def _first(root, **kwargs):
    dataset = PosedDepthDataset(str(root), **kwargs)
    return dataset.get_data_info(0)


def test_missing_pose_or_intrinsics_file(scene_root):
    root, scene = scene_root
    (scene / 'poses.txt').unlink()
    with pytest.raises(DataError, match='pose file not found') as info:
        PosedDepthDataset(str(root))
    assert str(scene / 'poses.txt') in str(info.value)
    write_poses_txt(scene / 'poses.txt', np.tile(np.eye(4), (3, 1, 1)))
    (scene / 'cam.txt').unlink()
    with pytest.raises(DataError, match='intrinsics file not found') as info:
        PosedDepthDataset(str(root))
    assert str(scene / 'cam.txt') in str(info.value)


def test_wrong_number_of_pose_rows(scene_root):
    root, scene = scene_root
    lines = (scene / 'poses.txt').read_text().splitlines()
    (scene / 'poses.txt').write_text('\n'.join(lines[:2]) + '\n')
    with pytest.raises(DataError, match=r'2 pose row\(s\) for 3 frame\(s\)') as info:
        PosedDepthDataset(str(root))
    assert str(scene / 'poses.txt') in str(info.value)
    (scene / 'poses.txt').write_text('\n'.join(lines[:2] + ['1 0 0 0 1 0']) + '\n')
    with pytest.raises(DataError, match='pose row 3 .frame 0002.png.: a pose must have 12'):
        PosedDepthDataset(str(root))


def test_non_invertible_pose(scene_root):
    root, scene = scene_root
    lines = (scene / 'poses.txt').read_text().splitlines()
    lines[1] = ' '.join(['1', '0', '0', '0.5', '1', '0', '0', '0', '0', '0', '0', '1'])
    (scene / 'poses.txt').write_text('\n'.join(lines) + '\n')
    with pytest.raises(DataError, match='pose row 2 .frame 0001.png.: the pose is not '
                                        'invertible') as info:
        PosedDepthDataset(str(root))
    assert str(scene / 'poses.txt') in str(info.value)


@pytest.mark.parametrize('text, message', [
    ('100 0 16\n0 100 12\n', 'intrinsics must be a 3x3 matrix'),
    ('100 0 16 0\n0 100 12 0\n0 0 1 0\n0 0 0 1\n', 'intrinsics must be a 3x3 matrix'),
    ('0 0 16\n0 100 12\n0 0 1\n', 'focal length fx = 0 must be > 0'),
    ('100 0 16\n0 -5 12\n0 0 1\n', 'focal length fy = -5 must be > 0'),
    ('100 0 16\n0 100 12\n0 0 2\n', 'last row 0 0 1'),
])
def test_bad_intrinsics_file(scene_root, text, message):
    root, scene = scene_root
    (scene / 'cam.txt').write_text(text)
    with pytest.raises(DataError, match=message) as info:
        PosedDepthDataset(str(root))
    assert str(scene / 'cam.txt') in str(info.value)


@pytest.mark.parametrize('row, name', [(0, 'cx'), (1, 'cy')])
def test_principal_point_outside_the_image(scene_root, row, name):
    root, scene = scene_root
    k = np.array([[30.0, 0.0, 15.5], [0.0, 30.0, 11.5], [0.0, 0.0, 1.0]])
    k[row, 2] = 40.0 if row == 0 else -3.0  # the image is 32 x 24
    np.savetxt(scene / 'cam.txt', k)
    info = _first(root)
    with pytest.raises(DataError, match=f'principal point {name} = ') as error:
        LoadPosedPair()(info)
    assert str(scene / 'cam.txt') in str(error.value) and info['img_path'] in str(error.value)


def test_pair_of_different_sizes(scene_root):
    root, scene = scene_root
    info = _first(root)
    cv2.imwrite(info['img_src_path'], np.zeros((24, 30, 3), np.uint8))
    with pytest.raises(DataError, match='posed pair of different sizes') as error:
        LoadPosedPair()(info)
    assert info['img_path'] in str(error.value) and info['img_src_path'] in str(error.value)
    assert '32x24' in str(error.value) and '30x24' in str(error.value)


def test_depth_of_another_size_or_missing_or_8_bit(scene_root):
    root, scene = scene_root
    info = _first(root)
    write_depth(info['depth_path'], np.ones((12, 16)))
    results = LoadPosedPair()(info)
    with pytest.raises(DataError, match='depth map is 16x12, its image') as error:
        LoadDepth()(results)
    assert info['depth_path'] in str(error.value) and info['img_path'] in str(error.value)
    # missing depth: the dataset lists the file
    (scene / '0002.npy').unlink()
    with pytest.raises(DataError, match='1 missing depth file') as error:
        PosedDepthDataset(str(root))
    assert str(scene / '0002.npy') in str(error.value)
    # an 8-bit PNG is not millimetres
    path = str(scene / 'depth8.png')
    cv2.imwrite(path, np.ones((4, 4), np.uint8))
    with pytest.raises(DataError, match='16-bit single-channel') as error:
        read_depth(path, 'png_mm')
    assert path in str(error.value)


def test_empty_or_missing_root(tmp_path):
    with pytest.raises(DataError, match='scene folder not found'):
        PosedDepthDataset(str(tmp_path / 'nowhere'))
    (tmp_path / 'train' / 'scene_a').mkdir(parents=True)
    with pytest.raises(DataError, match='no scene folders'):
        PosedDepthDataset(str(tmp_path))
    shutil.rmtree(tmp_path / 'train')
