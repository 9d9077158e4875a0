"""Encoder-decoder semantic segmentor (mmsegmentation's ``EncoderDecoder``) and its preprocessor.

Data interface (what a dataset's packing transform yields per sample):

* ``inputs``: image ``(3, H, W)``, uint8 or float in [0, 255] (RGB; ``bgr_to_rgb`` swaps channels).
* ``data_samples``: a ``BaseDataElement`` with ``gt_sem_seg`` - an ``(H, W)`` or ``(1, H, W)``
  integer map (tensor, array or ``PixelData``) with ``255`` for unlabelled pixels - and metainfo
  ``img_shape`` (H, W after the pipeline's resize) and ``ori_shape`` (H, W of the file). Missing
  shapes default to the input's.

:class:`SegDataPreprocessor` normalises, pads images (``pad_val``) and labels (``seg_pad_val``)
at the bottom / right to a common size (a multiple of ``size_divisor``; labels only in training),
and stores ``pad_shape``.
:class:`EncoderDecoder` returns in ``mode='loss'`` ``{'decode.loss_ce', 'decode.acc_seg',
'aux.loss_ce', 'aux.acc_seg'}`` (``aux_<i>.`` for several auxiliary heads; a head with its own
``loss(feats, labels)`` method, e.g. ``Mask2FormerHead``, supplies its keys), in ``mode='predict'``
the samples with ``pred_sem_seg`` (``PixelData``, ``(1, H, W)`` int64 at ``ori_shape``) and
``seg_probs`` (``PixelData``, ``(K, H, W)`` softmax probabilities), in ``mode='tensor'`` the
decode head's raw logits.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.model import BaseDataPreprocessor, BaseModel
from mmengine.structures import BaseDataElement, PixelData
from torch import Tensor, nn

from ...registry import MODELS
from .heads import resize


def label_map(sample: BaseDataElement, name: str = 'gt_sem_seg') -> Tensor:
    """The ``(H, W)`` int64 label map in ``sample.<name>`` (tensor, array or ``PixelData``)."""
    value = getattr(sample, name, None)
    if value is None:
        raise ValueError(f'data sample has no {name!r}; training needs an (H, W) label map')
    if isinstance(value, PixelData):
        value = value.data
    value = torch.as_tensor(np.asarray(value) if not isinstance(value, Tensor) else value)
    if value.dim() == 3 and value.shape[0] == 1:
        value = value[0]
    if value.dim() != 2 or value.is_floating_point():
        raise ValueError(f'{name} must be an integer (H, W) or (1, H, W) map, got '
                         f'{value.dtype} {tuple(value.shape)}')
    return value.long()


def padded_size(sizes: Sequence[Sequence[int]], size_divisor: int | None) -> tuple[int, int]:
    """Smallest ``(H, W)`` covering every size, rounded up to a multiple of ``size_divisor``."""
    h = max(int(s[0]) for s in sizes)
    w = max(int(s[1]) for s in sizes)
    if size_divisor:
        h, w = (math.ceil(v / size_divisor) * size_divisor for v in (h, w))
    return h, w


def slide_windows(height: int, width: int, crop_size: Sequence[int],
                  stride: Sequence[int]) -> list[tuple[int, int, int, int]]:
    """mmseg's sliding windows ``(y1, y2, x1, x2)`` over an ``height x width`` image.

    Windows start every ``stride`` pixels; the last one in each direction is shifted back to end
    at the border, so all windows have the size ``min(crop, image)`` and together cover the image.
    """
    (h_crop, w_crop), (h_stride, w_stride) = crop_size, stride
    if min(h_crop, w_crop, h_stride, w_stride) < 1:
        raise ValueError(f'slide inference needs positive crop_size and stride, got {crop_size}, '
                         f'{stride}')
    h_grids = max(height - h_crop + h_stride - 1, 0) // h_stride + 1
    w_grids = max(width - w_crop + w_stride - 1, 0) // w_stride + 1
    windows = []
    for i in range(h_grids):
        y2 = min(i * h_stride + h_crop, height)
        for j in range(w_grids):
            x2 = min(j * w_stride + w_crop, width)
            windows.append((max(y2 - h_crop, 0), y2, max(x2 - w_crop, 0), x2))
    return windows


@MODELS.register_module()
class SegDataPreprocessor(BaseDataPreprocessor):
    """Normalise, pad and batch images and label maps.

    Args:
        mean, std: per-channel statistics in the input's [0, 255] scale (ImageNet by default).
        size_divisor: pad height and width up to a multiple of it (``None``: batch maximum only).
        pad_val: value of padded image pixels, after normalisation.
        seg_pad_val: label of padded pixels (ignored by the loss).
        bgr_to_rgb: swap the first and third channel before normalising.

    ``forward({'inputs': list of (3, H_i, W_i) or (B, 3, H, W), 'data_samples': [...]})`` ->
    ``{'inputs': (B, 3, H, W) float, 'data_samples': ...}`` with ``pad_shape`` set and, when
    ``training``, ``gt_sem_seg`` replaced by a padded ``PixelData`` ``(1, H, W)`` int64.
    """

    def __init__(self, mean: Sequence[float] = (123.675, 116.28, 103.53),
                 std: Sequence[float] = (58.395, 57.12, 57.375), size_divisor: int | None = None,
                 pad_val: float = 0.0, seg_pad_val: int = 255, bgr_to_rgb: bool = False) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f'SegDataPreprocessor: mean {mean} and std {std} differ in length')
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1),
                             persistent=False)
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(-1, 1, 1),
                             persistent=False)
        self.size_divisor = size_divisor
        self.pad_val = pad_val
        self.seg_pad_val = seg_pad_val
        self.bgr_to_rgb = bgr_to_rgb

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        inputs = data['inputs']
        images = list(inputs) if isinstance(inputs, (list, tuple)) or inputs.dim() == 4 \
            else [inputs]
        for i, img in enumerate(images):
            if img.dim() != 3 or img.shape[0] != self.mean.shape[0]:
                raise ValueError(f'SegDataPreprocessor: image {i} must be '
                                 f'({self.mean.shape[0]}, H, W), got {tuple(img.shape)}')
        samples = data.get('data_samples')
        if samples is not None and len(samples) != len(images):
            raise ValueError(f'SegDataPreprocessor: {len(images)} images but {len(samples)} '
                             'data samples')
        pad_h, pad_w = padded_size([img.shape[-2:] for img in images], self.size_divisor)
        batch = []
        for img in images:
            img = img.float()
            if self.bgr_to_rgb:
                img = img[[2, 1, 0]]
            img = (img - self.mean) / self.std
            batch.append(F.pad(img, (0, pad_w - img.shape[-1], 0, pad_h - img.shape[-2]),
                               value=self.pad_val))
        for img, sample in zip(images, samples or []):
            shape = tuple(img.shape[-2:])
            meta = {'pad_shape': (pad_h, pad_w)}
            for key in ('img_shape', 'ori_shape'):
                if key not in sample.metainfo:
                    meta[key] = shape
            sample.set_metainfo(meta)
            # Labels are padded for training only: evaluation compares at ori_shape (as mmseg).
            if training and getattr(sample, 'gt_sem_seg', None) is not None:
                gt = label_map(sample)
                if tuple(gt.shape) != shape:
                    raise ValueError(f'gt_sem_seg {tuple(gt.shape)} and image {shape} differ '
                                     'in size')
                gt = F.pad(gt, (0, pad_w - gt.shape[-1], 0, pad_h - gt.shape[-2]),
                           value=self.seg_pad_val)
                sample.gt_sem_seg = PixelData(data=gt[None])
        return {'inputs': torch.stack(batch), 'data_samples': samples}


def _build(cfg: dict | nn.Module) -> nn.Module:
    # Modules pass through, so tests and scripts can plug in a hand-made part.
    return cfg if isinstance(cfg, nn.Module) else MODELS.build(cfg)


@MODELS.register_module()
class EncoderDecoder(BaseModel):
    """Backbone (+ neck) + decode head (+ auxiliary heads) semantic segmentor.

    Args:
        backbone: config (or module) returning a tuple of feature maps.
        decode_head: config of a head (:class:`SegFormerHead`, :class:`UPerHead`, ...).
        neck: optional config of a neck (e.g. ``FPN``) applied to the backbone's features.
        auxiliary_head: optional config or list of configs (typically :class:`FCNHead` on level
            2); a config without ``loss_decode`` gets cross-entropy with ``loss_weight=0.4``.
        test_cfg: ``mode`` (``'whole'`` or ``'slide'``), ``crop_size`` and ``stride`` (``(h, w)``,
            for slide), ``flip`` (average the softmax of the horizontally flipped image, flipped
            back), ``windows_per_batch`` (slide windows per forward pass; default all at once).
        data_preprocessor: defaults to :class:`SegDataPreprocessor`.
    """

    def __init__(self, backbone: dict | nn.Module, decode_head: dict | nn.Module,
                 neck: dict | nn.Module | None = None,
                 auxiliary_head: dict | nn.Module | Sequence[dict | nn.Module] | None = None,
                 test_cfg: dict | None = None, data_preprocessor: dict | None = None,
                 init_cfg: dict | None = None) -> None:
        # Built here, not by BaseModel, which would look in mmengine's root registry.
        super().__init__(
            data_preprocessor=MODELS.build(data_preprocessor or dict(type='SegDataPreprocessor')),
            init_cfg=init_cfg)
        self.backbone = _build(backbone)
        self.neck = _build(neck) if neck is not None else None
        self.decode_head = _build(decode_head)
        if auxiliary_head is None:
            aux: list = []
        elif isinstance(auxiliary_head, (dict, nn.Module)):
            aux = [auxiliary_head]
        else:
            aux = list(auxiliary_head)
        aux = [dict(cfg, loss_decode=cfg.get('loss_decode') or dict(
            type='SegCrossEntropyLoss', loss_weight=0.4)) if isinstance(cfg, dict) else cfg
            for cfg in aux]
        self.auxiliary_head = nn.ModuleList(_build(cfg) for cfg in aux)
        self.num_classes = self.decode_head.num_classes
        self.align_corners = self.decode_head.align_corners
        self.test_cfg = dict(mode='whole', flip=False)
        self.test_cfg.update(test_cfg or {})
        if self.test_cfg['mode'] not in ('whole', 'slide'):
            raise ValueError(f"test_cfg.mode must be 'whole' or 'slide', got "
                             f"{self.test_cfg['mode']!r}")
        if self.test_cfg['mode'] == 'slide' and not (
                self.test_cfg.get('crop_size') and self.test_cfg.get('stride')):
            raise ValueError("test_cfg mode='slide' needs crop_size and stride, e.g. "
                             'crop_size=(512, 512), stride=(341, 341)')

    # -- features and logits -------------------------------------------------------------------
    def extract_feat(self, inputs: Tensor) -> tuple[Tensor, ...]:
        """``(B, 3, H, W)`` -> the (neck's) feature tuple."""
        feats = self.backbone(inputs)
        return tuple(self.neck(feats)) if self.neck is not None else tuple(feats)

    def encode_decode(self, inputs: Tensor) -> Tensor:
        """``(B, 3, H, W)`` -> logits ``(B, K, H, W)`` (head output resized bilinearly)."""
        return resize(self.decode_head(self.extract_feat(inputs)), inputs.shape[-2:],
                      self.align_corners)

    # -- training ------------------------------------------------------------------------------
    def _head_loss(self, head: nn.Module, feats: tuple[Tensor, ...], labels: Tensor,
                   prefix: str) -> dict[str, Tensor]:
        if callable(getattr(head, 'loss', None)):
            # Heads with their own training objective (e.g. Mask2FormerHead's set losses).
            return {f'{prefix}.{k}': v for k, v in head.loss(feats, labels).items()}
        # Logits go up to the label size, labels are never resized (as mmseg).
        logits = resize(head(feats), labels.shape[-2:], head.align_corners)
        loss = head.loss_decode(logits, labels, ignore_index=head.ignore_index)
        with torch.no_grad():
            valid = labels != head.ignore_index
            correct = (logits.argmax(1) == labels) & valid
            acc = 100.0 * correct.sum() / valid.sum().clamp(min=1)
        return {f'{prefix}.{head.loss_decode.loss_name}': loss, f'{prefix}.acc_seg': acc}

    def loss(self, inputs: Tensor, data_samples: Sequence[BaseDataElement]) -> dict[str, Tensor]:
        """Losses of the decode head and the auxiliary heads on ``gt_sem_seg``."""
        if not data_samples:
            raise ValueError("mode='loss' needs data_samples with gt_sem_seg")
        labels = torch.stack([label_map(s) for s in data_samples]).to(inputs.device)
        if labels.shape[-2:] != inputs.shape[-2:]:
            raise ValueError(f'labels {tuple(labels.shape)} and inputs {tuple(inputs.shape)} '
                             'differ in size: pass data through SegDataPreprocessor')
        feats = self.extract_feat(inputs)
        losses = self._head_loss(self.decode_head, feats, labels, 'decode')
        for i, head in enumerate(self.auxiliary_head):
            prefix = 'aux' if len(self.auxiliary_head) == 1 else f'aux_{i}'
            losses.update(self._head_loss(head, feats, labels, prefix))
        return losses

    # -- inference -----------------------------------------------------------------------------
    def slide_inference(self, inputs: Tensor) -> Tensor:
        """Logits ``(B, K, H, W)`` averaged over overlapping windows (``test_cfg`` crop/stride).

        All windows have the same size, so they run as one batch (or chunks of
        ``windows_per_batch``); a count map divides the summed logits.
        """
        b, _, h, w = inputs.shape
        windows = slide_windows(h, w, self.test_cfg['crop_size'], self.test_cfg['stride'])
        crops = torch.cat([inputs[:, :, y1:y2, x1:x2] for y1, y2, x1, x2 in windows])
        chunk = (self.test_cfg.get('windows_per_batch') or len(windows)) * b
        logits = torch.cat([self.encode_decode(part) for part in crops.split(chunk)])
        logits = logits.view(len(windows), b, *logits.shape[1:])
        total = inputs.new_zeros((b, self.num_classes, h, w))
        count = inputs.new_zeros((1, 1, h, w))
        for (y1, y2, x1, x2), window_logits in zip(windows, logits):
            total[:, :, y1:y2, x1:x2] += window_logits
            count[:, :, y1:y2, x1:x2] += 1
        return total / count

    def inference(self, inputs: Tensor) -> Tensor:
        """Softmax probabilities ``(B, K, H, W)`` on the padded batch, with flip TTA if set.

        Heads with ``returns_probabilities = True`` already output class probabilities; they are
        used as they are.
        """
        run = self.slide_inference if self.test_cfg['mode'] == 'slide' else self.encode_decode
        probs = self._to_probs(run(inputs))
        if self.test_cfg.get('flip'):
            # The padded batch is flipped whole; flipping the output back realigns the pixels.
            probs = 0.5 * (probs + self._to_probs(run(inputs.flip(-1))).flip(-1))
        return probs

    def _to_probs(self, scores: Tensor) -> Tensor:
        if getattr(self.decode_head, 'returns_probabilities', False):
            return scores
        return scores.softmax(dim=1)

    def predict(self, inputs: Tensor,
                data_samples: Sequence[BaseDataElement] | None = None) -> list[BaseDataElement]:
        """Per sample: probabilities cropped to ``img_shape``, resized to ``ori_shape``, argmax."""
        if data_samples is None:
            shape = tuple(inputs.shape[-2:])
            data_samples = [BaseDataElement(metainfo=dict(img_shape=shape, ori_shape=shape))
                            for _ in range(len(inputs))]
        probs = self.inference(inputs)
        for sample, prob in zip(data_samples, probs):
            img_h, img_w = sample.metainfo.get('img_shape', prob.shape[-2:])[:2]
            ori = tuple(sample.metainfo.get('ori_shape', (img_h, img_w))[:2])
            prob = resize(prob[None, :, :img_h, :img_w], ori, self.align_corners)[0]
            sample.seg_probs = PixelData(data=prob)
            sample.pred_sem_seg = PixelData(data=prob.argmax(0, keepdim=True))
        return list(data_samples)

    def forward(self, inputs: Tensor, data_samples: Sequence[BaseDataElement] | None = None,
                mode: str = 'tensor') -> Any:
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.decode_head(self.extract_feat(inputs))
        raise ValueError(f"mode must be 'tensor', 'loss' or 'predict', got {mode!r}")
