"""The synthetic segmentation generator: layout, labels, exactness, determinism, dataset reading."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from mmengine.registry import init_default_scope

from perception.datasets.segmentation import CityscapesDataset
from perception.datasets.synthetic.segmentation import (
    CLASS_STYLES,
    SYNTHETIC_SEG_CLASSES,
    render_segmentation_sample,
    synthetic_seg_metainfo,
    write_synthetic_cityscapes,
)
from perception.evaluation.segmentation import SegMetric


def _sample(index: int, **kwargs):
    return render_segmentation_sample(np.random.default_rng([0, 0, index]), 64, 96, **kwargs)


def test_render_shapes_dtypes_and_label_values():
    image, labels = _sample(0, num_classes=5)
    assert image.shape == (64, 96, 3) and image.dtype == np.uint8
    assert labels.shape == (64, 96) and labels.dtype == np.uint8
    values = set(np.unique(labels).tolist())
    assert values <= {0, 1, 2, 3, 4, 255}
    assert 0 in values and 255 in values and len(values - {0, 255}) >= 1
    # Over a few images every class appears; labels never exceed num_classes - 1.
    seen = set()
    for i in range(20):
        seen |= set(np.unique(_sample(i, num_classes=3)[1]).tolist())
    assert seen == {0, 1, 2, 255}


def test_ignore_only_on_class_boundaries():
    _, labels = _sample(3, boundary_ignore=1.0)
    ignore = labels == 255
    assert ignore.any()
    # No ignore at all when asked for none, and the same label layout otherwise.
    _, clean = _sample(3, boundary_ignore=0.0)
    assert not (clean == 255).any()
    assert (clean[~ignore] == labels[~ignore]).all()
    # Ignored pixels of the first map are boundary pixels of the clean map.
    edge = np.zeros_like(ignore)
    edge[:, :-1] |= clean[:, :-1] != clean[:, 1:]
    edge[:-1, :] |= clean[:-1, :] != clean[1:, :]
    assert (edge[ignore]).all()
    # With probability 1 every boundary pixel is ignored; with 0.5 about half of them.
    np.testing.assert_array_equal(ignore, edge)
    _, half = _sample(3, boundary_ignore=0.5)
    assert (half == 255).sum() == pytest.approx(0.5 * edge.sum(), rel=0.2)
    assert (half[half != 255] == clean[half != 255]).all()


def test_masks_are_exact_regions_of_the_class_textures():
    # One shape per image, so each class region is a single instance. A flat blue instance
    # (class 4) is its colour plus amplitude-6 noise clipped to +-1 (tint <= 1.2): every pixel
    # of the region lies within 7.2 (+0.5 rounding) grey levels of the instance colour, so a
    # single background pixel labelled 4 (or a class-4 pixel labelled background) would show.
    flat_seen = speckle_seen = 0
    for i in range(40):
        image, labels = _sample(i, num_classes=5, num_shapes=(1, 1), boundary_ignore=0.0)
        classes = set(np.unique(labels).tolist()) - {0}
        if not classes:
            continue
        (cls,) = classes
        region = image[labels == cls].astype(np.float64)
        if cls == 4:
            centre = (region.max(0) + region.min(0)) / 2
            assert np.abs(region - centre).max() <= 8.0, i
            assert np.abs(centre - CLASS_STYLES[4].colour).max() <= 30 + 8
            # Just outside the region (right and left neighbours) the background differs.
            mask = labels == cls
            outside = (np.roll(mask, 1, axis=1) | np.roll(mask, -1, axis=1)) & ~mask
            outside[:, [0, -1]] = False
            if outside.any():
                far = np.abs(image[outside].astype(np.float64) - centre).max(1) > 8.0
                assert far.mean() > 0.9, i
            flat_seen += 1
        elif cls == 3 and len(region) >= 50:
            # Speckle: amplitude 55 * U(-1, 1) per pixel, std ~32 around the colour.
            assert region.std(0).mean() > 20.0, i
            speckle_seen += 1
    assert flat_seen >= 3 and speckle_seen >= 3


def test_deterministic_and_split_dependent(tmp_path):
    a = write_synthetic_cityscapes(tmp_path / 'a', 3, 2, 32, 48, num_classes=4, seed=7)
    b = write_synthetic_cityscapes(tmp_path / 'b', 3, 2, 32, 48, num_classes=4, seed=7)
    c = write_synthetic_cityscapes(tmp_path / 'c', 3, 2, 32, 48, num_classes=4, seed=8)
    for split in ('train', 'val'):
        for pa, pb, pc in zip(a[split], b[split], c[split]):
            assert pa.read_bytes() == pb.read_bytes()
            assert pa.read_bytes() != pc.read_bytes()
    # Train image i and val image i differ (split is part of the seed).
    assert a['train'][0].read_bytes() != a['val'][0].read_bytes()
    # Writing again reproduces the same files, and one sample equals the pure function's output.
    image, labels = render_segmentation_sample(np.random.default_rng([7, 1, 1]), 32, 48,
                                               num_classes=4)
    on_disk = cv2.cvtColor(cv2.imread(str(a['val'][1])), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(on_disk, image)
    seg = str(a['val'][1]).replace('leftImg8bit', 'gtFine', 1).replace(
        '_leftImg8bit.png', '_gtFine_labelTrainIds.png')
    np.testing.assert_array_equal(cv2.imread(seg, cv2.IMREAD_UNCHANGED), labels)


def test_layout_on_disk(tmp_path):
    written = write_synthetic_cityscapes(tmp_path, 3, 2, 32, 48, num_classes=3, seed=0)
    names = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob('*.png'))
    assert names == sorted([
        'gtFine/train/synthtown/synthtown_000000_000019_gtFine_labelTrainIds.png',
        'gtFine/train/synthtown/synthtown_000002_000019_gtFine_labelTrainIds.png',
        'gtFine/train/synthville/synthville_000001_000019_gtFine_labelTrainIds.png',
        'gtFine/val/synthtown/synthtown_000000_000019_gtFine_labelTrainIds.png',
        'gtFine/val/synthville/synthville_000001_000019_gtFine_labelTrainIds.png',
        'leftImg8bit/train/synthtown/synthtown_000000_000019_leftImg8bit.png',
        'leftImg8bit/train/synthtown/synthtown_000002_000019_leftImg8bit.png',
        'leftImg8bit/train/synthville/synthville_000001_000019_leftImg8bit.png',
        'leftImg8bit/val/synthtown/synthtown_000000_000019_leftImg8bit.png',
        'leftImg8bit/val/synthville/synthville_000001_000019_leftImg8bit.png',
    ])
    assert [p.name for p in written['val']] == ['synthtown_000000_000019_leftImg8bit.png',
                                                'synthville_000001_000019_leftImg8bit.png']
    # No temporary files are left behind by the atomic writes.
    assert not [p for p in tmp_path.rglob('*') if p.name.startswith('.')]
    label = cv2.imread(str(tmp_path / names[0]), cv2.IMREAD_UNCHANGED)
    assert label.ndim == 2 and label.dtype == np.uint8 and label.shape == (32, 48)


def test_cityscapes_dataset_reads_it_with_the_synthetic_classes(tmp_path):
    write_synthetic_cityscapes(tmp_path, 4, 2, 32, 48, num_classes=5, seed=0)
    init_default_scope('perception')
    pipeline = [dict(type='LoadSegImage'), dict(type='LoadSegAnnotations'),
                dict(type='PackSegInputs')]
    dataset = CityscapesDataset(str(tmp_path), split='train', pipeline=pipeline,
                                metainfo=synthetic_seg_metainfo(5))
    assert len(dataset) == 4
    assert dataset.metainfo['classes'] == SYNTHETIC_SEG_CLASSES[:5]
    assert len(dataset.metainfo['palette']) == 5
    item = dataset[0]
    assert tuple(item['inputs'].shape) == (3, 32, 48)
    gt = item['data_samples'].gt_sem_seg.data
    image, labels = render_segmentation_sample(np.random.default_rng([0, 0, 0]), 32, 48, 5)
    np.testing.assert_array_equal(gt[0].numpy(), labels)
    np.testing.assert_array_equal(item['inputs'].permute(1, 2, 0).numpy(), image)
    # SegMetric takes its classes from the dataset: a perfect prediction scores 100.
    metric = SegMetric()
    metric.dataset_meta = dataset.metainfo
    sample = {'gt_sem_seg': gt, 'pred_sem_seg': np.where(gt == 255, 0, gt)}
    metric.process({}, [sample])
    scores = metric.compute_metrics(metric.results)
    present = set(np.unique(labels).tolist()) - {255}
    assert scores['aAcc'] == 100.0
    assert all(scores[f'IoU.{SYNTHETIC_SEG_CLASSES[k]}'] == 100.0 for k in present)
    assert len(CityscapesDataset(str(tmp_path), split='val', metainfo=synthetic_seg_metainfo(5),
                                 pipeline=pipeline)) == 2


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match='num_classes'):
        synthetic_seg_metainfo(len(CLASS_STYLES) + 1)
    with pytest.raises(ValueError, match='num_classes'):
        write_synthetic_cityscapes(tmp_path, 1, 1, 32, 32, num_classes=1)
    with pytest.raises(ValueError, match='at least 8x8'):
        render_segmentation_sample(np.random.default_rng(0), 4, 32)
    with pytest.raises(ValueError, match='boundary_ignore'):
        render_segmentation_sample(np.random.default_rng(0), 32, 32, boundary_ignore=2.0)
