"""Export an image head (segmentation, SR, stereo, monocular 3D) to ONNX and check it.

    python tools/export_onnx.py CONFIG CHECKPOINT --out M.onnx [--input-shape C H W] [--opset 17]
        [--iters N] [--batch-size 1] [--exporter auto|dynamo|torchscript] [--force]
        [--cfg-options KEY=VALUE ...]

``CHECKPOINT`` may be ``none`` (random weights: for parity checks and speed tests). The graph has a
fixed batch and spatial size: ``--input-shape`` is the network input (for segmentation and mono3D
the data preprocessor's padded size, for stereo one image of the pair); without it the config's
``benchmark.input_shape`` or, for mono3D, the test pipeline's ``Mono3DResize`` size padded to 32.
What the graph computes is listed in ``perception/apis/onnx_runtime.py``; run it with
``perception.apis.OnnxModel`` in place of the PyTorch model in the ``inference_*`` functions.

The file is checked with ``onnx.checker``, then run by onnxruntime on a random input and
compared with PyTorch; the max abs difference per output is printed (and returned by ``main``).
"""
from __future__ import annotations

import argparse
import math
import os

from mmengine.config import DictAction

from perception.apis.inference import init_model, model_test_pipeline
from perception.apis.onnx_runtime import OnnxModel, export_onnx, model_task, onnx_parity
from perception.engine.cli import exits_cleanly_on_user_error
from perception.engine.config import load_config
from perception.engine.errors import ConfigError

DEFAULT_SHAPES = {'seg': (3, 512, 512), 'sr': (3, 64, 64), 'stereo': (3, 256, 512),
                  'flow': (3, 256, 512)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Export an image head to ONNX.')
    parser.add_argument('config')
    parser.add_argument('checkpoint', help="weights (.pth), or 'none' for random weights")
    parser.add_argument('--out', required=True, help='output .onnx file')
    parser.add_argument('--input-shape', type=int, nargs=3, metavar=('C', 'H', 'W'))
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument('--iters', type=int,
                        help='stereo / flow: refinement iterations in the graph')
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--exporter', choices=('auto', 'dynamo', 'torchscript'), default='auto',
                        help='auto: dynamo, falling back to the TorchScript exporter')
    parser.add_argument('--force', action='store_true', help='overwrite an existing --out')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE')
    return parser.parse_args(argv)


def default_input_shape(model, task: str) -> tuple[int, int, int]:
    """The network input size to export at when ``--input-shape`` is not given."""
    shape = (model.cfg.get('benchmark') or {}).get('input_shape')
    if shape and len(shape) == 3:
        return tuple(int(v) for v in shape)
    if task == 'mono3d':
        for t in model_test_pipeline(model):
            if str(t.get('type', '')).endswith('Mono3DResize'):
                h, w = t['out_shape']
                divisor = model.cfg.model.get('data_preprocessor', {}).get('size_divisor', 32)
                return 3, math.ceil(h / divisor) * divisor, math.ceil(w / divisor) * divisor
        raise ConfigError('no Mono3DResize in the test pipeline: pass --input-shape 3 H W')
    return DEFAULT_SHAPES[task]


@exits_cleanly_on_user_error
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if os.path.exists(args.out) and not args.force:
        raise ConfigError(f'{args.out} exists; pass --force to overwrite it')
    cfg = load_config(args.config, args.cfg_options)
    checkpoint = None if args.checkpoint.lower() == 'none' else args.checkpoint
    model = init_model(cfg, checkpoint, 'cpu')
    task = model_task(model)
    if task not in ('seg', 'sr', 'stereo', 'flow', 'mono3d'):
        raise ConfigError(f'{args.config}: ONNX export covers the image heads (seg, sr, stereo, '
                          f'flow, mono3d), not {task}')
    shape = tuple(args.input_shape) if args.input_shape else default_input_shape(model, task)
    dynamo = {'auto': None, 'dynamo': True, 'torchscript': False}[args.exporter]
    meta = export_onnx(model, args.out, shape, opset=args.opset, iters=args.iters,
                       batch_size=args.batch_size, dynamo=dynamo)
    diffs = onnx_parity(model, OnnxModel(args.out))
    size = 'x'.join(map(str, (args.batch_size, *shape)))
    print(f'{args.out}: {task} {type(model).__name__}, input {size}, exporter {meta["exporter"]}, '
          f'{os.path.getsize(args.out) / 2**20:.1f} MiB')
    for name, diff in diffs.items():
        print(f'  max |onnxruntime - pytorch| {name}: {diff:.3g}')
    return {**meta, 'max_abs_diff': diffs}


if __name__ == '__main__':
    main()
