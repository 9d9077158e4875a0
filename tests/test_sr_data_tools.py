"""SR training data (SRTrainDataset), DIV2K sub-images, and tiled SR inference."""
from __future__ import annotations

import importlib.util
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from perception.apis.inference import _tiled_upscale, inference_sr, init_model, tile_starts
from perception.datasets.converters.div2k_converter import (
    create_div2k_subimages,
    subimage_starts,
)
from perception.datasets.super_resolution import (
    SRTrainDataset,
    augment_pair,
    matlab_downscale_crop,
    read_rgb,
)
from perception.datasets.synthetic.images import render_texture_image
from perception.datasets.transforms.imresize import imresize
from perception.engine.errors import DataError

from .conftest import DEMO_CONFIG, ROOT

SET5 = ('baby', 'bird', 'butterfly', 'head', 'woman')


def _write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def _run_tool(script: str, *args: object, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """Run ``tools/<script>``'s ``main`` in this process (a subprocess would re-import torch).

    Returns the exit status (0, or 2 for a user error) and what went to stderr.
    """
    spec = importlib.util.spec_from_file_location(f'_tool_{Path(script).stem}', ROOT / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    capsys.readouterr()
    try:
        module.main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def _as_uint8(tensor: torch.Tensor) -> np.ndarray:
    return (tensor * 255).round().byte().permute(1, 2, 0).numpy()


# ----------------------------------------------------------------------------- SRTrainDataset
@pytest.mark.parametrize('scale', [2, 3, 4])
def test_on_the_fly_lr_equals_the_matlab_made_set5_files(shared_data, scale):
    root = shared_data / 'sr_set5'
    dataset = SRTrainDataset(str(root / 'HR'), None, scale=scale, patch_size=None)
    assert len(dataset) == 5
    for index, name in enumerate(SET5):
        item = dataset[index]
        expected = read_rgb(root / f'LR_bicubic/X{scale}/{name}x{scale}.png')
        # Bit-identical to MATLAB's imresize(HR, 1/scale) files, including the odd-sized woman.
        np.testing.assert_array_equal(_as_uint8(item['inputs']), expected)
        gt = item['data_samples'].gt_img
        assert gt.shape[-2:] == (expected.shape[0] * scale, expected.shape[1] * scale)
        assert item['data_samples'].metainfo == dict(scale=scale, name=name)


def test_windowed_downscale_is_bit_identical_to_the_full_resize(shared_data):
    hr = read_rgb(shared_data / 'sr_set5/HR/baby.png')  # 512 x 512
    for scale in (2, 3, 4):
        base = hr[:hr.shape[0] // scale * scale, :hr.shape[1] // scale * scale]
        full = imresize(base, output_shape=(base.shape[0] // scale, base.shape[1] // scale))
        # Windows touching each border, the corner, and the interior.
        for top, left, h, w in ((0, 0, 17, 23), (5, 40, 30, 9), (full.shape[0] - 11, 3, 11, 40),
                                (60, full.shape[1] - 7, 20, 7)):
            window = matlab_downscale_crop(base, scale, top, left, h, w)
            np.testing.assert_array_equal(window, full[top:top + h, left:left + w])
    with pytest.raises(ValueError, match='outside'):
        matlab_downscale_crop(hr, 2, 250, 0, 10, 10)


def test_random_crops_are_aligned_and_match_the_lr_folder(shared_data):
    root = shared_data / 'sr_set5'
    on_the_fly = SRTrainDataset(str(root / 'HR'), None, scale=2, patch_size=24, use_flip=False,
                                use_rot=False, repeat=3)
    from_files = SRTrainDataset(str(root / 'HR'), str(root / 'LR_bicubic/X2'), scale=2,
                                patch_size=24, use_flip=False, use_rot=False, repeat=3)
    assert len(on_the_fly) == 15
    for index in (0, 4, 7, 13):  # index 13 -> image 3 (head) in its third repeat
        np.random.seed(index)
        a = on_the_fly[index]
        np.random.seed(index)
        b = from_files[index]
        assert a['inputs'].shape == (3, 24, 24) and a['data_samples'].gt_img.shape == (3, 48, 48)
        assert a['data_samples'].metainfo['name'] == SET5[index % 5]
        assert torch.equal(a['inputs'], b['inputs'])
        assert torch.equal(a['data_samples'].gt_img, b['data_samples'].gt_img)
        # HR patch and LR patch show the same place: the LR is the HR's MATLAB downscale, up
        # to the context the patch lacks at its border.
        hr8 = _as_uint8(a['data_samples'].gt_img)
        inner = imresize(hr8, output_shape=(24, 24)).astype(int)[4:-4, 4:-4]
        assert np.abs(inner - _as_uint8(a['inputs']).astype(int)[4:-4, 4:-4]).max() <= 1


def test_augment_is_basicsr_hflip_vflip_transpose():
    lr = np.arange(6).reshape(2, 3, 1)
    hr = np.arange(24).reshape(4, 6, 1)
    a, b = augment_pair(lr, hr, True, False, False)
    assert a[..., 0].tolist() == [[2, 1, 0], [5, 4, 3]] and b[0, :, 0].tolist() == [5, 4, 3, 2,
                                                                                    1, 0]
    a, _ = augment_pair(lr, hr, False, True, False)
    assert a[..., 0].tolist() == [[3, 4, 5], [0, 1, 2]]
    a, b = augment_pair(lr, hr, True, True, True)  # flips then transpose: shapes swap
    assert a[..., 0].tolist() == [[5, 2], [4, 1], [3, 0]] and b.shape == (6, 4, 1)


def test_augmented_pairs_get_one_dihedral_transform(shared_data):
    root = shared_data / 'sr_set5'
    kwargs = dict(hr_dir=str(root / 'HR'), lr_dir=str(root / 'LR_bicubic/X3'), scale=3,
                  patch_size=16)
    plain = SRTrainDataset(**kwargs, use_flip=False, use_rot=False)
    augmented = SRTrainDataset(**kwargs, use_flip=True, use_rot=True)
    seen = set()
    for seed in range(12):
        np.random.seed(seed)
        ref = plain[2]
        np.random.seed(seed)  # the crop is drawn before the flips: same window
        aug = augmented[2]
        lr0, hr0 = ref['inputs'].permute(1, 2, 0).numpy(), ref['data_samples'].gt_img.permute(
            1, 2, 0).numpy()
        lr1, hr1 = aug['inputs'].permute(1, 2, 0).numpy(), aug['data_samples'].gt_img.permute(
            1, 2, 0).numpy()
        matches = [flags for flags in np.ndindex(2, 2, 2)
                   if np.array_equal(augment_pair(lr0, hr0, *map(bool, flags))[0], lr1)
                   and np.array_equal(augment_pair(lr0, hr0, *map(bool, flags))[1], hr1)]
        assert matches, 'LR and HR were not transformed alike'
        seen.add(matches[0])
    assert len(seen) >= 4  # the flags are random, not fixed


def test_train_dataset_errors_name_the_files(tmp_path, shared_data):
    hr_dir, lr_dir = tmp_path / 'HR', tmp_path / 'LR'
    image = render_texture_image(np.random.default_rng(0), 40, 40)
    _write(hr_dir / 'a.png', image)
    _write(hr_dir / 'b.png', image)
    _write(lr_dir / 'ax2.png', image[::2, ::2])
    with pytest.raises(DataError, match=r'LR.*b\.png.*not found'):
        SRTrainDataset(str(hr_dir), str(lr_dir), scale=2)
    _write(lr_dir / 'b.png', image[:15, :20])  # 20x15 LR for a 40x40 HR at x2
    dataset = SRTrainDataset(str(hr_dir), str(lr_dir), scale=2, patch_size=8)
    assert [p[1].name for p in dataset.pairs] == ['ax2.png', 'b.png']
    with pytest.raises(DataError, match=r'b\.png: LR 20x15 times scale 2 does not fit HR .*b\.png'):
        dataset[1]
    with pytest.raises(DataError, match=r'a\.png: LR size 20x20 is smaller than patch_size 32'):
        SRTrainDataset(str(hr_dir), str(lr_dir), scale=2, patch_size=32)[0]
    with pytest.raises(DataError, match='HR folder not found'):
        SRTrainDataset(str(tmp_path / 'nope'), None, scale=2)
    with pytest.raises(DataError, match='LR folder not found'):
        SRTrainDataset(str(hr_dir), str(tmp_path / 'nope'), scale=2)


# ----------------------------------------------------------------------------- DIV2K
def test_subimage_starts_follow_extract_subimages():
    # 2040 px: 0..1440 every 240 (7 crops end at 1920), remainder 120 > 48 -> one at 1560.
    assert subimage_starts(2040, 480, 240, 48) == [0, 240, 480, 720, 960, 1200, 1440, 1560]
    # 1356 px: 0..720 (4 crops end at 1200), remainder 156 > 48 -> 876.
    assert subimage_starts(1356, 480, 240, 48) == [0, 240, 480, 720, 876]
    # 1000 px: 0..480 end at 960, remainder 40 <= 48 is dropped.
    assert subimage_starts(1000, 480, 240, 48) == [0, 240, 480]
    assert subimage_starts(480, 480, 240, 48) == [0]
    with pytest.raises(ValueError, match='shorter than the crop'):
        subimage_starts(300, 480, 240, 48)


def _fake_div2k(root: Path, with_lr: bool) -> np.ndarray:
    hr = render_texture_image(np.random.default_rng(3), 72, 96)  # sizes multiples of 12
    _write(root / 'DIV2K_train_HR/0001.png', hr)
    if with_lr:
        for s in (2, 3):
            _write(root / f'DIV2K_train_LR_bicubic/X{s}/0001x{s}.png',
                   imresize(hr, output_shape=(72 // s, 96 // s)))
    return hr


@pytest.mark.parametrize('with_lr', [True, False])
def test_div2k_subimages_with_and_without_lr_folders(tmp_path, with_lr):
    hr = _fake_div2k(tmp_path / 'in', with_lr)
    out = tmp_path / 'out'
    # Scaled-down protocol: crop 24, step 12, thresh 6 on a 72 x 96 image.
    counts = create_div2k_subimages(tmp_path / 'in', out, crop=24, step=12, thresh=6,
                                    scales=(2, 3), workers=1)
    ys, xs = [0, 12, 24, 36, 48], [0, 12, 24, 36, 48, 60, 72]
    assert counts == {'images': 1, 'subimages': len(ys) * len(xs)}
    names = sorted(p.name for p in (out / 'DIV2K_train_HR_sub').iterdir())
    assert names[0] == '0001_s001.png' and names[-1] == f'0001_s{len(ys) * len(xs):03d}.png'
    # Sub-image 9 is row 1 (y = 12), column 1 (x = 12): row-major numbering.
    np.testing.assert_array_equal(read_rgb(out / 'DIV2K_train_HR_sub/0001_s009.png'),
                                  hr[12:36, 12:36])
    for s in (2, 3):
        full_lr = imresize(hr, output_shape=(72 // s, 96 // s))
        sub = read_rgb(out / f'DIV2K_train_LR_bicubic/X{s}_sub/0001_s009.png')
        np.testing.assert_array_equal(sub, full_lr[12 // s:36 // s, 12 // s:36 // s])
        assert len(list((out / f'DIV2K_train_LR_bicubic/X{s}_sub').iterdir())) == 35
    with pytest.raises(DataError, match='already holds sub-images; pass --force'):
        create_div2k_subimages(tmp_path / 'in', out, crop=24, step=12, thresh=6, scales=(2, 3),
                               workers=1)


def test_div2k_cli_force_and_errors(tmp_path, capsys):
    _fake_div2k(tmp_path / 'in', with_lr=True)
    (tmp_path / 'in/DIV2K_train_LR_bicubic/X2/0001x2.png').unlink()
    args = ('div2k', '--root', tmp_path / 'in', '--out', tmp_path / 'o', '--crop', '24',
            '--step', '12', '--thresh', '6', '--scales', '2', '--workers', '1')
    code, err = _run_tool('tools/create_data.py', *args, capsys=capsys)
    assert code == 2 and '0001x2.png: LR image for' in err
    shutil.rmtree(tmp_path / 'in/DIV2K_train_LR_bicubic/X2')  # now made by MATLAB bicubic
    assert _run_tool('tools/create_data.py', *args, capsys=capsys)[0] == 0
    stale = tmp_path / 'o/DIV2K_train_HR_sub/0001_s999.png'
    stale.write_bytes(b'')
    code, err = _run_tool('tools/create_data.py', *args, capsys=capsys)
    assert code == 2 and 'pass --force' in err
    assert _run_tool('tools/create_data.py', *args, '--force', capsys=capsys)[0] == 0
    assert not stale.exists() and len(list((tmp_path / 'o/DIV2K_train_HR_sub').iterdir())) == 35
    code, err = _run_tool('tools/create_data.py', *args[:-4], '--scales', '5', capsys=capsys)
    assert code == 2 and 'multiples of scale 5' in err


# ----------------------------------------------------------------------------- tiled inference
def test_tile_starts():
    assert tile_starts(100, 40, 10) == [0, 30, 60]
    assert tile_starts(101, 40, 10) == [0, 30, 60, 61]
    assert tile_starts(30, 40, 10) == [0]
    assert tile_starts(40, 40, 10) == [0]


@pytest.fixture(scope='module')
def espcn():
    torch.manual_seed(0)
    model = init_model(DEMO_CONFIG)  # ESPCN x3, random weights: translation equivariant
    with torch.no_grad():  # make the output depend strongly on the input
        for conv in model.network.convs:
            conv.weight.mul_(2.0)
    return model


def test_tiled_equals_untiled_for_a_local_model(espcn):
    image = render_texture_image(np.random.default_rng(1), 83, 121)
    whole = inference_sr(espcn, image)
    assert whole.shape == (249, 363, 3)
    # ESPCN sees 4 LR pixels around each output (5x5, 3x3, 3x3 convs) <= overlap / 4 = 4: every
    # pixel is either outside the discarded margins or its weight lies where tiles are exact.
    tiled = inference_sr(espcn, image, tile=40, tile_overlap=16, tile_batch_size=3)
    assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1
    lr = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        exact = espcn.upscale(lr)[0]
        blended = _tiled_upscale(espcn, lr, torch.device('cpu'), 40, 16, 3)
    assert (blended - exact).abs().max() < 1e-5  # far below 1/255


def test_tiled_error_is_confined_to_overlaps(espcn):
    image = render_texture_image(np.random.default_rng(2), 64, 64)
    lr = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        exact = espcn.upscale(lr)[0]
        # overlap 8: a quarter (2 px) is less than ESPCN's reach (4 px), so the fade sees
        # border effects.
        blended = _tiled_upscale(espcn, lr, torch.device('cpu'), 32, 8, 4)
    error = (blended - exact).abs().amax(dim=0)
    starts = tile_starts(64, 32, 8)
    assert starts == [0, 24, 32]
    band = torch.zeros(192, dtype=torch.bool)  # the overlaps: every blending ramp, x3
    for start in starts:
        if start > 0:
            band[3 * start:3 * (start + 8)] = True
        if start + 32 < 64:
            band[3 * (start + 32 - 8):3 * (start + 32)] = True
    outside = ~band[:, None] & ~band[None, :]
    assert error[outside].max() < 1e-5
    # Stated bound: a tile is inexact within 4 LR px (12 output px) of its inner edges; there its
    # weight is 0 over the first 6 output px and at most (11.5 - 6) / 12 < 0.46 beyond, and the
    # neighbour is exact there, so the error is below 0.46 x the worst raw tile error.
    raw = 0.0
    with torch.no_grad():
        for y in starts:
            for x in starts:
                tile = espcn.upscale(lr[..., y:y + 32, x:x + 32])[0]
                ref = exact[:, 3 * y:3 * (y + 32), 3 * x:3 * (x + 32)]
                raw = max(raw, (tile - ref).abs().max().item())
    assert 0 < error.max() <= 0.46 * raw
    assert error.max() > 0  # the test can see border effects at all


class _NearestX2(torch.nn.Module):
    """Nearest-neighbour x2 with a learnable gain; records the batch shapes it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(()))
        self.shapes: list[tuple[int, ...]] = []

    def upscale(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        return self.gain * x.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)


def test_large_image_runs_tiled_in_bounded_batches():
    model = _NearestX2()
    image = render_texture_image(np.random.default_rng(4), 2000, 2000)
    out = inference_sr(model, image, tile=256, tile_overlap=32, tile_batch_size=4)
    assert out.shape == (4000, 4000, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, image.repeat(2, axis=0).repeat(2, axis=1))
    # 9 x 9 tiles (starts 0, 224, ..., 1568, 1744) in batches of at most 4 tiles of 256 x 256:
    # the network never sees more than 4 * 256^2 pixels at once.
    assert tile_starts(2000, 256, 32)[-2:] == [1568, 1744]
    assert len(model.shapes) == math.ceil(81 / 4)
    assert max(s[0] for s in model.shapes) == 4 and {s[1:] for s in model.shapes} == {
        (3, 256, 256)}
    with pytest.raises(ValueError, match='tile_overlap < tile'):
        inference_sr(model, image[:50, :50], tile=16, tile_overlap=16)


@pytest.mark.slow
def test_large_image_with_espcn(espcn):
    image = render_texture_image(np.random.default_rng(4), 2000, 2000)
    out = inference_sr(espcn, image, tile=256, tile_overlap=32, tile_batch_size=4)
    assert out.shape == (6000, 6000, 3) and out.dtype == np.uint8
    # overlap / 4 = 8 >= ESPCN's reach: equal to the untiled output on a window of it.
    lr = torch.from_numpy(np.ascontiguousarray(image[200:300, 200:300])).permute(2, 0, 1)
    with torch.no_grad():
        ref = espcn.upscale(lr[None].float() / 255)[0]
    ref8 = (ref.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    diff = np.abs(out[3 * 210:3 * 290, 3 * 210:3 * 290].astype(int) - ref8[30:-30, 30:-30])
    assert diff.max() <= 1


def test_infer_sr_cli(tmp_path, espcn, capsys):
    ckpt = tmp_path / 'espcn.pth'
    torch.save({'state_dict': espcn.state_dict()}, ckpt)
    inputs = tmp_path / 'in'
    images = [render_texture_image(np.random.default_rng(i), 30, 50) for i in range(2)]
    for i, image in enumerate(images):
        _write(inputs / f'im{i}.png', image)
    code, err = _run_tool('tools/infer.py', 'sr', DEMO_CONFIG, ckpt, '--input', inputs,
                          '--out-dir', tmp_path / 'out', '--tile', '24', '--tile-overlap', '8',
                          capsys=capsys)
    assert code == 0, err
    for i, image in enumerate(images):
        written = read_rgb(tmp_path / f'out/im{i}.png')
        expected = inference_sr(espcn, image, tile=24, tile_overlap=8)
        np.testing.assert_array_equal(written, expected)
    code, err = _run_tool('tools/infer.py', 'sr', DEMO_CONFIG, ckpt, '--input',
                          tmp_path / 'none.png', '--out-dir', tmp_path / 'out', capsys=capsys)
    assert code == 2 and 'none.png: input image or folder not found' in err
    code, err = _run_tool('tools/infer.py', 'sr', DEMO_CONFIG, ckpt, '--input', inputs,
                          '--out-dir', tmp_path / 'out', '--tile', '24', '--tile-overlap', '24',
                          capsys=capsys)
    assert code == 2 and '--tile-overlap < --tile' in err
