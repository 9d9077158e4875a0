"""The trainable wrapper that turns an SR network into an mmengine model.

Data flow: the dataset yields ``inputs`` (LR image, ``(C, h, w)`` float in [0, 1]) and a
``BaseDataElement`` with ``gt_img`` (``(C, h * s, w * s)``); ``SRDataPreprocessor`` stacks them on
the model's device; ``SuperResolver`` returns a loss dict in ``mode='loss'`` and data samples with
``pred_img`` in ``mode='predict'``.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from mmengine.model import BaseDataPreprocessor, BaseModel
from mmengine.structures import BaseDataElement

from ...registry import MODELS
from ..layers.batching import stack_same_size

# The DIV2K training set's RGB mean in [0, 1]: SwinIR, HiT-SR and DRCT subtract it inside their
# networks; here ``SuperResolver(pixel_mean=DIV2K_RGB_MEAN)`` does, with the same result.
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


@MODELS.register_module()
class SRDataPreprocessor(BaseDataPreprocessor):
    """Stack LR inputs into ``(B, C, h, w)`` and GT images into ``data_samples`` on the device."""

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        inputs = stack_same_size(data['inputs'], 'LR images')
        return {'inputs': inputs.float(), 'data_samples': data.get('data_samples')}


@MODELS.register_module()
class SuperResolver(BaseModel):
    """Super-resolution model: a network, a pixel loss, and [0, 1] clamped predictions.

    Args:
        network: config of the upscaling network (``(B, C, h, w) -> (B, C, h*s, w*s)``).
        pixel_loss: config of the loss between prediction and GT.
        pixel_mean: subtracted from the input and added back to the output, per channel (or one
            value for all), so the network works on zero-centred images. On the demo data ESPCN
            passes the bicubic baseline within 1,000 iterations this way; on raw [0, 1] input it
            was still 0.2 dB below bicubic after 2,000.
        data_preprocessor: defaults to :class:`SRDataPreprocessor`.
    """

    def __init__(self,
                 network: dict,
                 pixel_loss: dict | None = None,
                 pixel_mean: float | Sequence[float] = 0.5,
                 data_preprocessor: dict | None = None,
                 init_cfg: dict | None = None) -> None:
        # Built here, not by BaseModel, which would look in mmengine's root registry.
        super().__init__(
            data_preprocessor=MODELS.build(data_preprocessor or dict(type='SRDataPreprocessor')),
            init_cfg=init_cfg)
        self.network = MODELS.build(network)
        self.pixel_loss = MODELS.build(pixel_loss or dict(type='L1Loss'))
        mean = torch.tensor(pixel_mean, dtype=torch.float32).reshape(1, -1, 1, 1)
        self.register_buffer('pixel_mean', mean, persistent=False)

    def upscale(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` LR in [0, 1] -> ``(B, C, h*s, w*s)`` SR, not clamped."""
        return self.network(inputs - self.pixel_mean) + self.pixel_mean

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Sequence[BaseDataElement] | None = None,
                mode: str = 'tensor') -> Any:
        if mode == 'tensor':
            return self.upscale(inputs)
        if mode == 'loss':
            if not data_samples:
                raise ValueError("mode='loss' needs data_samples with gt_img")
            gt = torch.stack([s.gt_img for s in data_samples]).to(inputs)
            pred = self.upscale(inputs)
            if pred.shape != gt.shape:
                raise ValueError(f'prediction {tuple(pred.shape)} and GT {tuple(gt.shape)} differ: '
                                 "is the network's scale the dataset's scale?")
            return {'loss_pix': self.pixel_loss(pred, gt)}
        if mode == 'predict':
            pred = self.upscale(inputs).clamp(0, 1)
            samples = list(data_samples) if data_samples else [
                BaseDataElement() for _ in range(len(pred))
            ]
            for sample, image in zip(samples, pred):
                sample.pred_img = image
            return samples
        raise ValueError(f"mode must be 'tensor', 'loss' or 'predict', got {mode!r}")
