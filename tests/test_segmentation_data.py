"""Segmentation data: Cityscapes / ADE20K scanning, seg transforms, the Cityscapes converter."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.optim import OptimWrapper
from torch import nn

from perception.datasets.converters.cityscapes_converter import (
    create_cityscapes_trainids,
    polygons_to_train_ids,
)
from perception.datasets.segmentation import ADE20KDataset, CityscapesDataset
from perception.datasets.transforms.segmentation import (
    LoadSegAnnotations,
    LoadSegImage,
    PackSegInputs,
    PhotoMetricDistortion,
    RandomCrop,
    RandomFlip,
    RandomResize,
    crop_with_cat_max_ratio,
    reduce_zero_label,
    rescale_size,
)
from perception.engine.errors import DataError
from perception.models.segmentation import EncoderDecoder, SegFormerHead
from perception.registry import DATASETS, TRANSFORMS


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def make_cityscapes(root: Path, with_labels: bool = True) -> dict[str, np.ndarray]:
    """Three train frames in two cities, 8x12 images, labels 0..18 and 255."""
    rng = np.random.default_rng(0)
    labels = {}
    for city, frame in (('zurich', 'zurich_000001_000019'), ('aachen', 'aachen_000002_000019'),
                        ('aachen', 'aachen_000000_000019')):
        write_png(root / 'leftImg8bit/train' / city / f'{frame}_leftImg8bit.png',
                  rng.integers(0, 256, (8, 12, 3), dtype=np.uint8))
        lab = rng.choice(np.array([*range(19), 255], dtype=np.uint8), size=(8, 12))
        labels[frame] = lab
        if with_labels:
            write_png(root / 'gtFine/train' / city / f'{frame}_gtFine_labelTrainIds.png', lab)
    return labels


def test_cityscapes_scanning(tmp_path):
    labels = make_cityscapes(tmp_path)
    ds = CityscapesDataset(str(tmp_path), split='train')
    assert len(ds) == 3
    # sorted by path: aachen before zurich, frame 000000 before 000002
    assert [ds.get_data_info(i)['frame_id'] for i in range(3)] == [
        'aachen_000000_000019', 'aachen_000002_000019', 'zurich_000001_000019']
    assert len(ds.metainfo['classes']) == 19 and ds.metainfo['classes'][13] == 'car'
    assert ds.metainfo['palette'][0] == [128, 64, 128]
    pipeline = [LoadSegImage(), LoadSegAnnotations(), PackSegInputs()]
    ds = CityscapesDataset(str(tmp_path), split='train', pipeline=pipeline)
    out = ds[2]
    assert out['inputs'].shape == (3, 8, 12) and out['inputs'].dtype == torch.uint8
    gt = out['data_samples'].gt_sem_seg.data
    assert gt.shape == (1, 8, 12) and gt.dtype == torch.int64
    np.testing.assert_array_equal(gt[0].numpy(), labels['zurich_000001_000019'])
    assert out['data_samples'].metainfo['ori_shape'] == (8, 12)
    assert DATASETS.get('CityscapesDataset') is CityscapesDataset


def test_cityscapes_errors(tmp_path):
    with pytest.raises(DataError, match='no images'):
        (tmp_path / 'empty/leftImg8bit/train').mkdir(parents=True)
        CityscapesDataset(str(tmp_path / 'empty'))
    with pytest.raises(DataError, match='image folder not found'):
        CityscapesDataset(str(tmp_path / 'nothing'))
    make_cityscapes(tmp_path / 'nolabels', with_labels=False)
    with pytest.raises(DataError, match=r'3 of 3 images have no label.*create_data.py cityscapes'):
        CityscapesDataset(str(tmp_path / 'nolabels'))


def test_ade20k_reduce_zero_label(tmp_path):
    root = tmp_path / 'ADEChallengeData2016'
    lab = np.array([[0, 1, 2, 150], [255, 7, 0, 1]], dtype=np.uint8)
    for name in ('ADE_val_00000002', 'ADE_val_00000001'):
        img = np.full((2, 4, 3), 50, np.uint8)
        img[..., 2] = 200  # BGR on disk: red channel 200 -> RGB (200, 50, 50)
        write_png(root / 'images/validation' / f'{name}.jpg', img)
        write_png(root / 'annotations/validation' / f'{name}.png', lab)
    ds = ADE20KDataset(str(root), split='validation',
                       pipeline=[LoadSegImage(), LoadSegAnnotations()])
    assert len(ds) == 2 and len(ds.metainfo['classes']) == 150
    assert ds.metainfo['classes'][0] == 'wall' and ds.metainfo['classes'][149] == 'flag'
    assert ds.get_data_info(0)['frame_id'] == 'ADE_val_00000001'
    out = ds[0]
    expected = np.array([[255, 0, 1, 149], [255, 6, 255, 0]], dtype=np.uint8)
    np.testing.assert_array_equal(out['gt_seg_map'], expected)
    assert abs(int(out['img'][0, 0, 0]) - 200) <= 3 and abs(int(out['img'][0, 0, 2]) - 50) <= 3
    # An explicit False overrides the dataset's flag.
    raw = LoadSegAnnotations(reduce_zero_label=False)(ds.get_data_info(0))
    np.testing.assert_array_equal(raw['gt_seg_map'], lab)
    np.testing.assert_array_equal(reduce_zero_label(lab), expected)


def test_cat_max_ratio_rule():
    # Class 0 in columns 0..89, class 1 in 90..99; 10x20 crops start at x1 in 0..80. A crop has
    # two classes with the larger < 75% only for x1 in 76..80 (5 of 81 positions).
    labels = np.zeros((10, 100), np.uint8)
    labels[:, 90:] = 1
    np.random.seed(0)
    trials = 2000
    ok_rule = sum(crop_with_cat_max_ratio(labels, (10, 20), 0.75)[2] >= 76 for _ in range(trials))
    ok_plain = sum(crop_with_cat_max_ratio(labels, (10, 20), 1.0)[2] >= 76 for _ in range(trials))
    # One draw plus up to 10 redraws: P(good) = 1 - (76/81)^11 = 0.504; without the rule 5/81.
    assert abs(ok_rule / trials - (1 - (76 / 81) ** 11)) < 0.04
    assert abs(ok_plain / trials - 5 / 81) < 0.02
    # Ignored pixels do not count: class 0 plus 255 is a single class, so no crop passes and
    # the 11th draw is used; the window still has the crop size.
    ignore = np.zeros((10, 100), np.uint8)
    ignore[:, 50:] = 255
    y1, y2, x1, x2 = crop_with_cat_max_ratio(ignore, (10, 20))
    assert (y2 - y1, x2 - x1) == (10, 20)
    # RandomCrop crops image and label with the same window.
    img = np.stack(np.meshgrid(np.arange(100), np.arange(10)), -1).astype(np.uint8)
    img = np.concatenate([img, np.zeros((10, 100, 1), np.uint8)], -1)
    out = RandomCrop((6, 20))({'img': img, 'gt_seg_map': labels, 'seg_fields': ['gt_seg_map']})
    y1, y2, x1, x2 = out['crop_bbox']
    assert out['img'].shape == (6, 20, 3) and out['img_shape'] == (6, 20)
    assert out['img'][0, 0, 0] == x1 and out['img'][0, 0, 1] == y1
    np.testing.assert_array_equal(out['gt_seg_map'], labels[y1:y2, x1:x2])


def test_resize_keeps_labels_nearest():
    assert rescale_size(500, 375, (2048, 512)) == (683, 512)
    assert rescale_size(2048, 1024, (1024, 512)) == (1024, 512)
    rng = np.random.default_rng(1)
    labels = rng.choice(np.array([0, 3, 7, 255], np.uint8), size=(16, 24))
    img = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    # Exactly twice the size: nearest neighbour repeats every label into a 2x2 block.
    out = RandomResize(scale=(48, 32), ratio_range=None)(
        {'img': img.copy(), 'gt_seg_map': labels.copy()})
    assert out['img'].shape == (32, 48, 3) and out['scale_factor'] == (2.0, 2.0)
    np.testing.assert_array_equal(out['gt_seg_map'], labels.repeat(2, 0).repeat(2, 1))
    np.random.seed(3)
    for _ in range(10):
        out = RandomResize(scale=(48, 32), ratio_range=(0.5, 2.0))(
            {'img': img.copy(), 'gt_seg_map': labels.copy()})
        h, w = out['gt_seg_map'].shape
        assert out['img'].shape[:2] == (h, w) == out['img_shape']
        assert abs(w / h - 1.5) < 0.1  # keep_ratio
        assert 8 <= h <= 64
        assert set(np.unique(out['gt_seg_map'])) <= {0, 3, 7, 255}
    # keep_ratio=False resizes to the (w, h) target exactly
    out = RandomResize(scale=(10, 30), ratio_range=None, keep_ratio=False)(
        {'img': img.copy(), 'gt_seg_map': labels.copy()})
    assert out['gt_seg_map'].shape == (30, 10)


def test_flip_consistency():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    labels = (img[..., 0] % 19).astype(np.uint8)  # label is a function of the pixel
    out = RandomFlip(prob=1.0)({'img': img.copy(), 'gt_seg_map': labels.copy()})
    assert out['flip'] and out['flip_direction'] == 'horizontal'
    np.testing.assert_array_equal(out['img'], img[:, ::-1])
    np.testing.assert_array_equal(out['gt_seg_map'], out['img'][..., 0] % 19)
    out = RandomFlip(prob=0.0)({'img': img.copy(), 'gt_seg_map': labels.copy()})
    assert not out['flip']
    np.testing.assert_array_equal(out['img'], img)
    out = RandomFlip(prob=1.0, direction='vertical')({'img': img.copy(),
                                                      'gt_seg_map': labels.copy()})
    np.testing.assert_array_equal(out['gt_seg_map'], labels[::-1])
    np.random.seed(0)
    flips = [RandomFlip(0.5)({'img': img, 'gt_seg_map': labels})['flip'] for _ in range(1000)]
    assert 450 < sum(flips) < 550


def _expected_gray(value: int, seed: int) -> int:
    """mmseg's draw order on a gray pixel: saturation and hue leave gray unchanged."""
    rs = np.random.RandomState(seed)
    v = float(value)

    def convert(v, alpha=1.0, beta=0.0):
        return float(np.uint8(np.clip(np.float32(v) * np.float32(alpha) + np.float32(beta), 0,
                                      255)))

    if rs.randint(2):
        v = convert(v, beta=rs.uniform(-32, 32))
    mode = rs.randint(2)
    if mode == 1 and rs.randint(2):
        v = convert(v, alpha=rs.uniform(0.5, 1.5))
    if rs.randint(2):
        rs.uniform(0.5, 1.5)
    if rs.randint(2):
        rs.randint(-18, 18)
    if mode == 0 and rs.randint(2):
        v = convert(v, alpha=rs.uniform(0.5, 1.5))
    return int(v)


def test_photometric_leaves_labels_and_follows_mmseg_order():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 19, (6, 6)).astype(np.uint8)
    gray = np.full((6, 6, 3), 100, np.uint8)
    changed = 0
    for seed in range(20):
        np.random.seed(seed)
        seg = labels.copy()
        out = PhotoMetricDistortion()({'img': gray.copy(), 'gt_seg_map': seg})
        assert out['gt_seg_map'] is seg
        np.testing.assert_array_equal(seg, labels)
        assert out['img'].dtype == np.uint8
        assert (out['img'] == _expected_gray(100, seed)).all()
        changed += int(out['img'][0, 0, 0] != 100)
    assert changed >= 10
    # A coloured image: hue and saturation act, labels still untouched.
    color = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    np.random.seed(0)
    out = PhotoMetricDistortion(brightness_delta=0.0, contrast_range=(1.0, 1.0))(
        {'img': color.copy(), 'gt_seg_map': labels.copy()})
    np.testing.assert_array_equal(out['gt_seg_map'], labels)


def road_and_car() -> dict:
    return {'imgHeight': 40, 'imgWidth': 60, 'objects': [
        {'label': 'road', 'polygon': [[0, 20], [59, 20], [59, 39], [0, 39]]},
        {'label': 'car', 'polygon': [[10, 15], [29, 15], [29, 25], [10, 25]]},
        {'label': 'license plate', 'polygon': [[12, 22], [14, 22], [14, 23], [12, 23]]},
        {'label': 'sky', 'deleted': 1, 'polygon': [[0, 0], [59, 0], [59, 39], [0, 39]]},
        {'label': 'cargroup', 'polygon': [[50, 30], [55, 30], [55, 35], [50, 35]]},
    ]}


def expected_road_and_car() -> np.ndarray:
    expected = np.full((40, 60), 255, np.uint8)
    expected[20:40, :] = 0          # road, rows 20..39 (fillPoly includes the boundary)
    expected[15:26, 10:30] = 13     # car drawn later, over road and unlabeled
    expected[30:36, 50:56] = 13     # 'cargroup' -> car
    return expected


def test_polygon_rasterisation():
    out = polygons_to_train_ids(road_and_car())
    np.testing.assert_array_equal(out, expected_road_and_car())
    drawn_first = road_and_car()
    drawn_first['objects'] = drawn_first['objects'][1::-1]  # car first: road covers it
    assert polygons_to_train_ids(drawn_first)[22, 15] == 0
    assert polygons_to_train_ids(drawn_first)[16, 15] == 13
    with pytest.raises(DataError, match=r'objects\[0\].*unknown Cityscapes label'):
        polygons_to_train_ids({'imgHeight': 2, 'imgWidth': 2,
                               'objects': [{'label': 'spaceship', 'polygon': [[0, 0]]}]})


def test_converter_and_dataset(tmp_path):
    city = tmp_path / 'gtFine/val/lindau'
    city.mkdir(parents=True)
    for name in ('lindau_000000_000019', 'lindau_000001_000019'):
        (city / f'{name}_gtFine_polygons.json').write_text(json.dumps(road_and_car()))
        write_png(tmp_path / 'leftImg8bit/val/lindau' / f'{name}_leftImg8bit.png',
                  np.zeros((40, 60, 3), np.uint8))
    written = create_cityscapes_trainids(tmp_path, workers=1)
    assert [p.name for p in written] == ['lindau_000000_000019_gtFine_labelTrainIds.png',
                                         'lindau_000001_000019_gtFine_labelTrainIds.png']
    png = cv2.imread(str(written[0]), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(png, expected_road_and_car())
    with pytest.raises(DataError, match='already exist.*--force'):
        create_cityscapes_trainids(tmp_path, workers=1)
    written[0].write_bytes(b'stale')
    create_cityscapes_trainids(tmp_path, workers=2, force=True)
    np.testing.assert_array_equal(cv2.imread(str(written[0]), cv2.IMREAD_UNCHANGED),
                                  expected_road_and_car())
    assert not list(city.glob('.*tmp'))
    ds = CityscapesDataset(str(tmp_path), split='val',
                           pipeline=[LoadSegImage(), LoadSegAnnotations()])
    np.testing.assert_array_equal(ds[1]['gt_seg_map'], expected_road_and_car())
    with pytest.raises(DataError, match='no gtFine'):
        create_cityscapes_trainids(tmp_path / 'missing')


class TinyBackbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.out_channels = [8]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (torch.relu(self.conv(x)),)


def test_pipeline_into_train_step(tmp_path):
    make_cityscapes(tmp_path)
    pipeline = [dict(type='LoadSegImage'), dict(type='LoadSegAnnotations'),
                dict(type='RandomResize', scale=(24, 16), ratio_range=(0.5, 2.0)),
                dict(type='RandomCrop', crop_size=(8, 8), cat_max_ratio=0.75),
                dict(type='RandomFlip', prob=0.5), dict(type='PhotoMetricDistortion'),
                dict(type='PackSegInputs')]
    ds = CityscapesDataset(str(tmp_path), pipeline=[TRANSFORMS.build(cfg) for cfg in pipeline])
    np.random.seed(0)
    torch.manual_seed(0)
    batch = pseudo_collate([ds[i] for i in range(3)])
    assert all(x.shape[0] == 3 and x.shape[1] <= 8 and x.shape[2] <= 8 for x in batch['inputs'])
    model = EncoderDecoder(TinyBackbone(), SegFormerHead([8], channels=8, in_index=(0,),
                                                         num_classes=19))
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    log_vars = model.train_step(batch, optim)
    assert torch.isfinite(torch.as_tensor(log_vars['loss']))
    # ~uniform logits at init: cross-entropy near ln(19) = 2.94
    assert 2.0 < float(torch.as_tensor(log_vars['decode.loss_ce']).detach()) < 4.0
