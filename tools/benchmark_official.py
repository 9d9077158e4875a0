"""Time our models against the official PyTorch code: same weights, same input, one process.

    python tools/benchmark_official.py --official-root /tmp/official
        [--models raft-stereo igev swinir-light hit-sr raft sea-raft-s]
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
``SEA-RAFT`` (princeton-vl/SEA-RAFT). A model whose folder is missing is skipped with a message.
The official code imports timm (SwinIR, HiT-SR, IGEV's MobileNetV2), torchvision,
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

Inputs (issue 20): RAFT-Stereo 375x1242 (KITTI), 12 iterations; IGEV-Stereo 375x1242, its
evaluation default of 32 iterations; SwinIR-light x4 and HiT-SRF x4 on a 256x256 low-resolution
input (1024x1024 output); RAFT 436x1024 (Sintel), 12 iterations; SEA-RAFT-S 436x1024 with its
published 4 iterations.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
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
        for name in set(sys.modules) - before:
            file = getattr(sys.modules[name], '__file__', None) or ''
            if str(Path(file).resolve()).startswith(roots) or name in ('core', 'utils'):
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
