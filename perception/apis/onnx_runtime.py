"""Export the image heads to ONNX and run them with onnxruntime behind the inference API.

The exported graph holds the network only; the pre- and post-processing stay in
``perception.apis.inference`` (the same code for a PyTorch model and an :class:`OnnxModel`), so the
two give comparable results. What each graph maps (batch size and spatial size are fixed at export):

- ``seg``: ``images`` (B, 3, H, W) normalised (the data preprocessor's output) -> ``probs``
  (B, K, H, W) softmax probabilities (``EncoderDecoder.inference``).
- ``sr``: ``lr`` (B, 3, h, w) in [0, 1] -> ``sr`` (B, 3, s*h, s*w), not clamped.
- ``stereo``: ``pair`` (B, 2, 3, H, W) in [-1, 1] -> ``disparity`` (B, H, W), fixed iterations.
- ``flow``: ``pair`` (B, 2, 3, H, W) in [-1, 1] -> ``flow`` (B, 2, H, W) ``(u, v)``, fixed
  iterations.
- ``mono3d``: ``images`` (B, 3, H, W) normalised and ``focal`` (B,) -> the last decoder layer's
  raw head outputs ``logits`` (B, N, K), ``boxes`` (B, N, 6), ``dims`` (B, N, 3), ``depth``
  (B, N, 2), ``heading`` (B, N, 24); the decoding (top-k, back-projection) runs outside.

The model's JSON metadata (key ``perception``) records the task, the input shapes, the data
preprocessor and test pipeline configs and the post-processing settings, so an :class:`OnnxModel`
needs no config file.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from mmengine.registry import DefaultScope
from torch import nn

from ..engine.errors import ConfigError, DataError
from ..registry import MODELS, SCOPE

__all__ = ['MONO3D_OUTPUTS', 'OnnxModel', 'export_onnx', 'model_task', 'mono3d_raw_outputs',
           'onnx_parity']

MONO3D_OUTPUTS = ('logits', 'boxes', 'dims', 'depth', 'heading')
METADATA_KEY = 'perception'
TASKS = ('seg', 'sr', 'stereo', 'flow', 'mono3d', 'lidar3d')


def model_task(model: Any) -> str:
    """The task of a model: ``'seg'``, ``'sr'``, ``'stereo'``, ``'flow'``, ``'mono3d'`` or
    ``'lidar3d'``.

    An :class:`OnnxModel` says it; a PyTorch model is recognised by the methods the inference API
    calls (``predict_disparity``: stereo, ``predict_flow``: flow, ``upscale``: SR,
    ``forward_layers``: MonoDETR-style mono3D, ``decode_head``: segmentation) or, for LiDAR
    detectors, by a test pipeline that loads points (or its class name).
    """
    task = getattr(model, 'task', None)
    if isinstance(task, str) and task in TASKS:
        return task
    if hasattr(model, 'predict_disparity'):
        return 'stereo'
    if hasattr(model, 'predict_flow'):
        return 'flow'
    if hasattr(model, 'upscale'):
        return 'sr'
    if hasattr(model, 'forward_layers') and hasattr(model, 'test_cfg'):
        return 'mono3d'
    if hasattr(model, 'decode_head') and hasattr(model, 'inference'):
        return 'seg'
    from .inference import model_test_pipeline  # the API module imports this one

    loads_points = any(str(t.get('type', '')).endswith('LoadPointsFromFile')
                       for t in model_test_pipeline(model))
    if loads_points or 'lidar' in type(model).__name__.lower() or \
            hasattr(model, 'point_cloud_range'):
        return 'lidar3d'
    raise ValueError(f'cannot tell the task of a {type(model).__name__}: expected a stereo, SR, '
                     'segmentation, monocular 3D or LiDAR 3D model')


def mono3d_raw_outputs(model: nn.Module, images: torch.Tensor,
                       focal: torch.Tensor) -> dict[str, torch.Tensor]:
    """The last decoder layer's head outputs of a MonoDETR-style model (no decoding).

    Args:
        images: ``(B, 3, H, W)`` normalised; focal: ``(B,)`` ``cam2img[0, 0]`` of the network input.

    Returns:
        ``logits`` ``(B, N, K)``, ``boxes`` ``(B, N, 6)``, ``dims`` ``(B, N, 3)``, ``depth``
        ``(B, N, 2)``, ``heading`` ``(B, N, 24)`` (see ``MonoDETR.forward_layers``).
    """
    if isinstance(model, OnnxModel):
        return model.mono3d_outputs(images, focal)
    layers, _ = model.forward_layers(images, focal)
    return {k: layers[-1][k] for k in MONO3D_OUTPUTS}


# ----------------------------------------------------------------------------- export
class _ExportWrapper(nn.Module):
    """The part of a model that goes into the graph, as a plain ``forward`` of tensors."""

    def __init__(self, model: nn.Module, task: str, iters: int | None) -> None:
        super().__init__()
        self.model = model
        self.task = task
        self.iters = iters

    def forward(self, *inputs: torch.Tensor) -> Any:
        if self.task == 'seg':
            return self.model.inference(inputs[0])
        if self.task == 'sr':
            return self.model.upscale(inputs[0])
        if self.task == 'stereo':
            return self.model.predict_disparity(inputs[0], self.iters)
        if self.task == 'flow':
            return self.model.predict_flow(inputs[0], self.iters)
        out = mono3d_raw_outputs(self.model, inputs[0], inputs[1])
        return tuple(out[k] for k in MONO3D_OUTPUTS)


def _io_spec(task: str, shape: Sequence[int], batch: int) -> tuple[dict, list[str]]:
    """Example input tensors by name and the output names of a task's graph."""
    c, h, w = (int(v) for v in shape)
    if task == 'stereo':
        return {'pair': torch.rand(batch, 2, c, h, w) * 2 - 1}, ['disparity']
    if task == 'flow':
        return {'pair': torch.rand(batch, 2, c, h, w) * 2 - 1}, ['flow']
    if task == 'sr':
        return {'lr': torch.rand(batch, c, h, w)}, ['sr']
    if task == 'seg':
        return {'images': torch.randn(batch, c, h, w)}, ['probs']
    if task == 'mono3d':
        return ({'images': torch.randn(batch, c, h, w), 'focal': torch.full((batch,), 700.0)},
                list(MONO3D_OUTPUTS))
    raise ConfigError(f'ONNX export supports the image heads (seg, sr, stereo, flow, mono3d), '
                      f'not {task}')


def _cfg_to_plain(value: Any) -> Any:
    """mmengine ConfigDict / tuples -> JSON-able dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): _cfg_to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_cfg_to_plain(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return value


def export_metadata(model: nn.Module, task: str, input_shape: Sequence[int], batch: int,
                    iters: int | None) -> dict:
    """What an :class:`OnnxModel` needs besides the graph (JSON-able)."""
    from .inference import model_test_pipeline  # the API module imports this one

    cfg = getattr(model, 'cfg', None)
    meta: dict[str, Any] = {'task': task, 'input_shape': [int(v) for v in input_shape],
                            'batch_size': int(batch), 'model_type': type(model).__name__}
    if cfg is not None:
        meta['data_preprocessor'] = _cfg_to_plain(cfg.model.get('data_preprocessor'))
        meta['test_pipeline'] = _cfg_to_plain(model_test_pipeline(model))
    if task in ('stereo', 'flow'):
        meta['iters'] = int(iters if iters is not None else model.test_iters)
    if task == 'seg':
        meta['align_corners'] = bool(getattr(model, 'align_corners', False))
        meta['num_classes'] = int(model.num_classes)
    if task == 'mono3d':
        meta['test_cfg'] = _cfg_to_plain(dict(model.test_cfg))
        meta['classes'] = list(model.classes)
    return meta


def export_onnx(model: nn.Module, out: str | os.PathLike, input_shape: Sequence[int],
                opset: int = 17, iters: int | None = None, batch_size: int = 1,
                dynamo: bool | None = None) -> dict:
    """Export an image head to ``out`` (written atomically) and check it with ``onnx.checker``.

    Args:
        model: a PyTorch model from ``init_model`` (``model.cfg`` set), in eval mode.
        input_shape: one input ``(C, H, W)`` (for stereo and flow: one image of the pair). For
            seg and mono3D this is the network input, i.e. the data preprocessor's padded size.
        opset: ONNX opset (the dynamo exporter may raise it to the lowest it supports).
        iters: stereo / flow refinement iterations baked into the graph (default ``test_iters``).
        batch_size: the graph's fixed batch size (``OnnxModel`` runs larger batches in chunks).
        dynamo: ``True`` / ``False`` forces ``torch.onnx.export(dynamo=...)``; ``None`` tries
            dynamo first and falls back to the TorchScript exporter.

    Returns:
        the metadata stored in the model, plus ``exporter`` (``'dynamo'`` / ``'torchscript'``).
    """
    import onnx

    task = model_task(model)
    if len(input_shape) != 3:
        raise ConfigError(f'input shape must be C H W, got {list(input_shape)}')
    inputs, output_names = _io_spec(task, input_shape, batch_size)
    wrapper = _ExportWrapper(model.eval(), task, iters).eval()
    args = tuple(inputs.values())
    meta = export_metadata(model, task, input_shape, batch_size, iters)
    if task in ('stereo', 'flow'):
        wrapper.iters = meta['iters']
    errors = []
    proto = None
    for use_dynamo in ([dynamo] if dynamo is not None else [True, False]):
        try:
            proto = _export_proto(wrapper, args, list(inputs), output_names, opset, use_dynamo)
            meta['exporter'] = 'dynamo' if use_dynamo else 'torchscript'
            break
        except Exception as error:  # noqa: BLE001 - report both exporters' failures
            errors.append(f'{"dynamo" if use_dynamo else "torchscript"}: '
                          f'{type(error).__name__}: {str(error)[:500]}')
    if proto is None:
        raise RuntimeError(f'ONNX export of {type(model).__name__} failed:\n' + '\n'.join(errors))
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    onnx.checker.check_model(proto)
    out = os.fspath(out)
    directory = os.path.dirname(os.path.abspath(out))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.tmp-', suffix='.onnx', dir=directory)
    os.close(fd)
    try:
        onnx.save(proto, tmp)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return meta


def _export_proto(wrapper: nn.Module, args: tuple, input_names: list[str],
                  output_names: list[str], opset: int, dynamo: bool):
    """One exporter's ``onnx.ModelProto`` of ``wrapper(*args)``."""
    import onnx

    # The exporters print graphs and hints on failure; the caller reports the error instead.
    sink = io.StringIO()
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(sink), \
            contextlib.redirect_stderr(sink):
        warnings.simplefilter('ignore')
        if dynamo:
            program = torch.onnx.export(wrapper, args, input_names=input_names,
                                        output_names=output_names, opset_version=max(opset, 18),
                                        dynamo=True, verbose=False)
            return program.model_proto
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, 'model.onnx')
            torch.onnx.export(wrapper, args, path, input_names=input_names,
                              output_names=output_names, opset_version=opset, dynamo=False)
            return onnx.load(path)


# ----------------------------------------------------------------------------- runtime
class OnnxModel:
    """An exported head run by onnxruntime (CPU), usable in place of the PyTorch model by
    ``inference_segmentation``, ``inference_sr``, ``inference_stereo``, ``inference_flow`` and
    ``inference_mono3d``.

    It offers the methods those functions call (``data_preprocessor``, ``inference``,
    ``upscale``, ``predict_disparity``, ``predict_flow``, ``mono3d_outputs``) on torch tensors.
    The graph's batch size and spatial size are fixed: larger batches run in chunks, other sizes
    raise ``DataError``.

    Args:
        path: an ``.onnx`` file written by :func:`export_onnx`.
        providers: onnxruntime execution providers.
        threads: onnxruntime intra-op threads (default: onnxruntime decides, i.e. all cores).
    """

    def __init__(self, path: str | os.PathLike,
                 providers: Sequence[str] = ('CPUExecutionProvider',),
                 threads: int | None = None) -> None:
        try:
            import onnxruntime
        except ImportError as error:
            raise ImportError('OnnxModel needs onnxruntime: pip install onnxruntime') from error
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise DataError(f'{self.path}: ONNX model not found')
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = onnxruntime.InferenceSession(self.path, options,
                                                        providers=list(providers))
        except Exception as error:  # onnxruntime raises its own exception types
            raise DataError(f'{self.path}: onnxruntime cannot load it: {error}') from error
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if raw is None:
            raise DataError(f'{self.path}: no `{METADATA_KEY}` metadata; export the model with '
                            'tools/export_onnx.py')
        self.meta = json.loads(raw)
        self.task: str = self.meta['task']
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.batch_size = int(self.meta.get('batch_size', 1))
        self.device = torch.device('cpu')
        self.test_pipeline_cfg = self.meta.get('test_pipeline')
        self.test_cfg = self.meta.get('test_cfg', {})
        self.classes = tuple(self.meta.get('classes', ()))
        self.align_corners = self.meta.get('align_corners', False)
        self.num_classes = self.meta.get('num_classes')
        self.test_iters = self.meta.get('iters')
        preprocessor = self.meta.get('data_preprocessor')
        self.data_preprocessor = None
        if preprocessor is not None:
            with DefaultScope.overwrite_default_scope(SCOPE):
                self.data_preprocessor = MODELS.build(preprocessor).eval()

    def __repr__(self) -> str:
        return (f'OnnxModel({self.path!r}, task={self.task!r}, '
                f'input_shape={self.meta.get("input_shape")}, batch_size={self.batch_size})')

    def eval(self) -> OnnxModel:
        return self

    def run(self, *inputs: torch.Tensor | np.ndarray) -> list[np.ndarray]:
        """Run the graph on full batches; a batch larger than the exported one runs in chunks.

        Inputs are in the graph's order with the exported shapes except the batch dimension.
        """
        arrays = [np.ascontiguousarray(x.detach().cpu().numpy() if torch.is_tensor(x) else x,
                                       dtype=np.float32) for x in inputs]
        expected = [tuple(i.shape) for i in self.session.get_inputs()]
        for name, array, shape in zip(self.input_names, arrays, expected):
            if tuple(array.shape[1:]) != tuple(shape[1:]):
                raise DataError(f'{self.path}: input `{name}` must be (B, '
                                f'{", ".join(map(str, shape[1:]))}) (the size it was exported '
                                f'at), got {tuple(array.shape)}; re-export with '
                                '--input-shape matching the preprocessed input')
        total = len(arrays[0])
        b = self.batch_size
        outs: list[list[np.ndarray]] = [[] for _ in self.output_names]
        for start in range(0, total, b):
            chunk = [a[start:start + b] for a in arrays]
            short = b - len(chunk[0])
            if short:  # the last chunk is padded with copies of its first item, then cut
                chunk = [np.concatenate([c, np.repeat(c[:1], short, axis=0)]) for c in chunk]
            result = self.session.run(self.output_names, dict(zip(self.input_names, chunk)))
            for store, value in zip(outs, result):
                store.append(value[:b - short])
        return [np.concatenate(parts) for parts in outs]

    def _check_task(self, task: str, method: str) -> None:
        if self.task != task:
            raise ValueError(f'{self.path} is a {self.task} model; {method} needs a {task} model')

    def inference(self, images: torch.Tensor) -> torch.Tensor:
        """Segmentation: ``(B, 3, H, W)`` normalised -> probabilities ``(B, K, H, W)``."""
        self._check_task('seg', 'inference')
        return torch.from_numpy(self.run(images)[0])

    def upscale(self, lr: torch.Tensor) -> torch.Tensor:
        """SR: ``(B, 3, h, w)`` in [0, 1] -> ``(B, 3, s*h, s*w)``, not clamped."""
        self._check_task('sr', 'upscale')
        return torch.from_numpy(self.run(lr)[0])

    def predict_disparity(self, inputs: torch.Tensor, iters: int | None = None) -> torch.Tensor:
        """Stereo: ``(B, 2, 3, H, W)`` in [-1, 1] -> disparity ``(B, H, W)``."""
        self._check_task('stereo', 'predict_disparity')
        if iters is not None and iters != self.test_iters:
            raise ValueError(f'{self.path} was exported with {self.test_iters} iterations, '
                             f'asked for {iters}')
        return torch.from_numpy(self.run(inputs)[0])

    def predict_flow(self, inputs: torch.Tensor, iters: int | None = None) -> torch.Tensor:
        """Flow: ``(B, 2, 3, H, W)`` in [-1, 1] -> flow ``(B, 2, H, W)`` ``(u, v)``."""
        self._check_task('flow', 'predict_flow')
        if iters is not None and iters != self.test_iters:
            raise ValueError(f'{self.path} was exported with {self.test_iters} iterations, '
                             f'asked for {iters}')
        return torch.from_numpy(self.run(inputs)[0])

    def mono3d_outputs(self, images: torch.Tensor, focal: torch.Tensor) -> dict[str, torch.Tensor]:
        """Mono3D: raw last-layer head outputs, as :func:`mono3d_raw_outputs`."""
        self._check_task('mono3d', 'mono3d_outputs')
        outs = self.run(images, focal)
        return {k: torch.from_numpy(v) for k, v in zip(self.output_names, outs)}


def onnx_parity(model: nn.Module, onnx_model: OnnxModel, seed: int = 0) -> dict[str, float]:
    """Max abs difference per output between PyTorch and onnxruntime on one random input.

    The input is drawn as the export's example (batch and shape of the graph, the task's value
    range), so the comparison covers exactly what the graph computes.
    """
    torch.manual_seed(seed)
    meta = onnx_model.meta
    inputs, names = _io_spec(meta['task'], meta['input_shape'], int(meta.get('batch_size', 1)))
    wrapper = _ExportWrapper(model.eval(), meta['task'], meta.get('iters')).eval()
    with torch.inference_mode():
        expected = wrapper(*inputs.values())
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = onnx_model.run(*inputs.values())
    return {name: float(np.abs(g - e.float().cpu().numpy()).max())
            for name, g, e in zip(names, got, expected)}
