"""Time our models against the official PyTorch code: same weights, same input, one process.

    python tools/benchmark_official.py --official-root /tmp/official
        [--models raft-stereo igev swinir-light hit-sr raft sea-raft-s monodetr flatformer]
        [--runs 3 --warmup 1 --threads 1]

For each model the official module is built and filled with seeded random weights (every
parameter and BatchNorm statistic, the same fill for every run), those weights are converted
into ours with the model's ``convert_official_state_dict`` (the same function
``tools/convert_ckpt.py`` uses), both run once on one seeded input and the largest absolute
difference of their outputs is printed (a check that the same network is being timed). Then the
two forwards alternate (official, ours, official, ours, ...) under ``torch.inference_mode`` with
``--threads`` intra-op threads, ``--warmup`` rounds untimed and ``--runs`` rounds timed, and a
markdown table gives the medians and ``ratio = ours / official`` (below 1: ours is faster).

Both sides get the same tensors and do the same work: 0-255 images (each side scales them to
[-1, 1] in its timed call, as the official forwards do), padded beforehand to the multiple the
official demo pads to; the timed call is the whole network with test-mode outputs.

``--official-root`` holds the official repositories, unmodified, one folder each (the script
never writes there): ``RAFT-Stereo`` (princeton-vl/RAFT-Stereo), ``IGEV`` (gangweiX/IGEV),
``SwinIR`` (JingyunLiang/SwinIR), ``HiT-SR`` (XiangZ-0/HiT-SR), ``RAFT`` (princeton-vl/RAFT),
``SEA-RAFT`` (princeton-vl/SEA-RAFT), ``MonoDETR`` (ZrrSkywalker/MonoDETR), ``flatformer``
(mit-han-lab/flatformer). A model whose folder is missing is skipped with a message.
The official code imports timm (SwinIR, HiT-SR, IGEV's MobileNetV2), torchvision (also
MonoDETR's ResNet-50 and box helpers; torchvision 0.28.0 with torch 2.13),
huggingface_hub (< 1.0, with requests) and opt_einsum (RAFT-Stereo); a folder ``_site`` under
the root, if present, is put first on ``sys.path`` so that those can be installed there (``pip
install --target``) without touching the project's environment (timm 0.5.4 serves all three;
with the PyPI torchvision wheel, a CUDA build, on the CPU torch build its
``_meta_registrations.py`` must be emptied there, as its compiled ops cannot load: only its
Python layers are used). Two things are changed at run time, not in the files, because the
official constructors download ImageNet weights that the seeded fill overwrites anyway: IGEV's
``timm.create_model(..., pretrained=True)`` is called with ``pretrained=False`` and SEA-RAFT's
``ResNetFPN._init_weights`` (kaiming init + torchvision download) is skipped. The official
code's own CPU paths are timed: RAFT-Stereo and RAFT ``reg``/full correlation,
``mixed_precision`` off; IGEV ``mixed_precision`` off (float32).

MonoDETR (``lib/models/monodetr``, ``configs/monodetr.yaml``): the network is built with the
official ``build``'s own constructor calls, without the criterion (its ``DDNLoss`` calls
``torch.cuda.current_device()``). Three things are supplied at run time, none in the files: the
compiled deformable-attention extension (``import MultiScaleDeformableAttention as MSDA``,
CUDA only) is a stand-in module whose ``ms_deform_attn_forward`` calls the official pure-PyTorch
``ms_deform_attn_core_pytorch``; ``ops/modules/ms_deform_attn.py`` tests ``(major == 1 and
minor) < 9`` (and ``< 7``), true on torch 2.x, and then imports ``_LinearWithBias`` and
``torch._overrides``, gone since torch 1.9, so during the import they are lent under those names
(the ``NonDynamicallyQuantizableLinear`` and ``torch.overrides`` its torch >= 1.9 branches
import); the backbone's ``pretrained=is_main_process()`` (a torchvision download) is called
with ``False``. Beyond ``fill_seeded_``, ``FrozenBatchNorm2d``'s scale and shift (buffers) are
seeded too and the LID bin centres ``depth_bin_values`` (a frozen parameter) keep their values.
The compared output is the last decoder layer's class logits (official class order mapped to
ours), boxes, 3D sizes, depth and log-variance, heading bins, and the depth-map logits.

FlatFormer (``mmdet3d/models/middle_encoders/flatformer.py``): that file alone is loaded, with
stand-ins for what it imports: ``mmcv.runner.auto_fp16`` (a pass-through: ``fp16_enabled`` is
False, so the real decorator casts nothing), ``..builder.MIDDLE_ENCODERS`` (a registry whose
``register_module()`` returns the class) and ``flash_attn.flash_attn_interface``'s
``flash_attn_unpadded_qkvpacked_func`` (CUDA only), computed for the equal-length groups the
official ``FlashAttention`` passes as ``scaled_dot_product_attention`` (same softmax attention;
the only op not the official code's own). Its ``PositionalEmbedding.inv_freq`` builds a tensor
with ``device="cuda"``; that call runs under a torch function mode that makes it on the CPU.
The official blocks write into their input features, so each official call gets a copy.

Inputs (issue 20): RAFT-Stereo 375x1242 (KITTI), 12 iterations; IGEV-Stereo 375x1242, its
evaluation default of 32 iterations; SwinIR-light x4 and HiT-SRF x4 on a 256x256 low-resolution
input (1024x1024 output); RAFT 436x1024 (Sintel), 12 iterations; SEA-RAFT-S 436x1024 with its
published 4 iterations; MonoDETR R50 (``configs/monodetr/monodetr_r50_kitti-mono3d.py``) on one
384x1280 image normalised with the ImageNet mean / std, a KITTI-like P2 (f = 721.5377) and
``img_sizes = (1280, 384)`` for the official geometric depth (ours uses the input size); the
FlatFormer backbone at the published size (128 channels, 8 heads, 2 blocks of 4 layers, 13 x 13
windows, groups of 144: ``flatformer_waymo_D1_2x_3class.py``) on the pillar grid of
``configs/flatformer/flatformer_kitti-3d-3class.py`` (0.32 m, X 220 x Y 250), fed the shipped
KITTI frame 000008 (``data/demo/kitti_000008``, else the shared ``kitti_mini``) pillarised by our
``DynamicVFE`` (seeded, untimed) and cut to a multiple of 144 pillars (the two definitions
agree exactly there: the official pads a cloud's last group with copies of its pillars, ours
masks the padding). Both FlatFormer sides return the BEV map (the official ``recover_bev``,
our ``sparse_to_bev``).
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class Row:
    """One line of the table; times are medians in seconds."""
    model: str
    input: str
    iterations: str
    official_s: float
    ours_s: float
    max_diff: float

    @property
    def ratio(self) -> float:
        return self.ours_s / self.official_s


def format_table(rows: Sequence[Row]) -> str:
    """The markdown table printed at the end (and pasted into docs/model_zoo.md)."""
    lines = ['| model | input | iterations | official median s | ours median s | ratio ours / '
             'official | max diff |',
             '| --- | --- | --- | --- | --- | --- | --- |']
    for r in rows:
        lines.append(f'| {r.model} | {r.input} | {r.iterations} | {r.official_s:.3f} | '
                     f'{r.ours_s:.3f} | {r.ratio:.2f} | {r.max_diff:.1e} |')
    return '\n'.join(lines)


# --------------------------------------------------------------------------------------------
# Seeded weights and inputs


def fill_seeded_(model: nn.Module, seed: int) -> None:
    """Overwrite every parameter and BatchNorm running statistic from per-tensor seeds.

    Weights ~ N(0, 1 / fan_in), norm scales ~ 1 + N(0, 0.1^2), biases and running means
    ~ N(0, 0.1^2), running variances ~ U(0.5, 1.5). Other buffers (attention masks, position
    indices) are left as the module computed them.
    """
    tensors = dict(model.named_parameters())
    tensors.update((n, b) for n, b in model.named_buffers()
                   if n.endswith(('running_mean', 'running_var')))
    with torch.no_grad():
        for i, name in enumerate(sorted(tensors)):
            t = tensors[name]
            g = torch.Generator().manual_seed(seed * 1000 + i)
            if name.endswith('running_var'):
                value = 0.5 + torch.rand(t.shape, generator=g)
            elif t.dim() > 1:
                value = torch.randn(t.shape, generator=g) / t[0].numel() ** 0.5
            elif name.endswith('weight'):
                value = 1 + 0.1 * torch.randn(t.shape, generator=g)
            else:
                value = 0.1 * torch.randn(t.shape, generator=g)
            t.copy_(value)


def seeded_images(seed: int, n: int, h: int, w: int) -> list[Tensor]:
    """``n`` float32 ``(1, 3, h, w)`` images in 0-255: smooth blobs plus noise, the later ones
    shifted copies of the first (so stereo and flow see matchable structure)."""
    g = torch.Generator().manual_seed(seed)
    big = F.interpolate(torch.rand(1, 3, h // 8 + 4, w // 8 + 4, generator=g),
                        size=(h + 16, w + 16), mode='bicubic', align_corners=False)
    images = [big[..., 8 - 3 * k:8 - 3 * k + h, 8 - 2 * k:8 - 2 * k + w]
              + 0.05 * torch.rand(1, 3, h, w, generator=g) for k in range(n)]
    lo = min(float(x.amin()) for x in images)
    hi = max(float(x.amax()) for x in images)
    return [(255 * (x - lo) / (hi - lo)).contiguous() for x in images]


def pad_to(x: Tensor, divisor: int) -> Tensor:
    """Replicate-pad ``(N, C, H, W)`` to multiples of ``divisor``, split evenly (the official
    ``InputPadder``)."""
    ph, pw = (-x.shape[-2]) % divisor, (-x.shape[-1]) % divisor
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode='replicate')


def to_unit(x: Tensor) -> Tensor:
    """0-255 -> [-1, 1], the official stereo and flow scaling."""
    return 2 * (x / 255.0) - 1.0


# --------------------------------------------------------------------------------------------
# Importing the official code


@contextlib.contextmanager
def official_imports(*folders: Path) -> Iterator[None]:
    """Put ``folders`` first on ``sys.path`` for the block, then forget the modules imported
    from them: the official repositories reuse top-level names (``core``, ``utils``, ``corr``),
    so each model's modules must not be found by the next one."""
    before = set(sys.modules)
    sys.path[:0] = [str(f) for f in folders]
    try:
        yield
    finally:
        del sys.path[:len(folders)]
        roots = tuple(str(f.resolve()) for f in folders)

        def from_folders(module: object) -> bool:
            # namespace packages (MonoDETR's ``lib``) have no file, only a search path
            spec = getattr(module, '__spec__', None)
            files = [getattr(module, '__file__', None) or '',
                     *(list(getattr(spec, 'submodule_search_locations', None) or []))]
            return any(f and str(Path(f).resolve()).startswith(roots) for f in files)

        # decide first, delete after: a namespace path is recomputed from its parent package
        stale = [name for name in set(sys.modules) - before
                 if name in ('core', 'utils') or from_folders(sys.modules[name])]
        for name in stale:
            del sys.modules[name]


@dataclass
class Pair:
    """The two timed calls and what their outputs are."""
    official: Callable[[], Tensor]
    ours: Callable[[], Tensor]
    input: str
    iterations: str


def _load_converted(ours: nn.Module, official: nn.Module,
                    convert: Callable[[dict[str, Tensor]], dict[str, Tensor]]) -> None:
    ours.load_state_dict(convert(official.state_dict()), strict=True)


def build_raft_stereo(root: Path) -> Pair:
    from perception.models.stereo.raft_stereo import RAFTStereo, convert_official_state_dict
    with official_imports(root / 'RAFT-Stereo'):
        from core.raft_stereo import RAFTStereo as Official
        args = SimpleNamespace(hidden_dims=[128] * 3, context_norm='batch', n_downsample=2,
                               n_gru_layers=3, corr_implementation='reg', corr_levels=4,
                               corr_radius=4, shared_backbone=False, slow_fast_gru=False,
                               mixed_precision=False)
        official = Official(args).eval()
    fill_seeded_(official, 0)
    ours = RAFTStereo().eval()
    _load_converted(ours, official, convert_official_state_dict)
    left, right = (pad_to(x, 32) for x in seeded_images(0, 2, 375, 1242))
    iters = 12
    return Pair(
        # official: x-flow (right - left, negative); ours: positive disparity
        official=lambda: -official(left, right, iters=iters, test_mode=True)[1],
        ours=lambda: ours.forward_disparity(to_unit(left), to_unit(right), iters,
                                            test_mode=True)[-1],
        input='375x1242 (padded 384x1248)', iterations=str(iters))


def build_igev(root: Path) -> Pair:
    import timm

    from perception.models.stereo.igev_stereo import IGEVStereo, convert_official_state_dict
    create_model = timm.create_model
    # the official Feature() asks for ImageNet weights (a download): the seeded fill replaces them
    timm.create_model = lambda *a, **kw: create_model(*a, **{**kw, 'pretrained': False})
    try:
        with official_imports(root / 'IGEV' / 'IGEV-Stereo'):
            import core.extractor
            core.extractor.timm = timm
            from core.igev_stereo import IGEVStereo as Official
            args = SimpleNamespace(hidden_dims=[128] * 3, n_downsample=2, n_gru_layers=3,
                                   corr_levels=2, corr_radius=4, max_disp=192,
                                   mixed_precision=False, precision_dtype='float32')
            official = Official(args).eval()
    finally:
        timm.create_model = create_model
    fill_seeded_(official, 0)
    ours = IGEVStereo().eval()
    _load_converted(ours, official, convert_official_state_dict)
    left, right = (pad_to(x, 32) for x in seeded_images(0, 2, 375, 1242))
    iters = 32  # evaluate_stereo.py --valid_iters default
    return Pair(
        official=lambda: official(left, right, iters=iters, test_mode=True),
        ours=lambda: ours.forward_disparity(to_unit(left), to_unit(right), iters,
                                            test_mode=True)[1][-1],
        input='375x1242 (padded 384x1248)', iterations=str(iters))


def build_swinir_light(root: Path) -> Pair:
    from perception.models.super_resolution.swinir import convert_official_state_dict
    with official_imports(root / 'SwinIR'):
        from models.network_swinir import SwinIR as Official
        # main_test_swinir.py, lightweight_sr, scale 4
        official = Official(upscale=4, in_chans=3, img_size=64, window_size=8, img_range=1.,
                            depths=[6, 6, 6, 6], embed_dim=60, num_heads=[6, 6, 6, 6],
                            mlp_ratio=2, upsampler='pixelshuffledirect',
                            resi_connection='1conv').eval()
    return _sr_pair(official, 'swinir/swinir-light_x4_div2k.py', convert_official_state_dict)


def _sr_pair(official: nn.Module, config: str,
             convert: Callable[[dict[str, Tensor]], dict[str, Tensor]]) -> Pair:
    """Ours is the config's ``SuperResolver`` (it centres the input on the DIV2K mean around
    the network, where the official network does it inside), timed through ``upscale``."""
    from perception.engine.official_checkpoints import CONFIG_ROOT, build_model_of_config
    fill_seeded_(official, 0)
    ours = build_model_of_config(CONFIG_ROOT / config).eval()
    ours.network.load_state_dict(convert(official.state_dict()), strict=True)
    lr = seeded_images(0, 1, 256, 256)[0] / 255
    return Pair(official=lambda: official(lr), ours=lambda: ours.upscale(lr),
                input='256x256 LR -> 1024x1024', iterations='-')


def build_hit_sr(root: Path) -> Pair:
    from perception.models.super_resolution.hit_sr import convert_official_state_dict
    with official_imports(root / 'HiT-SR'):
        # the arch file alone: basicsr/__init__ pulls in the training stack (lmdb, datasets)
        import importlib.util
        import types
        package = types.ModuleType('basicsr')
        package.__path__ = [str(root / 'HiT-SR' / 'basicsr')]
        utils = types.ModuleType('basicsr.utils')
        utils.__path__ = [str(root / 'HiT-SR' / 'basicsr' / 'utils')]
        sys.modules.update({'basicsr': package, 'basicsr.utils': utils})
        try:
            spec = importlib.util.spec_from_file_location(
                'hit_srf_arch', root / 'HiT-SR' / 'basicsr' / 'archs' / 'hit_srf_arch.py')
            arch = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(arch)
        finally:
            for name in [n for n in sys.modules if n == 'basicsr' or n.startswith('basicsr.')]:
                del sys.modules[name]
        # options/Test/test_HiT_SRF_x4.yml
        official = arch.HiT_SRF(upscale=4, in_chans=3, img_size=64, base_win_size=[8, 8],
                                img_range=1., depths=[6, 6, 6, 6], embed_dim=60,
                                num_heads=[6, 6, 6, 6], expansion_factor=2,
                                resi_connection='1conv', hier_win_ratios=[0.5, 1, 2, 4, 6, 8],
                                upsampler='pixelshuffledirect').eval()
    return _sr_pair(official, 'hit-sr/hit-srf_x4_df2k.py', convert_official_state_dict)


def build_raft(root: Path) -> Pair:
    from perception.models.flow.raft import RAFT, convert_official_state_dict
    with official_imports(root / 'RAFT' / 'core', root / 'RAFT'):
        from raft import RAFT as Official
        # argparse's Namespace: the official constructor tests `'dropout' in args`
        args = argparse.Namespace(small=False, mixed_precision=False, alternate_corr=False,
                                  dropout=0)
        official = Official(args).eval()
    fill_seeded_(official, 0)
    ours = RAFT().eval()
    _load_converted(ours, official, convert_official_state_dict)
    image1, image2 = (pad_to(x, 8) for x in seeded_images(0, 2, 436, 1024))
    iters = 12
    return Pair(
        official=lambda: official(image1, image2, iters=iters, test_mode=True)[1],
        ours=lambda: ours.forward_flow(to_unit(image1), to_unit(image2), iters)[-1],
        input='436x1024 (padded 440x1024)', iterations=str(iters))


def build_sea_raft_s(root: Path) -> Pair:
    from perception.models.flow.sea_raft import convert_official_state_dict, sea_raft_s
    with official_imports(root / 'SEA-RAFT' / 'core', root / 'SEA-RAFT'):
        import extractor
        from raft import RAFT as Official
        # config/eval/sintel-S.json
        args = SimpleNamespace(use_var=True, var_min=0, var_max=10, pretrain='resnet18',
                               initial_dim=64, block_dims=[64, 128, 256], radius=4, dim=128,
                               num_blocks=2, iters=4)
        init_weights = extractor.ResNetFPN._init_weights
        # kaiming init + a torchvision ImageNet download, both replaced by the seeded fill
        extractor.ResNetFPN._init_weights = lambda self, args: None
        try:
            official = Official(args).eval()
        finally:
            extractor.ResNetFPN._init_weights = init_weights
    fill_seeded_(official, 0)
    ours = sea_raft_s().eval()
    _load_converted(ours, official, convert_official_state_dict)
    image1, image2 = (pad_to(x, 8) for x in seeded_images(0, 2, 436, 1024))
    iters = 4
    return Pair(
        official=lambda: official(image1, image2, iters=iters, test_mode=True)['final'],
        ours=lambda: ours.forward_flow(to_unit(image1), to_unit(image2), iters)[0][-1],
        input='436x1024 (padded 440x1024)', iterations=str(iters))


# configs/monodetr.yaml, `model:` (what lib/models/monodetr/monodetr.py's build reads)
MONODETR_CFG = dict(
    num_classes=3, return_intermediate_dec=True, backbone='resnet50', train_backbone=True,
    num_feature_levels=4, dilation=False, position_embedding='sine', masks=False, mode='LID',
    num_depth_bins=80, depth_min=1e-3, depth_max=60.0, with_box_refine=True, two_stage=False,
    use_dab=False, use_dn=False, two_stage_dino=False, init_box=False, enc_layers=3,
    dec_layers=3, hidden_dim=256, dim_feedforward=256, dropout=0.1, nheads=8, num_queries=50,
    enc_n_points=4, dec_n_points=4, aux_loss=True, cls_loss_coef=2, focal_alpha=0.25,
    bbox_loss_coef=5, giou_loss_coef=2, dim_loss_coef=1, angle_loss_coef=1, depth_loss_coef=1,
    depth_map_loss_coef=1, set_cost_class=2, set_cost_bbox=5, set_cost_giou=2,
    set_cost_3dcenter=10, **{'3dcenter_loss_coef': 10})
KITTI_FOCAL = 721.5377  # KITTI P2 f_x, as tools/benchmark.py


def _official_monodetr(module: types.ModuleType, cfg: dict) -> nn.Module:
    """The network of the official ``build(cfg)`` (``lib/models/monodetr/monodetr.py``), the
    same constructor calls without its criterion (whose ``DDNLoss`` asks for a CUDA device)."""
    return module.MonoDETR(
        module.build_backbone(cfg), module.build_depthaware_transformer(cfg),
        module.DepthPredictor(cfg), num_classes=cfg['num_classes'],
        num_queries=cfg['num_queries'], aux_loss=cfg['aux_loss'],
        num_feature_levels=cfg['num_feature_levels'], with_box_refine=cfg['with_box_refine'],
        two_stage=cfg['two_stage'], init_box=cfg['init_box'], use_dab=cfg['use_dab'],
        two_stage_dino=cfg['two_stage_dino'])


def build_monodetr(root: Path) -> Pair:
    from perception.engine.official_checkpoints import CONFIG_ROOT, build_model_of_config
    from perception.models.mono3d.monodetr import convert_official_state_dict
    # The compiled CUDA op (``import MultiScaleDeformableAttention as MSDA``, called as
    # ``MSDA.ms_deform_attn_forward`` at run time) gives way to a stand-in module whose forward
    # is the official pure-PyTorch ``ms_deform_attn_core_pytorch``.
    msda = types.ModuleType('MultiScaleDeformableAttention')
    # ops/modules/ms_deform_attn.py tests `(major == 1 and minor) < 9` (and `< 7`), true on torch
    # 2.x, and then imports names torch 1.9 removed; lend them under those names (what its
    # branches for torch >= 1.9 import) while the official code is imported.
    overrides = types.ModuleType('torch._overrides')
    overrides.has_torch_function = torch.overrides.has_torch_function
    overrides.handle_torch_function = torch.overrides.handle_torch_function
    lent = {'MultiScaleDeformableAttention': msda, 'torch._overrides': overrides}
    previous = {name: sys.modules.get(name) for name in lent}
    sys.modules.update(lent)
    linear = torch.nn.modules.linear
    had_linear_with_bias = hasattr(linear, '_LinearWithBias')
    if not had_linear_with_bias:
        linear._LinearWithBias = linear.NonDynamicallyQuantizableLinear
    try:
        with official_imports(root / 'MonoDETR'):
            import lib.models.monodetr.backbone as official_backbone
            import lib.models.monodetr.monodetr as official_monodetr
            from lib.models.monodetr.ops.functions import ms_deform_attn_func
            core = ms_deform_attn_func.ms_deform_attn_core_pytorch
            msda.ms_deform_attn_forward = (
                lambda value, shapes, level_start, locations, weights, im2col_step:
                core(value, shapes, locations, weights))
            # pretrained=is_main_process(): an ImageNet download the seeded fill replaces
            is_main = official_backbone.is_main_process
            official_backbone.is_main_process = lambda: False
            try:
                official = _official_monodetr(official_monodetr, MONODETR_CFG)
            finally:
                official_backbone.is_main_process = is_main
            frozen_bn = official_backbone.FrozenBatchNorm2d
            official.eval()
    finally:
        for name, module in previous.items():
            if module is None:
                del sys.modules[name]
            else:
                sys.modules[name] = module
        if not had_linear_with_bias:
            del linear._LinearWithBias
    bins = official.depth_predictor.depth_bin_values.detach().clone()
    fill_seeded_(official, 0)
    with torch.no_grad():
        official.depth_predictor.depth_bin_values.copy_(bins)  # the LID bins, not weights
        # FrozenBatchNorm2d keeps its scale and shift as buffers: seed them too
        for i, (_, m) in enumerate(sorted((n, m) for n, m in official.named_modules()
                                          if isinstance(m, frozen_bn))):
            g = torch.Generator().manual_seed(10_000 + i)
            m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=g))
            m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
    ours = build_model_of_config(CONFIG_ROOT / 'monodetr/monodetr_r50_kitti-mono3d.py').eval()
    ours.load_state_dict(convert_official_state_dict(official.state_dict(), ours.classes),
                         strict=True)
    h, w = 384, 1280
    mean = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
    image = (seeded_images(0, 1, h, w)[0] - mean) / std  # what both data pipelines feed
    calibs = torch.tensor([[[KITTI_FOCAL, 0, (w - 1) / 2, 0], [0, KITTI_FOCAL, (h - 1) / 2, 0],
                            [0, 0, 1, 0]]])
    img_sizes = torch.tensor([[w, h]])  # (W, H): the official geometric depth reads the H
    focal = calibs[:, 0, 0]
    # official class order (Pedestrian, Car, Cyclist) -> ours
    columns = [('Pedestrian', 'Car', 'Cyclist').index(c) for c in ours.classes]

    def official_out() -> Tensor:
        out = official(image, calibs, None, img_sizes, dn_args=0)
        last = torch.cat([out['pred_logits'][..., columns], out['pred_boxes'],
                          out['pred_3d_dim'], out['pred_depth'], out['pred_angle']], -1)
        return torch.cat([last.flatten(), out['pred_depth_map_logits'].flatten()])

    def ours_out() -> Tensor:
        layers, depth_logits = ours.forward_layers(image, focal)
        last = layers[-1]
        last = torch.cat([last['logits'], last['boxes'], last['dims'], last['depth'],
                          last['heading']], -1)
        return torch.cat([last.flatten(), depth_logits.flatten()])

    return Pair(official=official_out, ours=ours_out, input=f'{h}x{w}', iterations='-')


ROOT = Path(__file__).resolve().parent.parent
# KITTI frame 000008, where tools/benchmark.py looks for it (the checkout's demo, then the
# shared samples beside it)
KITTI_FRAME_000008 = (ROOT / 'data/demo/kitti_000008/training/velodyne/000008.bin',
                      ROOT / 'data/demo/kitti_000008/velodyne/000008.bin',
                      ROOT.parent / 'shared/data/kitti_mini/training/velodyne/000008.bin')


def _flash_attn_on_cpu() -> dict[str, types.ModuleType]:
    """Stand-ins for ``flash_attn.flash_attn_interface`` (CUDA only): its varlen packed-QKV
    attention, for the equal-length sequences the official ``FlashAttention`` cuts
    (``cu_seqlens = 0, L, 2L, ...``), as ``scaled_dot_product_attention`` (the same softmax
    attention, scale ``1 / sqrt(head_dim)``, no dropout at ``dropout_p = 0``, not causal)."""
    def varlen_qkvpacked(qkv, cu_seqlens, max_seqlen, dropout_p, softmax_scale=None,
                         causal=False, **kwargs):
        total, _, heads, dim = qkv.shape  # (total tokens, 3, heads, head_dim)
        if dropout_p or causal or kwargs or total != (cu_seqlens.numel() - 1) * max_seqlen:
            raise NotImplementedError('the stand-in serves equal-length, non-causal, '
                                      'dropout-free calls only')
        q, k, v = qkv.view(-1, max_seqlen, 3, heads, dim).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, scale=softmax_scale)
        return out.transpose(1, 2).reshape(total, heads, dim)

    interface = types.ModuleType('flash_attn.flash_attn_interface')
    interface.flash_attn_unpadded_qkvpacked_func = varlen_qkvpacked
    package = types.ModuleType('flash_attn')
    package.flash_attn_interface = interface
    return {'flash_attn': package, 'flash_attn.flash_attn_interface': interface}


def _mm_registry_stubs(folder: Path) -> dict[str, types.ModuleType]:
    """The two names ``flatformer.py`` imports from mmcv / mmdet3d: ``mmcv.runner.auto_fp16``
    (a pass-through here: ``fp16_enabled`` is False, so the real one casts nothing) and
    ``..builder.MIDDLE_ENCODERS`` (a registry whose ``register_module()`` returns the class)."""
    runner = types.ModuleType('mmcv.runner')
    runner.auto_fp16 = lambda *args, **kwargs: (lambda fn: fn)
    mmcv = types.ModuleType('mmcv')
    mmcv.runner = runner
    builder = types.ModuleType('mmdet3d.models.builder')
    builder.MIDDLE_ENCODERS = SimpleNamespace(register_module=lambda *a, **kw: (lambda c: c))
    modules = {'mmcv': mmcv, 'mmcv.runner': runner, 'mmdet3d.models.builder': builder}
    for name, path in (('mmdet3d', folder), ('mmdet3d.models', folder / 'models'),
                       ('mmdet3d.models.middle_encoders', folder / 'models/middle_encoders')):
        modules[name] = types.ModuleType(name)
        modules[name].__path__ = [str(path)]
    return modules


class _CudaFactoriesOnCpu(torch.overrides.TorchFunctionMode):
    """Tensors the official code creates with ``device="cuda"`` are created on the CPU."""

    def __torch_function__(self, func, arg_types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if str(kwargs.get('device', '')).startswith('cuda'):
            kwargs = {**kwargs, 'device': 'cpu'}
        return func(*args, **kwargs)


def build_flatformer(root: Path) -> Pair:
    import importlib.util

    import numpy as np

    from perception.engine.official_checkpoints import CONFIG_ROOT, build_model_of_config
    from perception.models.layers.sparse_voxels import make_sparse_voxels, sparse_to_bev
    from perception.models.lidar3d.flatformer import convert_official_state_dict
    folder = root / 'flatformer' / 'mmdet3d'
    lent = {**_flash_attn_on_cpu(), **_mm_registry_stubs(folder)}
    previous = {name: sys.modules.get(name) for name in lent}
    sys.modules.update(lent)
    try:
        # the module file alone: mmdet3d/__init__ needs the compiled mmcv / mmdet3d ops
        name = 'mmdet3d.models.middle_encoders.flatformer'
        spec = importlib.util.spec_from_file_location(
            name, folder / 'models' / 'middle_encoders' / 'flatformer.py')
        arch = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(arch)
    finally:
        for name, module in previous.items():
            if module is None:
                del sys.modules[name]
            else:
                sys.modules[name] = module
    # PositionalEmbedding.inv_freq builds its frequencies with device="cuda"
    inv_freq = arch.PositionalEmbedding.inv_freq

    def inv_freq_on_cpu(self):
        with _CudaFactoriesOnCpu():
            return inv_freq(self)

    arch.PositionalEmbedding.inv_freq = inv_freq_on_cpu

    # ours: the KITTI config's pillar grid (0.32 m over [0, -40, -3, 70.4, 40, 1]: X 220, Y 250)
    detector = build_model_of_config(CONFIG_ROOT / 'flatformer/flatformer_kitti-3d-3class.py')
    detector.eval()
    ours = detector.backbone_3d
    path = next((p for p in KITTI_FRAME_000008 if p.is_file()), None)
    if path is None:
        raise FileNotFoundError('flatformer: KITTI frame 000008 not found at any of '
                                + ', '.join(map(str, KITTI_FRAME_000008)))
    cloud = torch.from_numpy(np.fromfile(path, dtype=np.float32).reshape(-1, 4))
    fill_seeded_(detector.voxel_encoder, 1)
    with torch.inference_mode():
        voxels = detector.voxel_encoder([cloud])  # range filter, pillars, DynamicVFE
    z_size, y_size, x_size = voxels.spatial_shape
    group = ours.group_size
    # the official published backbone (flatformer_waymo_D1_2x_3class.py) on this grid
    official = arch.FlatFormer(
        in_channels=ours.in_channels, num_heads=8, num_blocks=len(ours.blocks),
        activation='gelu', window_shape=(*ours.window_shape, 1),
        sparse_shape=(x_size, y_size, z_size), output_shape=(y_size, x_size),
        pos_temperature=ours.pos_temperature, normalize_pos=ours.normalize_pos,
        group_size=group).eval()
    fill_seeded_(official, 0)
    ours.load_state_dict(convert_official_state_dict(official.state_dict()), strict=True)
    # A multiple of group_size voxels, where the two definitions agree exactly (the official
    # pads a cloud's last group with copies of its voxels, ours masks the padding): the
    # frame's last voxels in (z, y, x) order are dropped.
    n = voxels.num_voxels // group * group
    feats, coords = voxels.features[:n].clone(), voxels.coords[:n].clone()
    sparse = make_sparse_voxels(feats, coords, voxels.spatial_shape, 1)
    return Pair(
        # the official blocks write into their input: each call gets a copy (0.4% of a call)
        official=lambda: official(feats.clone(), coords, 1),
        ours=lambda: sparse_to_bev(ours(sparse)),
        input=f'KITTI 000008, {n} of {voxels.num_voxels} pillars',
        iterations='-')


@dataclass(frozen=True)
class Model:
    """A model the script can time: its official folder (under ``--official-root``), a file
    that must be there, and the builder."""
    folder: str
    marker: str
    build: Callable[[Path], Pair]


MODELS: dict[str, Model] = {
    'raft-stereo': Model('RAFT-Stereo', 'core/raft_stereo.py', build_raft_stereo),
    'igev': Model('IGEV', 'IGEV-Stereo/core/igev_stereo.py', build_igev),
    'swinir-light': Model('SwinIR', 'models/network_swinir.py', build_swinir_light),
    'hit-sr': Model('HiT-SR', 'basicsr/archs/hit_srf_arch.py', build_hit_sr),
    'raft': Model('RAFT', 'core/raft.py', build_raft),
    'sea-raft-s': Model('SEA-RAFT', 'core/raft.py', build_sea_raft_s),
    'monodetr': Model('MonoDETR', 'lib/models/monodetr/monodetr.py', build_monodetr),
    'flatformer': Model('flatformer', 'mmdet3d/models/middle_encoders/flatformer.py',
                        build_flatformer),
}


def missing_official(root: Path, name: str) -> str | None:
    """Why ``name`` cannot be timed under ``root`` (``None`` when its official code is there)."""
    model = MODELS[name]
    marker = root / model.folder / model.marker
    if marker.is_file():
        return None
    return (f'skipping {name}: its official code is not under --official-root ({marker} not '
            f'found; put the {model.folder} repository at {root / model.folder})')


# --------------------------------------------------------------------------------------------
# Timing


def time_interleaved(first: Callable[[], Tensor], second: Callable[[], Tensor], runs: int,
                     warmup: int) -> tuple[float, float]:
    """Median seconds of ``first`` and ``second``, called alternately ``warmup + runs`` times
    each (the warm-up rounds are not counted)."""
    times: tuple[list[float], list[float]] = ([], [])
    for round_ in range(warmup + runs):
        for fn, out in zip((first, second), times):
            start = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - start
            if round_ >= warmup:
                out.append(elapsed)
    return statistics.median(times[0]), statistics.median(times[1])


def benchmark(name: str, root: Path, runs: int, warmup: int) -> Row:
    pair = MODELS[name].build(root)
    with torch.inference_mode():
        official_out, ours_out = pair.official(), pair.ours()
        if official_out.shape != ours_out.shape:
            raise RuntimeError(f'{name}: official output {tuple(official_out.shape)} and ours '
                               f'{tuple(ours_out.shape)} differ in shape')
        diff = float((official_out - ours_out).abs().max())
        scale = float(official_out.abs().max())
        print(f'{name}: max |official - ours| = {diff:.2e} (max |official| = {scale:.2e})',
              flush=True)
        official_s, ours_s = time_interleaved(pair.official, pair.ours, runs, warmup)
    print(f'{name}: official {official_s:.3f} s, ours {ours_s:.3f} s, ratio '
          f'{ours_s / official_s:.2f}', flush=True)
    return Row(name, pair.input, pair.iterations, official_s, ours_s, diff)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--official-root', type=Path, required=True,
                        help='folder holding the official repositories (see the docstring)')
    parser.add_argument('--models', nargs='+', choices=sorted(MODELS), default=list(MODELS),
                        metavar='MODEL', help=f'any of {", ".join(MODELS)} (default: all)')
    parser.add_argument('--runs', type=int, default=5, help='timed rounds (default 5)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed rounds (default 1)')
    parser.add_argument('--threads', type=int, default=1,
                        help='torch intra-op threads for both sides (default 1)')
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.threads < 1:
        parser.error('--runs and --threads must be >= 1 and --warmup >= 0')
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    site = args.official_root / '_site'
    if site.is_dir():
        sys.path.insert(0, str(site))
    rows = []
    for name in args.models:
        reason = missing_official(args.official_root, name)
        if reason:
            print(reason, flush=True)
            continue
        rows.append(benchmark(name, args.official_root, args.runs, args.warmup))
    print(f'\n{args.threads} thread(s), median of {args.runs} runs after {args.warmup} '
          f'warm-up round(s), torch {torch.__version__}')
    print(format_table(rows))
    return 0


if __name__ == '__main__':
    sys.exit(main())
