"""Hooks added by the command-line tools."""
from __future__ import annotations

import os
from typing import Any, Sequence

import cv2
import numpy as np
from mmengine.hooks import Hook

from ..registry import HOOKS


@HOOKS.register_module()
class SavePredictionsHook(Hook):
    """Write each test prediction that is an image (``pred_img``) as a PNG to ``out_dir``.

    File names come from the sample's ``name`` metainfo (falling back to a running index), so they
    line up with the inputs; ``tools/test.py --show-dir`` installs this hook.
    """

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir
        self._count = 0

    def before_test(self, runner: Any) -> None:
        os.makedirs(self.out_dir, exist_ok=True)

    def after_test_iter(self, runner: Any, batch_idx: int, data_batch: Any = None,
                        outputs: Sequence[Any] | None = None) -> None:
        for sample in outputs or []:
            image = getattr(sample, 'pred_img', None)
            if image is None:
                continue
            name = sample.metainfo.get('name', f'{self._count:06d}')
            array = (image.detach().float().clamp(0, 1) * 255).round().byte().cpu().numpy()
            array = np.ascontiguousarray(array.transpose(1, 2, 0))
            if array.shape[2] == 3:
                array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
            cv2.imwrite(os.path.join(self.out_dir, f'{name}.png'), array)
            self._count += 1
