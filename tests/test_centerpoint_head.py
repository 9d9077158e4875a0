"""CenterPoint head: Gaussian radius and heatmaps, targets, losses, decoding round trip."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from perception.models.lidar3d.centerpoint_head import (
    CenterHead,
    center_targets,
    decode_task,
    direction_bin,
    draw_gaussians,
    gaussian_focal_loss,
    gaussian_radius,
    yaw_from_axis_direction,
)

VOXEL = [0.32, 0.32, 4.0]
RANGE = [0.0, -39.68, -3.0, 69.12, 39.68, 1.0]  # 216 x 248 pillars -> 108 x 124 map (factor 2)


def test_gaussian_radius_hand_computed():
    # 10 x 10 cells, min_overlap 0.1 (CornerNet's three cases, mmdetection3d's arithmetic):
    # r1 = (20 + sqrt(400 - 4 * 81.818)) / 2 = 14.264;
    # r2 = (40 + sqrt(1600 - 16 * 90)) / 2 = 26.325;
    # r3 = (-4 + sqrt(16 + 4 * 0.4 * 90)) / 2 = (-4 + sqrt(160)) / 2 = 4.3246 -> the smallest.
    r = gaussian_radius(torch.tensor([10.0, 2.0]), torch.tensor([10.0, 6.0]), 0.1)
    assert r[0].item() == pytest.approx((-4 + math.sqrt(160)) / 2, abs=1e-5)
    # 2 x 6: r3 = (-1.6 + sqrt(2.56 + 1.6 * 10.8)) / 2 = 1.4340.
    assert r[1].item() == pytest.approx((-1.6 + math.sqrt(2.56 + 1.6 * 10.8)) / 2, abs=1e-5)


def _draw_reference(heatmap: np.ndarray, center: tuple[int, int], radius: int) -> None:
    """mmdetection3d's draw_heatmap_gaussian, one box (a loop over boxes in the test only)."""
    d = 2 * radius + 1
    sigma = d / 6
    y, x = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    g = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    g[g < np.finfo(g.dtype).eps * g.max()] = 0
    cx, cy = center
    h, w = heatmap.shape
    left, right = min(cx, radius), min(w - cx, radius + 1)
    top, bottom = min(cy, radius), min(h - cy, radius + 1)
    window = heatmap[cy - top:cy + bottom, cx - left:cx + right]
    patch = g[radius - top:radius + bottom, radius - left:radius + right].astype(np.float32)
    np.maximum(window, patch, out=window)


def test_draw_gaussians_matches_box_by_box_reference():
    centers = torch.tensor([[5, 5], [7, 6], [0, 9], [19, 0], [10, 3]])
    radii = torch.tensor([2, 3, 4, 2, 9])
    labels = torch.tensor([0, 0, 1, 1, 0])
    out = draw_gaussians(torch.zeros(2, 12, 20), centers, radii, labels)
    ref = np.zeros((2, 12, 20), np.float32)
    for (cx, cy), r, c in zip(centers.tolist(), radii.tolist(), labels.tolist()):
        _draw_reference(ref[c], (cx, cy), r)
    np.testing.assert_array_equal(out.numpy(), ref)
    # Hand value: a neighbour of a radius-2 peak, sigma = 5 / 6: exp(-1 / (2 * 25 / 36)).
    single = draw_gaussians(torch.zeros(1, 12, 20), centers[:1], radii[:1], labels[:1])
    assert single[0, 5, 5] == 1.0
    assert single[0, 5, 6].item() == pytest.approx(math.exp(-0.72), rel=1e-6)
    assert single[0, 5, 8] == 0.0  # outside the (2r + 1)^2 window


def test_center_targets_hand_computed_box():
    # Bottom-centre box -> gravity centre z = -1.6 + 1.5 / 2.
    box = torch.tensor([[10.3, 0.5, -0.85, 4.0, 1.6, 1.5, 0.3]])
    heatmap, anno, ind, mask = center_targets(box, torch.tensor([1]), 3, (108, 124), VOXEL,
                                              RANGE, 2, max_objs=4)
    # x: 10.3 / 0.64 = 16.09375; y: (0.5 + 39.68) / 0.64 = 62.78125 -> peak cell (16, 62).
    assert heatmap.shape == (3, 124, 108)
    assert heatmap[1, 62, 16] == 1.0 and heatmap.eq(1).sum() == 1
    assert mask.tolist() == [1, 0, 0, 0] and ind[0].item() == 62 * 108 + 16
    # l, w = 6.25, 2.5 cells: radius int(r3) = 1 -> min_radius 2 (a 5 x 5 window).
    assert (heatmap[1] > 0).sum() == 25
    expected = [0.09375, 0.78125, -0.85, math.log(4.0), math.log(1.6), math.log(1.5),
                math.sin(0.3), math.cos(0.3)]
    np.testing.assert_allclose(anno[0].numpy(), expected, atol=1e-5)
    assert anno[1:].abs().sum() == 0


def test_center_targets_drops_boxes_off_the_map_and_past_max_objs():
    boxes = torch.tensor([[80.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0],   # x beyond the map
                          [10.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0],
                          [20.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0]])
    heatmap, anno, ind, mask = center_targets(boxes, torch.zeros(3, dtype=torch.long), 1,
                                              (108, 124), VOXEL, RANGE, 2, max_objs=2)
    assert mask.tolist() == [0, 1]  # box 0 off the map, box 2 past max_objs
    assert heatmap.eq(1).sum() == 1 and anno[0].abs().sum() == 0


def test_gaussian_focal_loss_hand_values():
    pred = torch.tensor([0.5, 0.5, 0.2])
    target = torch.tensor([1.0, 0.5, 0.0])
    loss = gaussian_focal_loss(pred, target)
    # pos: -log(0.5) (1 - 0.5)^2; neg: -log(0.5) 0.5^2 (1 - 0.5)^4; -log(0.8) 0.2^2.
    expected = [math.log(2) * 0.25, math.log(2) * 0.25 * 0.0625, -math.log(0.8) * 0.04]
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5)


def _head(yaw_encoding: str = 'sincos', **test_cfg) -> CenterHead:
    heads = dict(reg=(2, 2), height=(1, 2), dim=(3, 2), rot=(2, 2))
    if yaw_encoding == 'axis_direction':
        heads['dir'] = (1, 2)
    return CenterHead(
        16, [dict(num_class=1, class_names=['Car']),
             dict(num_class=2, class_names=['Pedestrian', 'Cyclist'])],
        heads, VOXEL, RANGE, 2, share_conv_channel=8, head_conv=8, yaw_encoding=yaw_encoding,
        dir_offset=-math.pi / 4, train_cfg=dict(max_objs=20),
        test_cfg=dict(score_threshold=0.1, nms_thr=0.1, max_pool_nms=True,
                      post_center_limit_range=[-10, -50, -10, 80, 50, 10], **test_cfg))


GT_BOXES = torch.tensor([[10.3, 0.5, -1.6, 4.0, 1.6, 1.5, 0.3],
                         [30.71, -12.2, -1.7, 3.9, 1.7, 1.6, -2.9],
                         [15.2, 8.3, -1.5, 0.8, 0.6, 1.7, 1.2],
                         [22.9, 3.1, -1.6, 1.8, 0.6, 1.7, -0.7],
                         [45.0, 20.0, -1.4, 4.4, 1.8, 1.5, 3.0]])
GT_LABELS = torch.tensor([0, 0, 1, 2, 0])


def _perfect_outputs(head: CenterHead, boxes: torch.Tensor, labels: torch.Tensor) -> list[dict]:
    """Raw maps that hold exactly the targets: heatmap logits of the Gaussians, regressions at
    each box's peak cell."""
    out = []
    width, height = head.feature_size
    for heatmap, anno, ind, mask in head.get_targets([boxes], [labels]):
        logits = torch.logit(heatmap.clamp(1e-6, 1 - 1e-6))
        maps = torch.zeros(1, anno.shape[-1], height * width)
        rows = anno[0][mask[0].bool()]
        maps[0, :, ind[0][mask[0].bool()]] = rows.T
        maps = maps.view(1, -1, height, width)
        out.append({'heatmap': logits, 'reg': maps[:, :2], 'height': maps[:, 2:3],
                    'dim': maps[:, 3:6], 'rot': maps[:, 6:8]})
        if head.yaw_encoding == 'axis_direction':  # the bin column -> a confident logit
            out[-1]['dir'] = torch.where(maps[:, 8:9] > 0.5, 3.0, -3.0)
    return out


@pytest.mark.parametrize('yaw_encoding', ['sincos', 'axis_direction'])
@pytest.mark.parametrize('nms_type', ['rotate', 'circle'])
def test_targets_decode_round_trip(nms_type, yaw_encoding):
    head = _head(yaw_encoding, nms_type=nms_type, min_radius=[1.0, 0.5])
    outs = _perfect_outputs(head, GT_BOXES, GT_LABELS)
    det = head.predict_by_feat(outs)[0]
    assert len(det['bboxes']) == len(GT_BOXES)
    order = torch.argsort(det['bboxes'][:, 0])
    expected = GT_BOXES[torch.argsort(GT_BOXES[:, 0])]
    torch.testing.assert_close(det['bboxes'][order], expected, atol=1e-4, rtol=0)
    assert det['labels'][order].tolist() == GT_LABELS[torch.argsort(GT_BOXES[:, 0])].tolist()
    assert torch.allclose(det['scores'], torch.ones(5), atol=1e-5)


def test_losses_zero_for_perfect_regression_and_hand_value():
    head = _head()
    outs = _perfect_outputs(head, GT_BOXES, GT_LABELS)
    losses = head.loss_by_feat(outs, [GT_BOXES], [GT_LABELS])
    assert set(losses) == {'task0.loss_heatmap', 'task0.loss_bbox', 'task1.loss_heatmap',
                           'task1.loss_bbox'}
    assert losses['task0.loss_bbox'].item() == pytest.approx(0.0, abs=1e-6)
    assert losses['task1.loss_bbox'].item() == pytest.approx(0.0, abs=1e-6)
    # The heatmap loss of a perfect prediction is not 0 (Gaussian cells count as weighted
    # negatives) but below that of a prediction shifted by one logit.
    shifted = [{**o, 'heatmap': o['heatmap'] + 1.0} for o in outs]
    worse = head.loss_by_feat(shifted, [GT_BOXES], [GT_LABELS])
    assert 0 < losses['task0.loss_heatmap'].item() < worse['task0.loss_heatmap'].item()
    # One box of task 1 off by 1 in its height: 0.25 * 1 / (2 boxes + 1e-4).
    cell = head.get_targets([GT_BOXES], [GT_LABELS])[1][2][0, 0]
    outs[1]['height'].view(-1)[cell] += 1.0
    losses = head.loss_by_feat(outs, [GT_BOXES], [GT_LABELS])
    assert losses['task1.loss_bbox'].item() == pytest.approx(0.25 / 2.0001, rel=1e-5)


def test_losses_without_boxes_are_finite_and_bbox_zero():
    head = _head()
    torch.manual_seed(0)
    outs = head([torch.randn(2, 16, 124, 108)])
    empty = torch.zeros((0, 7))
    losses = head.loss_by_feat(outs, [empty, empty], [torch.zeros(0, dtype=torch.long)] * 2)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses['task0.loss_bbox'].item() == 0.0
    # Every cell is a negative: the heatmap loss is the sum of -log(1 - p) p^2 (no positive).
    p = outs[0]['heatmap'].sigmoid().clamp(1e-4, 1 - 1e-4)
    expected = (-(1 - p + 1e-12).log() * p ** 2).sum()
    assert losses['task0.loss_heatmap'].item() == pytest.approx(expected.item(), rel=1e-5)
    sum(losses.values()).backward()


def test_direction_bins_hand_values_and_round_trip():
    # SECOND's bin floor(((yaw - off) mod 2 pi) / pi) with off = -pi/4: the boundaries sit at
    # -pi/4 and 3 pi/4, away from the lanes' headings 0 and pi.
    yaw = torch.tensor([0.0, math.pi, math.pi / 2, -math.pi / 2, -0.7, 2.4, -3.0])
    assert direction_bin(yaw, -math.pi / 4).tolist() == [0, 1, 0, 1, 0, 1, 1]
    torch.manual_seed(0)
    yaw = (torch.rand(10000, dtype=torch.float64) * 4 - 2) * math.pi
    for offset in (0.0, -math.pi / 4, 1.0):
        second = direction_bin(yaw, offset) > 0.5
        back = yaw_from_axis_direction(torch.sin(2 * yaw), torch.cos(2 * yaw), second, offset)
        assert ((back - yaw + math.pi) % (2 * math.pi) - math.pi).abs().max() < 1e-12
        assert back.min() >= -math.pi and back.max() < math.pi
        # The other bin is the same axis turned by pi.
        other = yaw_from_axis_direction(torch.sin(2 * yaw), torch.cos(2 * yaw), ~second, offset)
        assert ((other - yaw) % (2 * math.pi) - math.pi).abs().max() < 1e-12


def test_axis_direction_targets_and_losses():
    head = _head('axis_direction')
    heatmap, anno, ind, mask = head.get_targets([GT_BOXES], [GT_LABELS])[0]
    rows = anno[0][mask[0].bool()]
    cars = GT_BOXES[GT_LABELS == 0]
    torch.testing.assert_close(rows[:, 6], torch.sin(2 * cars[:, 6]))
    torch.testing.assert_close(rows[:, 7], torch.cos(2 * cars[:, 6]))
    assert rows[:, 8].tolist() == direction_bin(cars[:, 6], -math.pi / 4).tolist()
    outs = _perfect_outputs(head, GT_BOXES, GT_LABELS)
    losses = head.loss_by_feat(outs, [GT_BOXES], [GT_LABELS])
    assert {'task0.loss_dir', 'task1.loss_dir'} <= set(losses)
    assert losses['task0.loss_bbox'].item() == pytest.approx(0.0, abs=1e-6)
    # A logit of 3 on the right side: BCE log(1 + e^-3) per box, times 0.2.
    per_box = math.log1p(math.exp(-3.0))
    assert losses['task0.loss_dir'].item() == pytest.approx(0.2 * 3 * per_box / 3.0001, rel=1e-4)
    # The first Car's direction flipped: its BCE becomes log(1 + e^3).
    outs[0]['dir'].view(-1)[ind[0, 0]] *= -1
    losses = head.loss_by_feat(outs, [GT_BOXES], [GT_LABELS])
    expected = 0.2 * (2 * per_box + math.log1p(math.exp(3.0))) / 3.0001
    assert losses['task0.loss_dir'].item() == pytest.approx(expected, rel=1e-4)
    # ... and decodes to the same box turned by pi.
    det = head.predict_by_feat(outs)[0]
    first = torch.argmin((det['bboxes'][:, :2] - GT_BOXES[0, :2]).norm(dim=1))
    turned = (det['bboxes'][first, 6] - GT_BOXES[0, 6]) % (2 * math.pi)
    assert turned.item() == pytest.approx(math.pi, abs=1e-4)


def test_axis_direction_needs_a_dir_head():
    with pytest.raises(ValueError, match="'dir' head"):
        CenterHead(16, [dict(num_class=1, class_names=['Car'])],
                   dict(reg=(2, 2), height=(1, 2), dim=(3, 2), rot=(2, 2)), VOXEL, RANGE, 2,
                   yaw_encoding='axis_direction')
    with pytest.raises(ValueError, match='yaw_encoding'):
        _head('sin')


def test_decode_task_hand_example():
    heat = torch.full((1, 2, 4, 5), -10.0)
    heat[0, 1, 2, 3] = 2.0  # class 1 at cell (x=3, y=2), score sigmoid(2)
    maps = torch.zeros(1, 8, 4, 5)
    maps[0, :, 2, 3] = torch.tensor([0.25, 0.5, -1.0, math.log(4), math.log(2), math.log(1.5),
                                     math.sin(-2.0), math.cos(-2.0)])
    preds = {'heatmap': heat, 'reg': maps[:, :2], 'height': maps[:, 2:3], 'dim': maps[:, 3:6],
             'rot': maps[:, 6:8]}
    det = decode_task(preds, [0.2, 0.2], [-1.0, -2.0], 4, max_num=3, score_threshold=0.1)[0]
    # x = (3 + 0.25) * 4 * 0.2 - 1 = 1.6; y = (2 + 0.5) * 0.8 - 2 = 0.
    torch.testing.assert_close(det['bboxes'], torch.tensor([[1.6, 0.0, -1.0, 4.0, 2.0, 1.5,
                                                             -2.0]]), atol=1e-5, rtol=0)
    assert det['labels'].tolist() == [1]
    assert det['scores'].item() == pytest.approx(1 / (1 + math.exp(-2.0)))


def test_head_layout_and_init():
    head = _head()
    assert head.feature_size == (108, 124)
    hm = head.task_heads[1].heatmap
    assert hm[-1].out_channels == 2 and torch.all(hm[-1].bias == -2.19)
    assert hm[0].bias is None and isinstance(hm[1], torch.nn.BatchNorm2d)
    with pytest.raises(ValueError, match='code_weights needs 8'):
        CenterHead(16, [dict(num_class=1, class_names=['Car'])],
                   dict(reg=(2, 2), height=(1, 2), dim=(3, 2), rot=(2, 2)), VOXEL, RANGE, 2,
                   train_cfg=dict(code_weights=[1.0] * 10))
