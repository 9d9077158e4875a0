"""RAFT / RAFT-small: official parameter counts, parity with the official code's outputs, shapes,
loss, padding, warm start, full vs alt, bad input."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.structures import BaseDataElement, PixelData

import perception.models  # noqa: F401  (registers the preprocessor)
from perception.models.flow import RAFT, flow_sequence_loss
from perception.models.flow.raft import convert_official_state_dict
from perception.registry import MODELS

from .raft_parity import PROBE_YX, fill_seeded_, seeded_images

DATA = osp.join(osp.dirname(__file__), 'data')


def n_params(m):
    return sum(p.numel() for p in m.parameters())


# Counted by instantiating the official princeton-vl/RAFT ``RAFT(args)``:
# RAFT fnet 1,066,848 + cnet 1,069,728 + update_block 3,120,960;
# RAFT-small fnet 55,264 + cnet 58,368 + update_block 876,530.
def test_parameter_counts_equal_official():
    raft, small = RAFT(), RAFT(small=True)
    assert n_params(raft) == 5_257_536
    assert (n_params(raft.fnet), n_params(raft.cnet), n_params(raft.update_block)) == (
        1_066_848, 1_069_728, 3_120_960)
    assert n_params(small) == 990_162
    assert (n_params(small.fnet), n_params(small.cnet), n_params(small.update_block)) == (
        55_264, 58_368, 876_530)
    assert small.corr_radius == 3 and raft.corr_radius == 4


@pytest.mark.parametrize('name,small', [('raft', False), ('small', True)])
def test_matches_official_outputs(name, small):
    """The fixture holds the official RAFT's float64 flows (all 12 iterations: probe pixels and
    per-channel statistics) on seeded weights and images; the run that made it measured
    max |ours - official| = 1.2e-13 (RAFT) and 1.8e-13 (RAFT-small) over every pixel and
    iteration. Takes ~3.5 s (RAFT) / 0.7 s (small) on one core."""
    ref = np.load(osp.join(DATA, f'raft_parity_{name}.npz'))
    model = RAFT(small=small).double().eval()
    fill_seeded_(model, int(ref['seed']))
    images = seeded_images(int(ref['seed']), tuple(ref['input_shape']))
    x = 2 * (images / 255.0) - 1.0
    with torch.no_grad():
        flows = torch.stack(model.forward_flow(x[:, 0], x[:, 1], int(ref['iters']))).numpy()
    ys, xs = zip(*PROBE_YX)
    assert np.abs(ref['probes']).max() > 1  # the flows are not trivially small
    np.testing.assert_allclose(flows[:, :, :, list(ys), list(xs)], ref['probes'], rtol=0,
                               atol=1e-9)
    np.testing.assert_allclose(flows.mean(axis=(3, 4)), ref['mean'], rtol=0, atol=1e-9)
    np.testing.assert_allclose(np.abs(flows).mean(axis=(3, 4)), ref['abs_mean'], rtol=0,
                               atol=1e-9)
    np.testing.assert_allclose(flows.std(axis=(3, 4)), ref['std'], rtol=0, atol=1e-9)


def test_convert_official_state_dict_drops_checked_duplicates():
    model = RAFT()
    ours = model.state_dict()
    official = {'module.' + k: v for k, v in ours.items()}
    for k, v in ours.items():  # the official residual blocks store the shortcut norm twice
        if k.startswith('cnet.') and '.downsample.1.' in k:
            official['module.' + k.replace('.downsample.1.', '.norm3.')] = v
    assert len(official) > len(ours)
    converted = convert_official_state_dict(official)
    assert converted.keys() == ours.keys()
    model.load_state_dict(converted, strict=True)
    bad = dict(official)
    key = next(k for k in bad if '.norm3.' in k and k.endswith('running_var'))
    bad[key] = bad[key] + 1
    with pytest.raises(KeyError, match='differs'):
        convert_official_state_dict(bad)


def _tiny(**kw):
    """A CPU-sized RAFT: full architecture, narrow widths."""
    cfg = dict(hidden_dim=32, context_dim=32, encoder_widths=(16, 24, 32), feature_dim=32,
               train_iters=3, test_iters=3)
    cfg.update(kw)
    return RAFT(**cfg)


@pytest.mark.parametrize('small', [False, True])
def test_shapes_and_tensor_mode(small):
    torch.manual_seed(0)
    model = _tiny(small=small).eval()
    x = torch.rand(2, 2, 3, 64, 72) * 2 - 1
    with torch.no_grad():
        preds = model(x, mode='tensor')
    assert len(preds) == 3 and all(p.shape == (2, 2, 64, 72) for p in preds)
    assert model.last_low_res_flow.shape == (2, 2, 8, 9)
    # Any size, as a benchmark feeds it (436x1024 Sintel): padded like predict_flow, cropped back.
    odd = torch.rand(1, 2, 3, 60, 70) * 2 - 1
    with torch.no_grad():
        preds = model(odd, mode='tensor')
        assert len(preds) == 3 and all(p.shape == (1, 2, 60, 70) for p in preds)
        torch.testing.assert_close(preds[-1], model.predict_flow(odd), rtol=0, atol=0)


def test_loss_decreases_on_a_tiny_batch():
    torch.manual_seed(0)
    model = _tiny(train_iters=2).train()
    x = torch.rand(2, 2, 3, 64, 64) * 255
    gt = torch.zeros(2, 2, 64, 64)
    gt[:, 0] = 1.5
    gt[:, 1] = -0.5
    samples = [BaseDataElement(gt_flow=PixelData(data=g)) for g in gt]
    # the official recipe's optimiser: AdamW, gradients clipped to norm 1
    opt = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=1e-4)
    losses = []
    for _ in range(15):
        data = model.data_preprocessor({'inputs': list(x), 'data_samples': samples}, True)
        out = model(**data, mode='loss')
        opt.zero_grad()
        out['loss_flow'].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(out['loss_flow'].item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_sequence_loss_by_hand():
    gt = torch.zeros(1, 2, 2, 2)
    gt[0, 0, 0, 0] = 500.0  # |gt| >= max_flow: excluded
    preds = [torch.ones(1, 2, 2, 2), torch.full((1, 2, 2, 2), 2.0)]
    valid = torch.tensor([[[[1.0, 1.0], [0.0, 1.0]]]])
    # valid pixels (0,1), (1,1): 2 pixels x 2 channels of |err| over 8 entries
    expected = 0.8 * (4 * 1.0) / 8 + 1.0 * (4 * 2.0) / 8
    assert flow_sequence_loss(preds, gt, valid).item() == pytest.approx(expected)
    with pytest.raises(ValueError, match='differ'):
        flow_sequence_loss([torch.ones(1, 2, 2, 3)], gt)


def test_predict_pads_and_crops_non_multiple_of_8():
    torch.manual_seed(0)
    model = _tiny().eval()
    x = torch.rand(1, 2, 3, 61, 83) * 2 - 1
    with torch.no_grad():
        flow = model.predict_flow(x)
        # the same as running the padded input by hand (centred replicate pad to 64 x 88)
        padded = torch.nn.functional.pad(x[0], (2, 3, 1, 2), mode='replicate')
        full = model.forward_flow(padded[:1], padded[1:], 3)[-1]
    assert flow.shape == (1, 2, 61, 83) and flow.dtype == torch.float32
    torch.testing.assert_close(flow, full[:, :, 1:62, 2:85])
    samples = model(x * 0 + x, [BaseDataElement()], mode='predict')
    assert samples[0].pred_flow.data.shape == (2, 61, 83)


def test_warm_start_changes_result():
    torch.manual_seed(0)
    model = _tiny().eval()
    x = torch.rand(1, 2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        cold = model.predict_flow(x, iters=2)
        low = model.last_low_res_flow
        warm = model.predict_flow(x, iters=2, flow_init=low)
        zero = model.predict_flow(x, iters=2, flow_init=torch.zeros_like(low))
    torch.testing.assert_close(zero, cold)  # a zero warm start is the cold start
    assert (warm - cold).abs().mean() > 1e-3
    with pytest.raises(ValueError, match='flow_init must be'):
        model.predict_flow(x, flow_init=torch.zeros(1, 2, 4, 4))


@pytest.mark.parametrize('small', [False, True])
def test_full_and_alt_give_the_same_flow(small):
    torch.manual_seed(0)
    model = _tiny(small=small).double().eval()
    x = torch.rand(1, 2, 3, 64, 80, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        full = model.forward_flow(x[:, 0], x[:, 1], 3)
        model.corr_mode = 'alt'
        alt = model.forward_flow(x[:, 0], x[:, 1], 3)
    for a, b in zip(full, alt):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_bad_input():
    model = _tiny().eval()
    with pytest.raises(ValueError, match='one size'):
        model.forward_flow(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 72))
    with pytest.raises(ValueError, match='multiples of 8'):
        model.forward_flow(torch.zeros(1, 3, 60, 64), torch.zeros(1, 3, 60, 64))
    with pytest.raises(ValueError, match=r'\(B, 2, 3, H, W\)'):
        model.predict_flow(torch.zeros(1, 3, 64, 64))
    # a batch of pairs of different image sizes: the preprocessor names the mismatch
    with pytest.raises(ValueError):
        model.data_preprocessor({'inputs': [torch.zeros(2, 3, 64, 64),
                                            torch.zeros(2, 3, 64, 72)]})
    with pytest.raises(ValueError, match='corr_mode'):
        RAFT(corr_mode='cuda')
    with pytest.raises(ValueError, match='gt_flow'):
        model(torch.zeros(1, 2, 3, 64, 64), [BaseDataElement()], mode='loss')
    assert MODELS.get('RAFT') is RAFT
