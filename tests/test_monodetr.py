"""MonoDETR: size against the official definition, coding by hand, matcher, decoding, learning."""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from perception.engine.errors import DataError
from perception.models.mono3d import (
    HungarianMatcher,
    MonoDETR,
    convert_official_state_dict,
    decode_heading,
    decode_queries,
    depth_map_loss,
    encode_heading,
    geometric_depth,
    lid_bin_index,
    lid_bin_values,
    matching_cost,
    object_depth_target,
    undo_image_transform,
)
from perception.registry import MODELS
from perception.structures import CameraBoxes3D, Det3DDataSample

OFFICIAL_KEYS = Path(__file__).parent / 'data' / 'official_keys' / 'monodetr.json'
# KITTI P2 (frame 000008 of training).
P2 = np.array([[721.5377, 0.0, 609.5593, 44.85728], [0.0, 721.5377, 172.854, 0.2163791],
               [0.0, 0.0, 1.0, 0.002745884]])
# conventions.md's worked example: Car of frame 000008, camera box [x, y, z, l, h, w, ry].
CAR = [-1.17, 1.65, 7.86, 3.68, 1.57, 1.50, 1.90]


def tiny_model(**kwargs) -> MonoDETR:
    cfg = dict(type='MonoDETR', backbone=dict(type='ResNet', depth=18, out_indices=(1, 2, 3)),
               num_queries=8, num_groups=2, num_encoder_layers=1, num_decoder_layers=2)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def project(points: np.ndarray, p: np.ndarray) -> np.ndarray:
    uvw = np.concatenate([points, np.ones((len(points), 1))], 1) @ p.T
    return uvw[:, :2] / uvw[:, 2:]


def hand_sample(scale: float = 0.3, flip: bool = False) -> Det3DDataSample:
    """The worked-example car in a KITTI image resized by ``scale``."""
    p = P2.copy()
    p[:2] *= scale
    h, w = int(375 * scale), int(1242 * scale)
    boxes = CameraBoxes3D(torch.tensor([CAR]))
    centre = project(boxes.gravity_center.numpy().astype(np.float64), p)
    sample = Det3DDataSample()
    sample.set_metainfo(dict(cam2img=p, img_shape=(h, w), ori_shape=(375, 1242),
                             scale_factor=(scale, scale), flip=flip, sample_idx=8))
    sample.gt_instances_3d = InstanceData(bboxes_3d=boxes, labels_3d=torch.tensor([0]))
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[334.85, 178.94, 624.50, 372.04]]) * scale, labels=torch.tensor([0]),
        centers_2d=torch.tensor(centre, dtype=torch.float32), depths=torch.tensor([7.86]))
    return sample


@pytest.fixture(autouse=True, scope='module')
def one_thread():
    # One intra-op thread: on the shared 2-core machine extra threads only spin.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def r50() -> MonoDETR:
    torch.manual_seed(0)
    return MODELS.build(dict(type='MonoDETR'))


# ----------------------------------------------------------------------------- size / checkpoint
def test_parameter_count_matches_the_official_definition(r50):
    official = json.loads(OFFICIAL_KEYS.read_text())
    # sum(p.numel() for p in official.parameters()) of the official build (configs/monodetr.yaml).
    assert official['num_parameters'] == 37_675_220
    # Ours differs only by: the LID bin values (a Parameter there, a buffer here: -81); the
    # parameters the official forward never uses (label_enc 4*255, 3 x sa_v_proj 65,792,
    # decoder.query_scale 131,584, decoder.ref_point_head 66,306); and ResNet-50's BatchNorm
    # affine weights (FrozenBatchNorm2d buffers there, frozen parameters here: +53,120).
    unused = 4 * 255 + 3 * 65_792 + 131_584 + 66_306
    ours = sum(p.numel() for p in r50.parameters())
    assert ours == 37_675_220 - 81 - unused + 53_120 == 37_331_973
    trainable = sum(p.numel() for p in r50.parameters() if p.requires_grad)
    # Official trainable: 37,675,220 - conv1 9,408 - layer1 convs 212,992 - bins 81 = 37,452,739
    # (BatchNorms frozen); ours freezes the same, and has no unused parameters.
    assert trainable == 37_452_739 - unused == 37_056_453


def test_official_keys_convert_and_load_strictly(r50):
    keys = json.loads(OFFICIAL_KEYS.read_text())['keys']
    state = {k: torch.zeros(v) for k, v in keys.items()}
    converted = convert_official_state_dict(state)
    result = r50.load_state_dict(converted, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    ours = r50.state_dict()
    assert all(tuple(ours[k].shape) == tuple(v.shape) for k, v in converted.items())
    # Class rows move from the official (Pedestrian, Car, Cyclist) to our (Car, Pedestrian, ...).
    state['class_embed.0.bias'] = torch.tensor([10.0, 20.0, 30.0])
    assert convert_official_state_dict(state)['class_embed.0.bias'].tolist() == [20, 10, 30]
    state['depthaware_transformer.decoder.bbox_embed.0.layers.0.bias'] = torch.ones(256)
    with pytest.raises(ValueError, match='differs'):
        convert_official_state_dict(state)


# ----------------------------------------------------------------------------- coding
def test_lid_bins_follow_the_paper_formula():
    d_min, d_max, n = 1e-3, 60.0, 80
    delta = 2 * (d_max - d_min) / (n * (n + 1))
    assert delta == pytest.approx(0.0185182098765432, abs=1e-15)  # 119.998 / 6480
    values = lid_bin_values(d_min, d_max, n).double()
    assert values.shape == (81,)
    # Bin i's value is its lower edge d_min + delta * i (i + 1) / 2.
    assert values[0] == pytest.approx(0.001, abs=1e-7)
    assert values[1] == pytest.approx(0.0195182099, abs=1e-6)
    assert values[10] == pytest.approx(1.0195015432, abs=1e-5)
    assert values[79] == pytest.approx(58.5185432099, abs=1e-4)
    assert values[80] == 60.0
    # Depths between edges i and i+1 fall in bin i; background 0 and beyond 60 m in bin 80.
    i = torch.arange(80, dtype=torch.float64)
    mid = d_min + delta * (i * (i + 1) / 2 + (i + 1) / 2)
    assert lid_bin_index(mid, d_min, d_max, n).tolist() == list(range(80))
    assert lid_bin_index(torch.tensor([0.0, 61.0, float('nan')])).tolist() == [80, 80, 80]


def test_geometric_depth_by_hand():
    # A 1.5 m tall object whose box spans 0.1 of a 384 px image at f = 721.5377 px.
    z = geometric_depth(torch.tensor(1.5), torch.tensor(0.1), 384, 721.5377)
    assert float(z) == pytest.approx(1.5 * 721.5377 / 38.4, rel=1e-6)  # 28.18506 m
    assert float(z) == pytest.approx(28.18506, abs=1e-4)
    # Boxes under one pixel are clamped to one pixel.
    assert float(geometric_depth(torch.tensor(1.5), torch.tensor(1e-5), 384, 100.0)) == 150.0


def test_heading_bins_by_hand_and_round_trip():
    bins, res = encode_heading(torch.tensor([math.pi / 6 + 0.1, -0.2, math.pi, 0.0]))
    assert bins.tolist() == [1, 0, 6, 0]
    assert res.tolist() == pytest.approx([0.1, -0.2, 0.0, 0.0], abs=1e-6)
    angles = torch.linspace(-math.pi + 1e-3, math.pi - 1e-3, 101, dtype=torch.float64)
    bins, res = encode_heading(angles)
    assert (res.abs() <= math.pi / 12 + 1e-9).all()
    logits = torch.zeros(101, 24, dtype=torch.float64)
    logits[torch.arange(101), bins] = 5.0
    logits[:, 12:] = res[:, None]
    decoded = decode_heading(logits)
    assert torch.allclose(decoded, angles, atol=1e-9)


# ----------------------------------------------------------------------------- matching / losses
def test_matcher_hand_case_and_groups():
    gt = torch.tensor([[0.3, 0.4, 0.1, 0.1, 0.1, 0.2], [0.7, 0.5, 0.05, 0.1, 0.1, 0.1]])
    labels = torch.tensor([1, 0])
    boxes = torch.stack([gt[1], torch.tensor([0.5, 0.5, 0.1, 0.1, 0.1, 0.1]), gt[0]])
    logits = torch.zeros(3, 2)
    cost = matching_cost(logits, boxes, labels, gt)
    # Identical boxes: zero L1 and GIoU 1; logit 0 gives the focal cost 2 * (pos - neg) with
    # pos = 0.25 * 0.5^2 * ln 2 and neg = 0.75 * 0.5^2 * ln 2.
    focal = 2 * (0.25 - 0.75) * 0.25 * math.log(2)
    assert float(cost[2, 0]) == pytest.approx(focal - 2, abs=1e-6)
    assert float(cost[0, 1]) == pytest.approx(focal - 2, abs=1e-6)
    # Brute force over all assignments agrees with the matcher.
    best = min(itertools.permutations(range(3), 2), key=lambda q: float(cost[q[0], 0] +
                                                                        cost[q[1], 1]))
    matcher = HungarianMatcher()
    ((rows, cols),) = matcher(logits[None], boxes[None], [{'labels': labels, 'boxes_3d': gt}])
    assert dict(zip(cols.tolist(), rows.tolist())) == {0: best[0], 1: best[1]} == {0: 2, 1: 0}
    # Two groups: each target is matched once per group; group 1's queries are offset by 3.
    ((rows, cols),) = matcher(torch.cat([logits, logits])[None], torch.cat([boxes, boxes])[None],
                              [{'labels': labels, 'boxes_3d': gt}], num_groups=2)
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 1), (2, 0), (3, 1), (5, 0)]


def test_depth_map_target_and_loss_by_hand():
    boxes = torch.tensor([[0.5, 0.0, 3.2, 2.0], [2.0, 1.0, 4.0, 3.0]])  # cells, floored / ceiled
    target = object_depth_target(boxes, torch.tensor([20.0, 10.0]), 4, 5)
    expected = torch.tensor([[20, 20, 20, 20, 0], [20, 20, 10, 10, 0],
                             [0, 0, 10, 10, 0], [0, 0, 0, 0, 0]], dtype=torch.float32)
    assert torch.equal(target, expected)
    # Uniform logits: every pixel's focal loss is (1 + 81e-6) * 0.25 * (1 - p)^2 * ln(81),
    # p = 1/81; 10 foreground pixels weigh 13, the other 10 weigh 1; mean over the 20 pixels.
    loss = depth_map_loss(torch.zeros(1, 81, 4, 5), [boxes], [torch.tensor([20.0, 10.0])])
    per_pixel = (1 + 81e-6) * 0.25 * (80 / 81) ** 2 * math.log(81)
    assert float(loss) == pytest.approx(per_pixel * (13 * 10 + 10) / 20, rel=1e-5)


# ----------------------------------------------------------------------------- decoding
def test_decode_of_a_hand_set_query_gives_the_known_box():
    h_in, w_in = 384, 1280
    box = CameraBoxes3D(torch.tensor([CAR]))
    uv = project(box.gravity_center.numpy().astype(np.float64), P2)[0]  # (507.x, 28x.x)
    half_w, half_h = 100.0, 80.0
    alpha = CAR[6] - math.atan2(uv[0] - P2[0, 2], P2[0, 0])
    bins, res = encode_heading(torch.tensor([alpha], dtype=torch.float64))
    q = 5
    out = {'logits': torch.full((8, 3), -5.0), 'boxes': torch.full((8, 6), 0.1),
           'dims': torch.ones(8, 3), 'depth': torch.zeros(8, 2), 'heading': torch.zeros(8, 24)}
    out['logits'][q, 0] = 3.0
    out['boxes'][q] = torch.tensor([uv[0] / w_in, uv[1] / h_in, half_w / w_in, half_w / w_in,
                                    half_h / h_in, half_h / h_in])
    out['depth'][q] = torch.tensor([7.86, 0.5])
    out['dims'][q] = torch.tensor([1.57, 1.50, 3.68])  # (h, w, l)
    out['heading'][q, int(bins)] = 4.0
    out['heading'][q, 12 + int(bins)] = float(res)
    det = decode_queries(out, torch.as_tensor(P2, dtype=torch.float32), (h_in, w_in), topk=50,
                         score_thr=0.5)
    assert det['labels'].tolist() == [0]
    assert float(det['scores'][0]) == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item()
                                                    * math.exp(-0.5), rel=1e-5)
    assert det['boxes_3d'][0].tolist() == pytest.approx(CAR, abs=2e-4)
    assert det['bboxes'][0].tolist() == pytest.approx(
        [uv[0] - half_w, uv[1] - half_h, uv[0] + half_w, uv[1] + half_h], abs=1e-3)
    # Undo a flip and a 0.5 scale: 3D mirrored (x -> -x, ry -> pi - ry), 2D scaled then mirrored.
    back = undo_image_transform(det, {'flip': True, 'scale_factor': (0.5, 0.5),
                                      'ori_shape': (768, 2560)})
    x, _, _, _, _, _, ry = back['boxes_3d'][0].tolist()
    assert x == pytest.approx(1.17, abs=2e-4) and ry == pytest.approx(math.pi - 1.90, abs=1e-5)
    x1, y1, x2, y2 = back['bboxes'][0].tolist()
    assert x1 == pytest.approx(2560 - 2 * (uv[0] + half_w), abs=1e-2)
    assert y2 == pytest.approx(2 * (uv[1] + half_h), abs=1e-2)


def test_output_shapes_and_predict_fields():
    torch.manual_seed(0)
    model = tiny_model()
    img = torch.randint(0, 255, (3, 112, 372), dtype=torch.uint8)
    data = model.data_preprocessor({'inputs': {'img': [img, img]},
                                    'data_samples': [hand_sample(), hand_sample()]})
    assert data['inputs'].shape == (2, 3, 128, 384)  # padded to /32
    for training, n in ((True, 16), (False, 8)):
        model.train(training)
        with torch.no_grad():
            out = model(data['inputs'], data['data_samples'], mode='tensor')
        assert len(out['layers']) == 2
        last = out['layers'][-1]
        assert last['logits'].shape == (2, n, 3) and last['boxes'].shape == (2, n, 6)
        assert last['dims'].shape == (2, n, 3) and last['depth'].shape == (2, n, 2)
        assert last['heading'].shape == (2, n, 24)
        assert out['depth_logits'].shape == (2, 81, 8, 24)
    model.eval()
    model.test_cfg['score_thr'] = 0.0
    with torch.no_grad():
        samples = model(data['inputs'], data['data_samples'], mode='predict')
    pred = samples[0]
    assert len(pred.pred_instances_3d.bboxes_3d) == 8 * 3  # top-k over 8 queries x 3 classes
    assert isinstance(pred.pred_instances_3d.bboxes_3d, CameraBoxes3D)
    assert pred.pred_instances.bboxes.shape == (24, 4)
    bboxes = pred.pred_instances.bboxes
    assert (bboxes[:, [0, 2]] <= 1242).all() and (bboxes >= 0).all()  # clipped to ori_shape
    assert set(pred.pred_annos['name']) <= {'Car', 'Pedestrian', 'Cyclist'}


def test_monodgp_depth_is_geometric_plus_learned_error():
    torch.manual_seed(0)
    model = tiny_model(depth_mode='monodgp').eval()
    for head in model.depth_embed:  # no learned error: the depth is purely geometric
        torch.nn.init.zeros_(head.layers[-1].weight)
        torch.nn.init.zeros_(head.layers[-1].bias)
    sample = hand_sample()
    img = torch.randn(1, 3, 128, 384)
    with torch.no_grad():
        last = model(img, [sample], mode='tensor')['layers'][-1]
    focal = float(sample.metainfo['cam2img'][0, 0])
    expected = geometric_depth(last['dims'][..., 0], last['boxes'][..., 4] + last['boxes'][..., 5],
                               128, focal)
    assert torch.allclose(last['depth'][..., 0], expected, rtol=1e-5)


def test_bad_inputs_raise_clear_errors():
    model = tiny_model()
    grey = torch.zeros(1, 112, 372, dtype=torch.uint8)
    with pytest.raises(DataError, match='RGB'):
        model.data_preprocessor({'inputs': {'img': [grey]}, 'data_samples': [hand_sample()]})
    sample = hand_sample()
    sample.set_metainfo({'cam2img': None})
    with pytest.raises(DataError, match='cam2img'):
        model(torch.zeros(1, 3, 128, 384), [sample], mode='tensor')


# ----------------------------------------------------------------------------- learning
def test_tiny_model_overfits_one_sample():
    torch.manual_seed(0)
    model = tiny_model(num_groups=1, dropout=0.0)
    img = torch.randint(0, 255, (3, 56, 186), dtype=torch.uint8)
    data = model.data_preprocessor({'inputs': {'img': [img]},
                                    'data_samples': [hand_sample(scale=0.15)]}, True)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4)
    model.train()
    history = []
    for _ in range(15):
        loss = sum(model(data['inputs'], data['data_samples'], mode='loss').values())
        optim.zero_grad()
        loss.backward()
        optim.step()
        history.append(float(loss.detach()))
    assert min(history[-3:]) < 0.5 * history[0], history


def test_configs_build_and_name_registered_transforms():
    from mmengine.config import Config

    import perception.datasets  # noqa: F401  (registers datasets and transforms)
    from perception.registry import DATASETS, TRANSFORMS

    root = Path(__file__).parents[1] / 'configs' / 'monodetr'
    published = Config.fromfile(root / 'monodetr_r50_kitti-mono3d.py')
    assert published.optim_wrapper.optimizer.lr == 2e-4
    assert published.optim_wrapper.optimizer.weight_decay == 1e-4
    assert published.train_dataloader.batch_size == 16
    assert published.train_cfg.max_epochs == 195
    assert published.param_scheduler[-1]['milestones'] == [125, 165]
    assert Config.fromfile(root / 'monodgp_r50_kitti-mono3d.py').model.depth_mode == 'monodgp'
    demo = Config.fromfile(root / 'monodetr_tiny_demo.py')
    for cfg in (published, demo):
        assert DATASETS.get(cfg.train_dataloader.dataset.type) is not None
        for step in cfg.train_pipeline + cfg.test_pipeline:
            assert TRANSFORMS.get(step['type']) is not None, step['type']
    model = MODELS.build(demo.model)
    assert isinstance(model, MonoDETR) and model.backbone.depth == 18


def test_class_mean_sizes_and_an_image_without_objects():
    torch.manual_seed(0)
    model = tiny_model(mean_size='kitti').eval()
    for head in model.dim_embed_3d:  # no offset: the size is the mean of the likeliest class
        torch.nn.init.zeros_(head.layers[-1].weight)
        torch.nn.init.zeros_(head.layers[-1].bias)
    img = torch.randn(1, 3, 128, 384)
    with torch.no_grad():
        last = model(img, [hand_sample()], mode='tensor')['layers'][-1]
    means = torch.tensor([[1.52563191462, 1.62856739989, 3.88311640418],  # Car (h, w, l)
                          [1.76255119, 0.66068622, 0.84422524],  # Pedestrian
                          [1.73698127, 0.59706367, 1.76282397]])  # Cyclist
    assert torch.allclose(last['dims'][0], means[last['logits'][0].argmax(-1)])
    # A training image without objects still gives finite losses and gradients.
    model.train()
    empty = hand_sample()
    empty.gt_instances_3d = InstanceData(bboxes_3d=CameraBoxes3D(torch.zeros(0, 7)),
                                         labels_3d=torch.zeros(0, dtype=torch.long))
    empty.gt_instances = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0).long(),
                                      centers_2d=torch.zeros(0, 2), depths=torch.zeros(0))
    losses = model(img, [empty], mode='loss')
    total = sum(losses.values())
    assert torch.isfinite(total) and float(losses['loss_center']) == 0.0
    total.backward()
    assert model.class_embed[-1].bias.grad is not None
