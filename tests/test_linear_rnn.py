"""LION's linear group RNN operators: chunked parallel scans against position loops."""
from __future__ import annotations

import math

import pytest
import torch

from perception.models.layers.linear_rnn import (
    BiMamba,
    MambaBlock,
    MultiScaleRetention,
    RetNetBlock,
    RWKVBlock,
    RWKVTimeMix,
    bi_wkv,
    bi_wkv_sequential,
    build_linear_rnn_block,
    chunk_retention,
    chunk_retention_sequential,
    linear_scan,
    linear_scan_sequential,
    resolve_scan,
    retention_log_decay,
    selective_scan,
    selective_scan_sequential,
)

F64 = torch.float64
TOL = dict(atol=1e-9, rtol=1e-9)


def _grads(fn, inputs, weight):
    inputs = [x.detach().clone().requires_grad_(True) for x in inputs]
    out = fn(*inputs)
    (out * weight).sum().backward()
    # a length-1 scan never reads its decay: no gradient is a zero gradient
    return out.detach(), [torch.zeros_like(x) if x.grad is None else x.grad for x in inputs]


def _check_same(fast, slow, inputs, out_shape):
    weight = torch.randn(out_shape, dtype=F64)
    out_f, grads_f = _grads(fast, inputs, weight)
    out_s, grads_s = _grads(slow, inputs, weight)
    torch.testing.assert_close(out_f, out_s, **TOL)
    for gf, gs in zip(grads_f, grads_s):
        torch.testing.assert_close(gf, gs, **TOL)


@pytest.mark.parametrize('length,chunk', [(1, 4), (7, 4), (16, 4), (37, 8), (70, 16)])
def test_linear_scan_matches_loop(length, chunk):
    g = torch.Generator().manual_seed(length)
    a = torch.rand(2, length, 3, 1, generator=g, dtype=F64)  # broadcast over the last dim
    b = torch.randn(2, length, 3, 5, generator=g, dtype=F64)
    _check_same(lambda a, b: linear_scan(a, b, chunk), linear_scan_sequential, [a, b],
                (2, length, 3, 5))


def test_linear_scan_hand_computed():
    a = torch.tensor([[0.5, 0.5, 2.0]], dtype=F64)
    b = torch.tensor([[1.0, 2.0, 3.0]], dtype=F64)
    # h0 = 1, h1 = 0.5 + 2 = 2.5, h2 = 2 * 2.5 + 3 = 8
    torch.testing.assert_close(linear_scan(a, b, 2), torch.tensor([[1.0, 2.5, 8.0]], dtype=F64))


@pytest.mark.parametrize('scan', ['doubling', 'chunked'])
@pytest.mark.parametrize('length', [1, 2, 13, 50, 300])
def test_selective_scan_matches_loop(length, scan):
    g = torch.Generator().manual_seed(length)
    u = torch.randn(2, length, 6, generator=g, dtype=F64)
    delta = torch.rand(2, length, 6, generator=g, dtype=F64)
    A = -torch.rand(6, 4, generator=g, dtype=F64) * 4
    B = torch.randn(2, length, 4, generator=g, dtype=F64)
    C = torch.randn(2, length, 4, generator=g, dtype=F64)
    D = torch.randn(6, generator=g, dtype=F64)
    # chunked: chunks of 1, 1, 4, 8, 16 (a partial last chunk at 13, 50 and 300)
    _check_same(lambda *x: selective_scan(*x, chunk_size=8, scan=scan), selective_scan_sequential,
                [u, delta, A, B, C, D], (2, length, 6))


def test_selective_scan_chunked_survives_strong_decay():
    """Large steps (delta * A down to -400 per position, far below float64's exp range over a
    chunk) must underflow to zero decay, never overflow: the chunked scan only takes exp of
    non-positive numbers."""
    g = torch.Generator().manual_seed(3)
    length = 64
    u = torch.randn(1, length, 3, generator=g, dtype=F64)
    delta = torch.rand(1, length, 3, generator=g, dtype=F64) * 25
    A = -torch.arange(1, 17, dtype=F64).repeat(3, 1)
    B, C = (torch.randn(1, length, 16, generator=g, dtype=F64) for _ in range(2))
    _check_same(lambda *x: selective_scan(*x, scan='chunked'), selective_scan_sequential,
                [u, delta, A, B, C], (1, length, 3))


def test_scan_choice():
    cpu, cuda = torch.device('cpu'), torch.device('cuda')
    assert resolve_scan('auto', cpu, 4096) == 'chunked'
    assert resolve_scan('auto', cuda, 4096) == 'doubling'
    assert resolve_scan('doubling', cpu, 4096) == 'doubling'
    with pytest.raises(ValueError, match='scan must be one of'):
        resolve_scan('loop', cpu, 10)
    with pytest.raises(ValueError, match='scan must be one of'):
        BiMamba(8, scan='loop')


@pytest.mark.parametrize('scan', ['doubling', 'chunked'])
@pytest.mark.parametrize('length', [1, 2, 9, 40, 300])
def test_bi_wkv_matches_kernel_loops(length, scan):
    g = torch.Generator().manual_seed(length)
    r, k = (torch.randn(2, length, 2, 4, generator=g, dtype=F64) for _ in range(2))
    v = torch.randn(2, length, 2, 3, generator=g, dtype=F64)
    w = torch.rand(2, length, 2, 4, generator=g, dtype=F64)
    u = torch.randn(2, 4, generator=g, dtype=F64)
    _check_same(lambda *x: bi_wkv(*x, chunk_size=8, scan=scan), bi_wkv_sequential,
                [r, k, v, w, u], (2, length, 2, 3))


def test_bi_wkv_hand_computed():
    # one head, K = V = 1: y_t = r_t (sum_{s<t} k_s v_s prod w + u k_t v_t + sum_{s>t} ...)
    r = torch.ones(1, 3, 1, 1, dtype=F64)
    k = torch.tensor([1.0, 2.0, 3.0], dtype=F64).view(1, 3, 1, 1)
    v = torch.ones(1, 3, 1, 1, dtype=F64)
    w = torch.full((1, 3, 1, 1), 0.5, dtype=F64)
    u = torch.full((1, 1), 10.0, dtype=F64)
    # t=1: forward 1 (no decay between neighbours), self 10*2, backward 3 -> 24
    # t=0: self 10, backward 2 + 0.5 * 3 = 3.5 -> 13.5; t=2: 2 + 0.5 * 1 + 30 = 32.5
    expected = torch.tensor([13.5, 24.0, 32.5], dtype=F64).view(1, 3, 1, 1)
    torch.testing.assert_close(bi_wkv(r, k, v, w, u, 2, 'doubling'), expected)
    torch.testing.assert_close(bi_wkv(r, k, v, w, u, 2, 'chunked'), expected)
    torch.testing.assert_close(bi_wkv_sequential(r, k, v, w, u), expected)


@pytest.mark.parametrize('length,chunk', [(1, 4), (11, 4), (16, 4), (45, 8)])
def test_chunk_retention_matches_loop_and_matrix(length, chunk):
    g = torch.Generator().manual_seed(length)
    q, k = (torch.randn(2, 3, length, 4, generator=g, dtype=F64) for _ in range(2))
    v = torch.randn(2, 3, length, 5, generator=g, dtype=F64)
    _check_same(lambda *x: chunk_retention(*x, chunk_size=chunk),
                lambda *x: chunk_retention_sequential(*x, chunk_size=chunk), [q, k, v],
                (2, 3, length, 5))
    # brute force: D_ij = gamma^|i-j| in the same chunk, gamma^(i-j) from earlier chunks
    gamma = torch.tensor([1 - 2 ** -5, 1 - 2 ** -6, 1 - 2 ** -7], dtype=F64).view(3, 1, 1)
    i = torch.arange(length)
    diff = (i[:, None] - i[None, :]).to(F64)
    same = (i[:, None] // chunk) == (i[None, :] // chunk)
    decay = torch.where(same, gamma ** diff.abs(),
                        torch.where(diff > 0, gamma ** diff.clamp(min=0),
                                    torch.zeros((), dtype=F64)))
    brute = torch.einsum('ghik,ghjk,hij,ghjv->ghiv', q, k, decay, v) / 2.0
    torch.testing.assert_close(chunk_retention(q, k, v, chunk), brute, **TOL)


def test_retention_decays():
    expected = torch.tensor([1 - 1 / 32, 1 - 1 / 64, 1 - 1 / 128, 1 - 1 / 256], dtype=F64)
    torch.testing.assert_close(torch.exp(retention_log_decay(4, dtype=F64)), expected)


def _mixers():
    torch.manual_seed(0)
    return {
        'mamba': BiMamba(8, d_state=4, chunk_size=4).double(),
        'rwkv': RWKVTimeMix(8, n_head=2, n_layer=4, layer_id=1, chunk_size=4).double(),
        'retnet': MultiScaleRetention(8, num_heads=2, chunk_size=4).double(),
    }


@pytest.mark.parametrize('name,scan', [('mamba', 'doubling'), ('mamba', 'chunked'),
                                       ('rwkv', 'doubling'), ('rwkv', 'chunked'),
                                       ('retnet', None)])
def test_mixers_parallel_equal_sequential_with_grads(name, scan):
    mixer = _mixers()[name]
    if scan is not None:
        mixer.scan = scan
    x = torch.randn(3, 19, 8, dtype=F64)
    weight = torch.randn(3, 19, 8, dtype=F64)
    outs, grads = [], []
    for sequential in (False, True):
        mixer.zero_grad()
        xi = x.clone().requires_grad_(True)
        out = mixer(xi, sequential=sequential)
        (out * weight).sum().backward()
        outs.append(out.detach())
        grads.append([xi.grad] + [p.grad.clone() for p in mixer.parameters()])
    torch.testing.assert_close(outs[0], outs[1], **TOL)
    for gp, gs in zip(*grads):
        torch.testing.assert_close(gp, gs, **TOL)


@pytest.mark.parametrize('name', ['mamba', 'rwkv', 'retnet'])
def test_blocks_padding_is_masked(name):
    torch.manual_seed(1)
    block = build_linear_rnn_block(name, 8, layer_id=1, n_layer=4, chunk_size=4,
                                   **({'d_state': 4} if name == 'mamba' else {'n_head': 2}))
    block = block.double().eval()
    x = torch.randn(2, 10, 8, dtype=F64)
    padded = torch.cat([x, torch.randn(2, 6, 8, dtype=F64)], 1)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, :10] = True
    torch.testing.assert_close(block(padded, mask)[:, :10], block(x), **TOL)
    # and the padding does matter without the mask (the test would be vacuous otherwise)
    assert (block(padded)[:, :10] - block(x)).abs().max() > 1e-6


def test_operators_are_bidirectional():
    """Mamba / RWKV outputs depend on later positions; RetNet's (as LION's chunk kernel) only on
    later positions of the same chunk."""
    mixers = _mixers()
    for name, mixer in mixers.items():
        x = torch.randn(1, 12, 8, dtype=F64, requires_grad=True)
        mixer(x)[0, 0].sum().backward()
        influence = x.grad[0].abs().sum(-1)
        assert influence[11] > 0 if name != 'retnet' else influence[11] == 0, name
        assert influence[3] > 0, name  # same chunk of 4 as position 0
        if name == 'retnet':
            assert influence[4:].abs().sum() == 0


def test_mamba_published_sizes_and_init():
    mamba = BiMamba(64)
    assert (mamba.d_inner, mamba.dt_rank, mamba.d_state) == (128, 4, 16)
    torch.testing.assert_close(torch.exp(mamba.A_log), torch.arange(1, 17.0).repeat(128, 1))
    torch.testing.assert_close(mamba.A_b_log, mamba.A_log)
    dt = torch.nn.functional.softplus(mamba.dt_proj.bias)
    assert dt.min() >= 1e-3 - 1e-6 and dt.max() <= 0.1 + 1e-6
    assert mamba.dt_proj.weight.abs().max() <= 4 ** -0.5
    d, c, r, n = 128, 64, 4, 16
    per_direction = (d * 4 + d) + d * (r + 2 * n) + (r * d + d) + d * n + d
    expected = c * 2 * d + 2 * per_direction + d * c
    assert sum(p.numel() for p in mamba.parameters()) == expected == 40_704
    block = MambaBlock(64)
    assert sum(p.numel() for p in block.parameters()) == expected + 128


def test_rwkv_and_retnet_block_sizes():
    rwkv = RWKVBlock(64, n_head=4, n_layer=34, layer_id=0, init_values=1e-5)
    assert hasattr(rwkv, 'ln0') and not hasattr(RWKVBlock(64, 4, 34, 1), 'ln0')
    att = 6 * 64 + 64 * 160 + 5 * 32 * 64 + 64 + 64 * 64 + 64 * 64 + 64 + 5 * 64 * 64 + 2 * 64
    ffn = 2 * 64 + 64 * 256 + 64 * 64 + 256 * 64
    norms = 3 * 2 * 64 + 2 * 64
    assert sum(p.numel() for p in rwkv.parameters()) == att + ffn + norms
    retnet = RetNetBlock(64, n_head=2)
    msr = 2 * 64 * 64 + 64 * 128 + 128 * 64
    ffn = 64 * 256 + 256 + 256 * 64 + 64
    assert sum(p.numel() for p in retnet.parameters()) == msr + ffn + 4 * 64
    assert not hasattr(retnet.multi_scale_retention, 'g_proj')  # used_MLP: no gate


def test_bad_operator_name():
    with pytest.raises(ValueError, match='unknown linear RNN operator'):
        build_linear_rnn_block('lstm', 8)


def test_float32_long_sequence_is_finite():
    torch.manual_seed(0)
    x = torch.randn(2, 300, 16)
    for name in ('mamba', 'rwkv', 'retnet'):
        block = build_linear_rnn_block(name, 16, n_layer=2,
                                       **({} if name == 'mamba' else {'n_head': 2})).eval()
        out = block(x)
        assert out.shape == x.shape and torch.isfinite(out).all()
    assert math.isfinite(float(chunk_retention(*(torch.randn(1, 2, 4096, 8) for _ in range(3)))
                              .abs().max()))
