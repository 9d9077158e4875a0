"""Semantic segmentation models: heads, cross-entropy, EncoderDecoder training and inference."""
from __future__ import annotations

import math

import pytest
import torch
from mmengine.optim import OptimWrapper
from mmengine.structures import BaseDataElement, PixelData
from torch import nn

from perception.evaluation.segmentation import SegMetric
from perception.models.backbones import efficientvit_m0, resnet18, swin_tiny
from perception.models.segmentation import (
    EncoderDecoder,
    FCNHead,
    SegCrossEntropyLoss,
    SegDataPreprocessor,
    SegFormerHead,
    UPerHead,
    seg_cross_entropy,
    slide_windows,
)
from perception.registry import MODELS


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class ToyBackbone(nn.Module):
    """One stride-1 conv: translation-equivariant up to its zero padding at the borders."""

    def __init__(self, kernel_size: int = 3, channels: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, kernel_size, padding=kernel_size // 2)
        self.out_channels = [channels]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (torch.tanh(self.conv(x)),)


def toy_segmentor(kernel_size: int = 3, num_classes: int = 4, **test_cfg) -> EncoderDecoder:
    torch.manual_seed(0)
    head = SegFormerHead([8], channels=8, in_index=(0,), num_classes=num_classes)
    model = EncoderDecoder(ToyBackbone(kernel_size), head, test_cfg=test_cfg)
    for m in model.modules():  # random BN statistics so the head is not near-trivial
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


# -- heads -----------------------------------------------------------------------------------------
@pytest.mark.parametrize('name', ['resnet18', 'efficientvit_m0', 'swin_tiny'])
def test_head_output_shapes(name):
    torch.manual_seed(0)
    backbone = {'resnet18': resnet18, 'efficientvit_m0': efficientvit_m0,
                'swin_tiny': swin_tiny}[name]().eval()
    x = torch.randn(2, 3, 64, 96)
    feats = backbone(x)
    chans, levels = backbone.out_channels, len(backbone.out_channels)
    stride = {'resnet18': 4, 'efficientvit_m0': 16, 'swin_tiny': 4}[name]
    size = (64 // stride, 96 // stride)
    heads = [SegFormerHead(chans, 32, in_index=range(levels), num_classes=7),
             UPerHead(chans, 32, in_index=range(levels), num_classes=7),
             FCNHead(chans[-2], 16, in_index=levels - 2, num_classes=7)]
    expected = [size, size, tuple(feats[-2].shape[-2:])]
    with torch.no_grad():
        for head, hw in zip(heads, expected):
            assert head.eval()(feats).shape == (2, 7, *hw)
    model = EncoderDecoder(backbone, heads[1], auxiliary_head=heads[2]).eval()
    with torch.no_grad():
        (sample,) = model.predict(x[:1])
    assert sample.pred_sem_seg.data.shape == (1, 64, 96)
    assert sample.seg_probs.data.shape == (7, 64, 96)
    torch.testing.assert_close(sample.seg_probs.data.sum(0), torch.ones(64, 96))


def test_head_parameter_counts_match_published():
    # SegFormer-B0's all-MLP decoder (C=256, ADE20K): 4 linears 512*256 + 4*256 biases, fuse
    # 1024*256 + BN 2*256, classifier 256*150 + 150 = 433,302; the paper says 0.4M.
    assert n_params(SegFormerHead([32, 64, 160, 256], 256, num_classes=150)) == 433_302
    # UperNet + FCN auxiliary on Swin-T, ADE20K: the Swin paper lists 60M in total.
    total = (n_params(swin_tiny()) + n_params(UPerHead([96, 192, 384, 768], 512, num_classes=150))
             + n_params(FCNHead(384, 256, num_classes=150)))
    assert abs(total - 60e6) < 0.2e6
    # PPM: 4 x (768*512 + BN 1024) + bottleneck 3*3*(768 + 4*512)*512 + 1024 (by hand).
    head = UPerHead([96, 192, 384, 768], 512, num_classes=150)
    ppm = n_params(head.psp_modules) + n_params(head.bottleneck)
    assert ppm == 4 * (768 * 512 + 1024) + 9 * (768 + 4 * 512) * 512 + 1024


def test_heads_reject_wrong_channels():
    with pytest.raises(ValueError, match=r'\(B, 64, H, W\)'):
        SegFormerHead([64, 128], 16, in_index=(0, 1), num_classes=2)(
            (torch.zeros(1, 32, 8, 8), torch.zeros(1, 128, 4, 4)))
    with pytest.raises(ValueError, match='in_index'):
        SegFormerHead([64, 128], 16, in_index=(0, 1, 2), num_classes=2)


# -- loss ------------------------------------------------------------------------------------------
def test_cross_entropy_by_hand_with_ignore_and_class_weights():
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]).view(1, 2, 1, 3)
    labels = torch.tensor([[[0, 1, 255]]])
    # -log softmax of the true class, by hand.
    l0 = -(1.0 - math.log(math.exp(1.0) + math.exp(0.0)))
    l1 = -(-1.0 - math.log(math.exp(2.0) + math.exp(-1.0)))
    assert seg_cross_entropy(logits, labels).item() == pytest.approx((l0 + l1) / 3, rel=1e-6)
    assert seg_cross_entropy(logits, labels, avg_non_ignore=True).item() == pytest.approx(
        (l0 + l1) / 2, rel=1e-6)
    w = torch.tensor([1.0, 3.0])
    # mmseg divides by the pixel count, not by the sum of weights (PyTorch's mean: / 4).
    assert seg_cross_entropy(logits, labels, w).item() == pytest.approx((l0 + 3 * l1) / 3,
                                                                        rel=1e-6)
    loss = SegCrossEntropyLoss(class_weight=[1.0, 3.0], loss_weight=0.4, avg_non_ignore=True)
    assert loss(logits, labels).item() == pytest.approx(0.4 * (l0 + 3 * l1) / 2, rel=1e-6)
    # Giving the ignored pixel a label changes the loss: it counted for nothing before.
    for other in (0, 1):
        relabelled = torch.tensor([[[0, 1, other]]])
        assert seg_cross_entropy(logits, relabelled).item() != pytest.approx((l0 + l1) / 3)
    all_ignored = torch.full_like(labels, 255)
    assert seg_cross_entropy(logits, all_ignored, avg_non_ignore=True).item() == 0.0


def test_segmentor_loss_ignores_255_and_uses_aux_weight():
    torch.manual_seed(0)
    model = EncoderDecoder(
        dict(type='ResNet', depth=18), dict(type='SegFormerHead', in_channels=[64, 128, 256, 512],
                                            channels=32, num_classes=3, dropout_ratio=0.0),
        auxiliary_head=dict(type='FCNHead', in_channels=256, channels=16, num_classes=3,
                            dropout_ratio=0.0))
    model.eval()  # BN with fixed statistics: the loss is a function of the labels only
    assert model.auxiliary_head[0].loss_decode.loss_weight == 0.4
    images = [torch.rand(3, 32, 32) * 255 for _ in range(2)]
    labels = torch.randint(0, 3, (2, 32, 32))
    labels[:, :8] = 255

    def losses(lab: torch.Tensor) -> dict:
        samples = [BaseDataElement(gt_sem_seg=PixelData(data=g[None])) for g in lab]
        data = model.data_preprocessor({'inputs': images, 'data_samples': samples}, True)
        with torch.no_grad():
            return model(**data, mode='loss')

    base = losses(labels)
    assert set(base) == {'decode.loss_ce', 'decode.acc_seg', 'aux.loss_ce', 'aux.acc_seg'}
    changed = labels.clone()
    changed[:, :8] = torch.randint(0, 3, (2, 8, 32))
    assert losses(changed)['decode.loss_ce'] != pytest.approx(base['decode.loss_ce'].item())
    # Brute force: cross-entropy summed over the labelled pixels only, divided by all pixels
    # (mmseg's default); the auxiliary head's is weighted 0.4. Logits go up to the label size.
    with torch.no_grad():
        x = model.data_preprocessor({'inputs': images}, False)['inputs']
        feats = model.extract_feat(x)
        valid = labels != 255
        for key, head, weight in (('decode', model.decode_head, 1.0),
                                  ('aux', model.auxiliary_head[0], 0.4)):
            logits = nn.functional.interpolate(head(feats), size=(32, 32), mode='bilinear')
            picked = logits.permute(0, 2, 3, 1)[valid]
            expected = weight * nn.functional.cross_entropy(
                picked, labels[valid], reduction='sum') / labels.numel()
            torch.testing.assert_close(base[f'{key}.loss_ce'], expected)
            acc = 100.0 * (picked.argmax(1) == labels[valid]).float().mean()
            torch.testing.assert_close(base[f'{key}.acc_seg'], acc)


# -- preprocessing ---------------------------------------------------------------------------------
def test_preprocessor_normalises_and_pads():
    pre = SegDataPreprocessor(mean=[10.0, 20.0, 30.0], std=[2.0, 4.0, 5.0], size_divisor=4)
    img = torch.full((3, 5, 7), 40, dtype=torch.uint8)
    samples = [BaseDataElement(gt_sem_seg=torch.ones(5, 7, dtype=torch.long))]
    out = pre({'inputs': [img], 'data_samples': samples}, training=True)
    x = out['inputs']
    assert x.shape == (1, 3, 8, 8)
    torch.testing.assert_close(x[0, :, 0, 0], torch.tensor([15.0, 5.0, 2.0]))
    assert (x[:, :, 5:] == 0).all() and (x[:, :, :, 7:] == 0).all()
    gt = out['data_samples'][0].gt_sem_seg.data
    assert gt.shape == (1, 8, 8) and gt[0, :5, :7].eq(1).all() and gt[0, 5:].eq(255).all()
    meta = out['data_samples'][0].metainfo
    assert meta['img_shape'] == (5, 7) and meta['ori_shape'] == (5, 7)
    assert meta['pad_shape'] == (8, 8)


def test_predict_crops_padding_and_resizes_to_ori_shape():
    model = toy_segmentor(kernel_size=1)
    model.data_preprocessor.size_divisor = 8
    img = torch.rand(3, 13, 10) * 255
    samples = [BaseDataElement(metainfo=dict(ori_shape=(26, 20)))]
    data = model.data_preprocessor({'inputs': [img], 'data_samples': samples}, False)
    assert data['inputs'].shape[-2:] == (16, 16)
    with torch.no_grad():
        (out,) = model(**data, mode='predict')
        whole = model.encode_decode(data['inputs']).softmax(1)[:, :, :13, :10]
    expected = nn.functional.interpolate(whole, size=(26, 20), mode='bilinear')[0]
    torch.testing.assert_close(out.seg_probs.data, expected)
    assert out.pred_sem_seg.data.shape == (1, 26, 20)


# -- sliding-window inference and flip -------------------------------------------------------------
def test_slide_windows_by_hand():
    assert slide_windows(10, 5, (4, 8), (3, 2)) == [(0, 4, 0, 5), (3, 7, 0, 5), (6, 10, 0, 5)]
    rows = sorted({w[:2] for w in slide_windows(11, 11, (4, 4), (3, 3))})
    assert rows == [(0, 4), (3, 7), (6, 10), (7, 11)]  # the last window shifts back to the edge


def test_slide_covering_window_equals_whole():
    model = toy_segmentor(kernel_size=3, mode='slide', crop_size=(40, 40), stride=(20, 20))
    x = torch.randn(2, 3, 24, 30)
    with torch.no_grad():
        torch.testing.assert_close(model.slide_inference(x), model.encode_decode(x))


@pytest.mark.parametrize('windows_per_batch', [None, 1])
def test_slide_with_overlap_matches_whole_away_from_window_borders(windows_per_batch):
    x = torch.randn(1, 3, 23, 29)
    cfg = dict(mode='slide', crop_size=(10, 12), stride=(6, 7), windows_per_batch=windows_per_batch)
    pointwise = toy_segmentor(kernel_size=1, **cfg)
    with torch.no_grad():  # a per-pixel model sees no window borders at all
        torch.testing.assert_close(pointwise.slide_inference(x), pointwise.encode_decode(x))
    model = toy_segmentor(kernel_size=3, **cfg)
    with torch.no_grad():
        slide, whole = model.slide_inference(x), model.encode_decode(x)
    # A 3x3 conv differs from the whole image only on window edges inside the image.
    border = torch.zeros(23, 29, dtype=torch.bool)
    for y1, y2, x1, x2 in slide_windows(23, 29, (10, 12), (6, 7)):
        if y1 > 0:
            border[y1, x1:x2] = True
        if y2 < 23:
            border[y2 - 1, x1:x2] = True
        if x1 > 0:
            border[y1:y2, x1] = True
        if x2 < 29:
            border[y1:y2, x2 - 1] = True
    diff = (slide - whole).abs().amax(1)[0]
    assert diff[~border].max() < 1e-5
    assert diff[border].max() > 1e-3
    assert border.float().mean() < 0.5


def test_flip_tta():
    x = torch.randn(1, 3, 16, 20)
    pointwise = toy_segmentor(kernel_size=1)
    flipped = toy_segmentor(kernel_size=1, flip=True)
    with torch.no_grad():  # a per-pixel model commutes with flipping: TTA changes nothing
        torch.testing.assert_close(flipped.inference(x), pointwise.inference(x))
    torch.manual_seed(1)
    model = EncoderDecoder(dict(type='ResNet', depth=18),
                           dict(type='UPerHead', in_channels=[64, 128, 256, 512], channels=16,
                                num_classes=3)).eval()
    symmetric = torch.cat([x, x.flip(-1)], dim=-1) * 50
    with torch.no_grad():
        probs = model.inference(symmetric)
        model.test_cfg['flip'] = True
        tta = model.inference(symmetric)
    # On a mirror-symmetric image the model's own output need not be symmetric; TTA's is, and it
    # is the mean of the output and its mirror image.
    assert (probs - probs.flip(-1)).abs().max() > 1e-4
    torch.testing.assert_close(tta, 0.5 * (probs + probs.flip(-1)))
    torch.testing.assert_close(tta, tta.flip(-1))


# -- learning -------------------------------------------------------------------------------------
class TinyBackbone(nn.Module):
    """Strided conv + BN + ReLU stages returning strides 4, 8, 16 (a fast stand-in for ResNet)."""

    def __init__(self) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout),
                                 nn.ReLU())

        self.stem = nn.Sequential(block(3, 16), block(16, 16))
        self.stages = nn.ModuleList([block(16, 32), block(32, 32)])
        self.out_channels = [16, 32, 32]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = [self.stem(x)]
        for stage in self.stages:
            outs.append(stage(outs[-1]))
        return tuple(outs)


def synthetic_batch(size: int) -> dict:
    """Two noisy images, class 1 (reddish disc / block) on class 0 (bluish), exact masks."""
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing='ij')
    s = size / 64
    masks = [((yy - 20 * s) ** 2 + (xx - 40 * s) ** 2 < (15 * s) ** 2).long(),
             ((yy > 30 * s) & (xx < 35 * s)).long()]
    images = []
    for mask in masks:
        img = torch.rand(3, size, size) * 120
        img[0] += 100 * mask
        img[2] += 100 * (1 - mask)
        images.append(img)
    return {'inputs': images,
            'data_samples': [BaseDataElement(gt_sem_seg=PixelData(data=m[None])) for m in masks]}


def overfit(model: EncoderDecoder, size: int, steps: int, lr: float) -> tuple[float, float, float]:
    """Train on the two images; return the first and last decode loss and the aAcc after."""
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=lr))
    model.train()
    losses = [model.train_step(synthetic_batch(size), optim)['decode.loss_ce'].item()
              for _ in range(steps)]
    model.eval()
    metric = SegMetric(num_classes=2)
    metric.process(None, model.val_step(synthetic_batch(size)))
    return losses[0], losses[-1], metric.compute_metrics(metric.results)['aAcc']


@pytest.mark.parametrize('head', ['SegFormerHead', 'UPerHead'])
def test_overfits_two_images(head):
    torch.manual_seed(0)
    model = EncoderDecoder(
        TinyBackbone(),
        dict(type=head, in_channels=[16, 32, 32], in_index=(0, 1, 2), channels=16,
             num_classes=2),
        auxiliary_head=dict(type='FCNHead', in_channels=32, channels=8, in_index=1,
                            num_classes=2),
        data_preprocessor=dict(type='SegDataPreprocessor', size_divisor=16))
    first, last, acc = overfit(model, 32, steps=40, lr=1e-2)
    assert last < 0.3 * first, (first, last)
    assert acc > 95.0


@pytest.mark.slow
def test_resnet18_segformer_overfits_two_images():
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='EncoderDecoder', backbone=dict(type='ResNet', depth=18),
        decode_head=dict(type='SegFormerHead', in_channels=[64, 128, 256, 512], channels=32,
                         num_classes=2),
        auxiliary_head=dict(type='FCNHead', in_channels=256, channels=16, num_classes=2),
        data_preprocessor=dict(type='SegDataPreprocessor', size_divisor=32)))
    first, last, acc = overfit(model, 64, steps=40, lr=2e-3)
    assert last < 0.3 * first, (first, last)
    assert acc > 95.0
