"""Linear group RNN operators of LION: bidirectional Mamba, RWKV-6 and RetNet over group sequences.

LION (Liu et al., NeurIPS 2024) runs a linear RNN over large groups of voxels. Each operator here
maps ``(G, L, C)`` group sequences to ``(G, L, C)`` and is written in plain PyTorch. Mamba and
RWKV run one of two exact scans of the same recurrence, picked per call by ``scan='auto'``:

* ``'doubling'`` (the GPU form): every chunk of ``chunk_size`` positions is scanned by log-depth
  doubling and the chunk states by a second scan over the chunk axis. Each doubling level writes
  the whole ``(G, L, state)`` tensor, which is memory-bound on a CPU.
* ``'chunked'`` (the CPU form): the sequence is cut into ``~sqrt(L)`` chunks of ``~sqrt(L)``
  positions; a loop over the positions of a chunk updates the states of ALL chunks at once (one
  ``(G, chunks, state)`` tensor per step, small enough to stay in cache), a short loop over the
  chunks carries the states across, and a second pass over the in-chunk positions reads the
  outputs. The per-position states are never stored (only autograd keeps what it needs), so one
  thread runs Mamba's scan about 13x faster than the doubling form (8 groups x 4,096 x 128 x 16).

RetNet uses a masked decay matrix inside each chunk and one decay-matrix product across chunks.
``*_sequential`` functions are the position-by-position references the scans are tested against.

The operators reproduce the blocks of the official LION code (``happinesslz/LION``):

* ``MambaBlock``: Vision-Mamba style bidirectional Mamba. One ``in_proj`` / gate / ``out_proj``;
  the forward and the flipped sequence each have their own causal conv, ``x_proj``, ``dt_proj``,
  ``A_log`` and ``D``; the two scans are summed before the gate. Post-norm residual.
* ``RWKVBlock``: Vision-RWKV 6 (token shift with data-dependent mixing, data-dependent decay,
  bonus ``u``), whose WKV kernel is bidirectional in one pass: the state of the positions before
  and the state of the positions after each token are both read, the token itself through ``u``.
* ``RetNetBlock``: multi-scale retention with decay ``gamma_h = 1 - 2^(-5 - h)``. LION's chunk
  kernel uses ``gamma^|i - j|`` inside each 64-position chunk (both directions) and the causal
  ``gamma^(i - j)`` from earlier chunks only; that is reproduced. LION uses no rotary/xPos and, with
  ``used_MLP=True``, no gate or group norm (an FFN follows instead); the gate is kept as an option.

Padded positions (``mask`` False) never influence valid ones: results on the valid prefix equal
those of the truncated sequence, provided the padding sits at the END of each sequence.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .drop import DropPath

__all__ = [
    'SCAN_METHODS', 'resolve_scan', 'linear_scan', 'linear_scan_sequential', 'selective_scan',
    'selective_scan_sequential',
    'bi_wkv', 'bi_wkv_sequential', 'retention_log_decay', 'chunk_retention',
    'chunk_retention_sequential',
    'BiMamba', 'MambaBlock', 'RWKVTimeMix', 'RWKVChannelMix', 'RWKVBlock',
    'MultiScaleRetention', 'RetNetFFN', 'RetNetBlock', 'build_linear_rnn_block',
]


# --------------------------------------------------------------------------------------------
# scans
# --------------------------------------------------------------------------------------------
def _doubling_scan(a: Tensor, b: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """Inclusive scan of ``h_t = a_t * h_{t-1} + b_t`` along ``dim`` by log-depth doubling.

    Returns the cumulative decay ``prod_{s<=t} a_s`` and ``h``. The loop runs ``ceil(log2 T)``
    times over the whole tensor, never over positions. ``a`` may broadcast against ``b``.
    """
    length = b.shape[dim]
    step = 1
    while step < length:
        a_head, a_tail = a.narrow(dim, 0, step), a.narrow(dim, step, length - step)
        b_head, b_tail = b.narrow(dim, 0, step), b.narrow(dim, step, length - step)
        a_prev = a.narrow(dim, 0, length - step)
        b_prev = b.narrow(dim, 0, length - step)
        b = torch.cat([b_head, b_tail + a_tail * b_prev], dim)
        a = torch.cat([a_head, a_tail * a_prev], dim)
        step *= 2
    return a, b


def linear_scan(a: Tensor, b: Tensor, chunk_size: int = 16) -> Tensor:
    """Diagonal linear recurrence ``h_t = a_t * h_{t-1} + b_t`` along dim 1, ``h_{-1} = 0``.

    Chunked parallel form: each chunk of ``chunk_size`` positions is scanned by doubling, then the
    chunk-end states are scanned over the chunk axis and added back with the in-chunk decays.

    Args:
        a: (G, L, ...) decays, broadcastable to ``b`` (same number of dims; size-1 dims allowed).
        b: (G, L, ...) inputs.
        chunk_size: positions per chunk.

    Returns:
        (G, L, ...) states ``h``, shaped as ``b``.
    """
    if a.dim() != b.dim() or a.shape[:2] != b.shape[:2]:
        raise ValueError(f'linear_scan: a {tuple(a.shape)} and b {tuple(b.shape)} must share '
                         '(G, L) and the number of dims')
    groups, length = b.shape[:2]
    if length == 0:
        return b.clone()
    chunk = max(1, min(chunk_size, length))
    num_chunks = -(-length // chunk)
    pad = num_chunks * chunk - length
    if pad:  # a = 1, b = 0 after the end: the padded states are dropped anyway
        a = torch.cat([a, a.new_ones((groups, pad) + a.shape[2:])], 1)
        b = torch.cat([b, b.new_zeros((groups, pad) + b.shape[2:])], 1)
    a = a.reshape((groups, num_chunks, chunk) + a.shape[2:])
    b = b.reshape((groups, num_chunks, chunk) + b.shape[2:])
    a_cum, h = _doubling_scan(a, b, dim=2)
    if num_chunks > 1:
        _, carry = _doubling_scan(a_cum[:, :, -1], h[:, :, -1], dim=1)  # (G, NT, ...)
        carry = torch.cat([torch.zeros_like(carry[:, :1]), carry[:, :-1]], 1)
        h = h + a_cum * carry.unsqueeze(2)
    h = h.reshape((groups, num_chunks * chunk) + h.shape[3:])
    return h[:, :length]


def linear_scan_sequential(a: Tensor, b: Tensor) -> Tensor:
    """Reference of :func:`linear_scan`: a Python loop over positions (tests and benchmarks)."""
    a = a.expand_as(b)
    state = torch.zeros_like(b[:, 0])
    out = []
    for t in range(b.shape[1]):
        state = a[:, t] * state + b[:, t]
        out.append(state)
    return torch.stack(out, 1) if out else b.clone()


SCAN_METHODS = ('auto', 'doubling', 'chunked')


def resolve_scan(scan: str, device: torch.device, length: int) -> str:
    """The scan ``'auto'`` stands for: doubling on CUDA (parallel, kernel-launch bound), chunked
    elsewhere (memory-bound CPUs) unless the sequence is too short for chunks to matter."""
    if scan not in SCAN_METHODS:
        raise ValueError(f"scan must be one of {SCAN_METHODS}, got '{scan}'")
    if scan != 'auto':
        return scan
    return 'doubling' if device.type == 'cuda' or length < 4 else 'chunked'


def _chunk_length(length: int) -> int:
    """Positions per chunk of the chunked scan: the power of two nearest ``sqrt(length)``, so the
    two loops (over in-chunk positions, over chunks) are both about ``sqrt(length)`` long."""
    return 1 << max(0, round(math.log2(max(length, 1)) / 2))


def _pad_chunks(x: Tensor, chunk: int, value: float = 0.0) -> Tensor:
    """(G, L, ...) -> (G, NC, chunk, ...), padded with ``value`` after the end."""
    groups, length = x.shape[:2]
    num_chunks = -(-length // chunk)
    pad = num_chunks * chunk - length
    if pad:
        x = torch.cat([x, x.new_full((groups, pad) + x.shape[2:], value)], 1)
    return x.reshape((groups, num_chunks, chunk) + x.shape[2:])


def _carry_across_chunks(ends: Tensor, chunk_decay: Tensor) -> Tensor:
    """States entering each chunk, from each chunk's end state (started at zero) and its total
    decay, both (G, NC, ...): ``carry_0 = 0``, ``carry_c = decay_{c-1} carry_{c-1} + end_{c-1}``."""
    carry = [torch.zeros_like(ends[:, 0])]
    for c in range(ends.shape[1] - 1):  # a loop over ~sqrt(L) chunks
        carry.append(chunk_decay[:, c] * carry[-1] + ends[:, c])
    return torch.stack(carry, 1)


def _chunked_scan(decay_at, input_at, read_at, chunk_decay: Tensor, chunk: int,
                  read_before_update: bool) -> Tensor:
    """Chunked scan of ``S_t = decay_t * S_{t-1} + input_t`` with a read-out of every state.

    The caller's tensors are cut into (G, NC, chunk, ...) chunks; ``decay_at(t)``, ``input_at(t)``
    give position ``t`` of every chunk at once ((G, NC, ...) broadcastable to the state) and
    ``read_at(state, t)`` the output there. Pass 1 scans each chunk from a zero state to its end,
    the chunk states are carried across, and pass 2 rescans each chunk from its true initial state,
    reading ``S_{t-1}`` (``read_before_update``) or ``S_t``. Nothing of (G, L, state) is stored.

    Returns:
        (G, NC, chunk, ...) the stacked read-outs.
    """
    state = input_at(0)
    for t in range(1, chunk):
        state = decay_at(t) * state + input_at(t)
    state = _carry_across_chunks(state, chunk_decay)
    outs = []
    for t in range(chunk):
        if read_before_update:
            outs.append(read_at(state, t))
        state = decay_at(t) * state + input_at(t)
        if not read_before_update:
            outs.append(read_at(state, t))
    return torch.stack(outs, 2)


def _selective_scan_chunked(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                            chunk: int) -> Tensor:
    """``C_t . h_t`` of Mamba's recurrence by :func:`_chunked_scan`; (G, L, Din)."""
    length = u.shape[1]
    delta_c = _pad_chunks(delta, chunk)  # delta = 0 after the end: decay 1, input 0
    du_c = _pad_chunks(delta * u, chunk)
    B_c, C_c = _pad_chunks(B, chunk), _pad_chunks(C, chunk)
    # a chunk's total decay from its summed steps: exp(A sum delta) = prod exp(delta A), stable
    chunk_decay = torch.exp(delta_c.sum(2).unsqueeze(-1) * A)  # (G, NC, Din, N)
    y = _chunked_scan(lambda t: torch.exp(delta_c[:, :, t, :, None] * A),
                      lambda t: du_c[:, :, t, :, None] * B_c[:, :, t, None, :],
                      lambda h, t: torch.einsum('gcdn,gcn->gcd', h, C_c[:, :, t]),
                      chunk_decay, chunk, read_before_update=False)
    return y.flatten(1, 2)[:, :length]


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                   D: Tensor | None = None, chunk_size: int = 16, scan: str = 'auto') -> Tensor:
    """Mamba's selective scan (real diagonal ``A``, input-dependent ``B``, ``C``, ``delta``).

    ``h_t = exp(delta_t * A) h_{t-1} + delta_t * B_t * u_t``, ``y_t = C_t . h_t + D * u_t``.

    Args:
        u: (G, L, Din) inputs.
        delta: (G, L, Din) step sizes, already softplus-ed (0 makes a position a no-op).
        A: (Din, N) negative state matrix diagonal.
        B: (G, L, N), C: (G, L, N) input / output projections.
        D: (Din,) skip, or None.
        chunk_size: positions per chunk of the doubling scan (the chunked scan picks its own).
        scan: ``'auto'`` (chunked on CPU, doubling on CUDA), ``'chunked'`` or ``'doubling'``.

    Returns:
        (G, L, Din) outputs.
    """
    if resolve_scan(scan, u.device, u.shape[1]) == 'chunked':
        y = _selective_scan_chunked(u, delta, A, B, C, _chunk_length(u.shape[1]))
        return y if D is None else y + u * D
    decay = torch.exp(delta.unsqueeze(-1) * A)  # (G, L, Din, N)
    inputs = (delta * u).unsqueeze(-1) * B.unsqueeze(2)
    states = linear_scan(decay, inputs, chunk_size)
    y = torch.einsum('gldn,gln->gld', states, C)
    return y if D is None else y + u * D


def selective_scan_sequential(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                              D: Tensor | None = None) -> Tensor:
    """Reference of :func:`selective_scan` with a loop over positions."""
    state = u.new_zeros(u.shape[0], u.shape[2], A.shape[1])
    ys = []
    for t in range(u.shape[1]):
        state = (torch.exp(delta[:, t, :, None] * A) * state
                 + (delta[:, t] * u[:, t])[..., None] * B[:, t, None, :])
        ys.append(torch.einsum('gdn,gn->gd', state, C[:, t]))
    y = torch.stack(ys, 1) if ys else u.new_zeros(u.shape)
    return y if D is None else y + u * D


def _wkv_chunked(r: Tensor, k: Tensor, v: Tensor, w: Tensor, chunk: int) -> Tensor:
    """``r_t . S_{t-1}`` of ``S_t = diag(w_t) S_{t-1} + k_t v_t^T`` by :func:`_chunked_scan`."""
    length = r.shape[1]
    r_c, k_c, v_c = _pad_chunks(r, chunk), _pad_chunks(k, chunk), _pad_chunks(v, chunk)
    w_c = _pad_chunks(w, chunk, 1.0)
    chunk_decay = w_c.prod(2).unsqueeze(-1)  # (G, NC, H, K, 1)
    y = _chunked_scan(lambda t: w_c[:, :, t, ..., None],
                      lambda t: k_c[:, :, t, ..., None] * v_c[:, :, t, :, None, :],
                      lambda s, t: torch.einsum('gchk,gchkv->gchv', r_c[:, :, t], s),
                      chunk_decay, chunk, read_before_update=True)
    return y.flatten(1, 2)[:, :length]


def bi_wkv(r: Tensor, k: Tensor, v: Tensor, w: Tensor, u: Tensor, chunk_size: int = 16,
           scan: str = 'auto') -> Tensor:
    """Bidirectional RWKV-6 WKV as LION's ``wkv6`` CUDA kernel computes it.

    ``y_t = r_t . (S^f_{t-1} + S^b_{t+1} + diag(u) k_t v_t^T)`` with
    ``S^f_t = diag(w_t) S^f_{t-1} + k_t v_t^T`` (forward) and
    ``S^b_t = diag(w_t) S^b_{t+1} + k_t v_t^T`` (backward); states are (K, V) per head.

    Args:
        r, k: (G, L, H, K) receptance and key.
        v: (G, L, H, V) value.
        w: (G, L, H, K) decays in (0, 1] (``exp(-exp(time_decay))``).
        u: (H, K) bonus of the current token.
        chunk_size: positions per chunk of the doubling scan (the chunked scan picks its own).
        scan: ``'auto'`` (chunked on CPU, doubling on CUDA), ``'chunked'`` or ``'doubling'``.

    Returns:
        (G, L, H, V).
    """
    bonus = (r * u * k).sum(-1, keepdim=True) * v
    if resolve_scan(scan, r.device, r.shape[1]) == 'chunked':
        chunk = _chunk_length(r.shape[1])
        fwd = _wkv_chunked(r, k, v, w, chunk)
        bwd = _wkv_chunked(r.flip(1), k.flip(1), v.flip(1), w.flip(1), chunk).flip(1)
        return fwd + bwd + bonus
    kv = k.unsqueeze(-1) * v.unsqueeze(-2)  # (G, L, H, K, V)
    decay = w.unsqueeze(-1)
    fwd = linear_scan(decay, kv, chunk_size)
    bwd = linear_scan(decay.flip(1), kv.flip(1), chunk_size).flip(1)
    zero = torch.zeros_like(kv[:, :1])
    state = torch.cat([zero, fwd[:, :-1]], 1) + torch.cat([bwd[:, 1:], zero], 1)
    y = torch.einsum('glhk,glhkv->glhv', r, state)
    return y + bonus


def bi_wkv_sequential(r: Tensor, k: Tensor, v: Tensor, w: Tensor, u: Tensor) -> Tensor:
    """Reference of :func:`bi_wkv`: the kernel's two loops (backward, forward) over positions."""
    groups, length, heads, kdim = k.shape
    y = v.new_zeros(v.shape)
    state = k.new_zeros(groups, heads, kdim, v.shape[-1])
    outs = []
    for t in reversed(range(length)):
        outs.append(torch.einsum('ghk,ghkv->ghv', r[:, t], state))
        state = w[:, t, ..., None] * state + k[:, t, ..., None] * v[:, t, :, None, :]
    y = y + torch.stack(outs[::-1], 1) if outs else y
    state = torch.zeros_like(state)
    outs = []
    for t in range(length):
        kv = k[:, t, ..., None] * v[:, t, :, None, :]
        outs.append(torch.einsum('ghk,ghkv->ghv', r[:, t], u[..., None] * kv + state))
        state = w[:, t, ..., None] * state + kv
    return y + torch.stack(outs, 1) if outs else y


def retention_log_decay(num_heads: int, device=None, dtype=torch.float32) -> Tensor:
    """(H,) ``log(gamma_h)``, ``gamma_h = 1 - 2^(-5 - h)`` (RetNet's multi-scale decays)."""
    heads = torch.arange(num_heads, device=device, dtype=torch.float64)
    return torch.log1p(-torch.exp2(-5.0 - heads)).to(dtype)


def chunk_retention(q: Tensor, k: Tensor, v: Tensor, chunk_size: int = 64) -> Tensor:
    """LION's chunkwise retention: ``o_i = d^-1/2 sum_j q_i.k_j D_ij v_j`` with
    ``D_ij = gamma^|i-j|`` if ``j`` is in ``i``'s chunk, ``gamma^(i-j)`` if in an earlier chunk, 0
    otherwise (``d`` = key dim).

    In-chunk terms are one masked matrix product per chunk; the earlier chunks enter through their
    decayed (K, V) states, combined by one (NT, NT) decay-matrix product (no scan loop at all).

    Args:
        q, k: (G, H, L, K); v: (G, H, L, V).
        chunk_size: the chunk length (64 in LION's kernel; it changes the result).

    Returns:
        (G, H, L, V).
    """
    groups, heads, length, kdim = q.shape
    if length == 0:
        return v.clone()
    scale = kdim ** -0.5
    chunk = chunk_size
    num_chunks = -(-length // chunk)
    pad = num_chunks * chunk - length
    if pad:  # zero keys / values after the end contribute nothing
        q, k, v = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
    shape = (groups, heads, num_chunks, chunk)
    q, k, v = q.reshape(shape + (kdim,)), k.reshape(shape + (kdim,)), v.reshape(shape + (-1,))
    log_gamma = retention_log_decay(heads, q.device, q.dtype).view(heads, 1, 1)
    pos = torch.arange(chunk, device=q.device, dtype=q.dtype)
    intra = torch.exp((pos[:, None] - pos[None, :]).abs() * log_gamma)  # (H, BT, BT)
    scores = torch.einsum('ghcik,ghcjk->ghcij', q, k) * intra[:, None]
    out = torch.einsum('ghcij,ghcjv->ghciv', scores, v)
    if num_chunks > 1:
        key_decay = torch.exp((chunk - 1 - pos) * log_gamma)  # (H, 1, BT)
        chunk_states = torch.einsum('ghcjk,ghcjv->ghckv', k * key_decay[..., None], v)
        cidx = torch.arange(num_chunks, device=q.device, dtype=q.dtype)
        lag = cidx[:, None] - cidx[None, :] - 1  # chunks between source and target
        inter = torch.where(lag >= 0, torch.exp(lag.clamp(min=0) * chunk * log_gamma),
                            torch.zeros((), dtype=q.dtype, device=q.device))  # (H, NT, NT)
        carry = torch.einsum('hcs,ghskv->ghckv', inter, chunk_states)
        q_decay = torch.exp((pos + 1) * log_gamma)  # (H, 1, BT)
        out = out + torch.einsum('ghcik,ghckv->ghciv', q * q_decay[..., None], carry)
    out = out.reshape(groups, heads, num_chunks * chunk, -1)[:, :, :length]
    return out * scale


def chunk_retention_sequential(q: Tensor, k: Tensor, v: Tensor, chunk_size: int = 64) -> Tensor:
    """Reference of :func:`chunk_retention` by recurrences over positions: a causal state
    ``S_t = gamma S_{t-1} + k_t v_t^T`` plus an anti-causal one reset at every chunk end."""
    groups, heads, length, kdim = q.shape
    gamma = torch.exp(retention_log_decay(heads, q.device, q.dtype)).view(1, heads, 1, 1)
    state = q.new_zeros(groups, heads, kdim, v.shape[-1])
    fwd = []
    for t in range(length):
        state = gamma * state + k[:, :, t, :, None] * v[:, :, t, None, :]
        fwd.append(torch.einsum('ghk,ghkv->ghv', q[:, :, t], state))
    if length == 0:
        return v.clone()
    bwd = [None] * length
    state = torch.zeros_like(state)
    for t in reversed(range(length)):
        if (t + 1) % chunk_size == 0 or t == length - 1:  # last position of its chunk
            state = torch.zeros_like(state)
        bwd[t] = torch.einsum('ghk,ghkv->ghv', q[:, :, t], state)
        state = gamma * (state + k[:, :, t, :, None] * v[:, :, t, None, :])
    out = torch.stack(fwd, 2) + torch.stack(bwd, 2)
    return out * kdim ** -0.5


# --------------------------------------------------------------------------------------------
# Mamba
# --------------------------------------------------------------------------------------------
def _causal_depthwise_conv(x: Tensor, conv: nn.Conv1d) -> Tensor:
    """(G, L, D) -> (G, L, D) causal depthwise conv (left zero padding), as ``causal_conv1d``."""
    out = F.conv1d(x.transpose(1, 2), conv.weight, conv.bias, padding=conv.kernel_size[0] - 1,
                   groups=conv.groups)
    return out[..., :x.shape[1]].transpose(1, 2)


class BiMamba(nn.Module):
    """Bidirectional Mamba mixer of LION (parameter names as the official ``Mamba`` module).

    Args:
        d_model: channels ``C``.
        d_state: SSM state size ``N`` (16).
        d_conv: causal conv width (4).
        expand: inner width factor (2): ``Din = expand * C``.
        dt_rank: rank of the ``delta`` projection, ``'auto'`` = ``ceil(C / 16)``.
        dt_min, dt_max, dt_init_floor, dt_scale: ``delta`` initialisation as ``mamba_ssm``.
        conv_bias, bias: biases of the conv and of the in/out projections.
        chunk_size: chunk length of the doubling scan.
        scan: :func:`selective_scan`'s method (``'auto'``: chunked on CPU, doubling on CUDA).
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_rank: int | str = 'auto', dt_min: float = 0.001, dt_max: float = 0.1,
                 dt_init_floor: float = 1e-4, dt_scale: float = 1.0, conv_bias: bool = True,
                 bias: bool = False, chunk_size: int = 16, scan: str = 'auto') -> None:
        super().__init__()
        resolve_scan(scan, torch.device('cpu'), 0)  # an unknown name fails here, not at run time
        self.scan = scan
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == 'auto' else int(dt_rank)
        self.chunk_size = chunk_size
        d_inner = self.d_inner

        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=bias)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, bias=conv_bias,
                                padding=d_conv - 1)
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner, bias=True)
        # mamba_ssm's dt init: weights U(+-dt_rank^-0.5 * dt_scale), bias = softplus^-1 of a
        # log-uniform step in [dt_min, dt_max]
        std = self.dt_rank ** -0.5 * dt_scale
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min)).clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        s4d = torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1)
        self.A_log = nn.Parameter(s4d.clone())  # S4D-real init: A = -(1..N)
        self.D = nn.Parameter(torch.ones(d_inner))
        # the backward direction: its own conv / x_proj / dt_proj / A / D (the official code
        # leaves dt_proj_b at nn.Linear's default init; so do we)
        self.A_b_log = nn.Parameter(s4d.clone())
        self.conv1d_b = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, bias=conv_bias,
                                  padding=d_conv - 1)
        self.x_proj_b = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj_b = nn.Linear(self.dt_rank, d_inner, bias=True)
        self.D_b = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=bias)

    def _direction(self, x: Tensor, mask: Tensor | None, conv: nn.Conv1d, x_proj: nn.Linear,
                   dt_proj: nn.Linear, A_log: Tensor, D: Tensor, sequential: bool) -> Tensor:
        x = F.silu(_causal_depthwise_conv(x, conv))
        dt, B, C = torch.split(x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(dt_proj(dt))
        if mask is not None:  # delta = 0: the state passes padded positions unchanged
            delta = delta * mask.unsqueeze(-1)
        A = -torch.exp(A_log)
        if sequential:
            return selective_scan_sequential(x, delta, A, B, C, D)
        return selective_scan(x, delta, A, B, C, D, self.chunk_size, self.scan)

    def forward(self, x: Tensor, mask: Tensor | None = None, sequential: bool = False) -> Tensor:
        """(G, L, C) -> (G, L, C); ``mask`` (G, L) bool marks valid positions (padding at the
        end); ``sequential`` runs the reference loop instead of the parallel scan."""
        xi, z = self.in_proj(x).chunk(2, dim=-1)
        if mask is not None:
            xi = xi * mask.unsqueeze(-1).to(xi.dtype)
            mask = mask.to(xi.dtype)
        y_f = self._direction(xi, mask, self.conv1d, self.x_proj, self.dt_proj, self.A_log,
                              self.D, sequential)
        y_b = self._direction(xi.flip(1), None if mask is None else mask.flip(1), self.conv1d_b,
                              self.x_proj_b, self.dt_proj_b, self.A_b_log, self.D_b, sequential)
        return self.out_proj((y_f + y_b.flip(1)) * F.silu(z))


class MambaBlock(nn.Module):
    """LION's Mamba block: ``x + drop_path(norm(mamba(x)))`` (post-norm, as published)."""

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 drop_path: float = 0.0, post_norm: bool = True, chunk_size: int = 16,
                 **mamba_kwargs) -> None:
        super().__init__()
        self.mamba = BiMamba(d_model, d_state, d_conv, expand, chunk_size=chunk_size,
                             **mamba_kwargs)
        self.norm = nn.LayerNorm(d_model)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.post_norm = post_norm

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """(G, L, C) -> (G, L, C)."""
        if self.post_norm:
            return x + self.drop_path(self.norm(self.mamba(x, mask)))
        return x + self.drop_path(self.mamba(self.norm(x), mask))


# --------------------------------------------------------------------------------------------
# RWKV-6 (Vision-RWKV 6 as used by LION)
# --------------------------------------------------------------------------------------------
def _token_shift(x: Tensor) -> Tensor:
    """(G, L, C): the previous position's features, zero at position 0 (RWKV 'time_shift')."""
    return F.pad(x, (0, 0, 1, 0))[:, :-1]


class RWKVTimeMix(nn.Module):
    """RWKV-6 spatial (time) mixing with bidirectional WKV; names as ``VRWKV_SpatialMix_V6``.

    Args:
        n_embd: channels ``C``.
        n_head: heads (head size ``C / n_head``).
        n_layer, layer_id: depth and index for the 'fancy' initialisation.
        chunk_size: chunk length of the doubling scan.
        scan: :func:`bi_wkv`'s method (``'auto'``: chunked on CPU, doubling on CUDA).
    """

    def __init__(self, n_embd: int, n_head: int, n_layer: int, layer_id: int,
                 chunk_size: int = 16, scan: str = 'auto') -> None:
        super().__init__()
        resolve_scan(scan, torch.device('cpu'), 0)
        self.scan = scan
        if n_embd % n_head:
            raise ValueError(f'RWKV: n_embd {n_embd} not divisible by n_head {n_head}')
        self.n_embd, self.n_head, self.head_size = n_embd, n_head, n_embd // n_head
        self.chunk_size = chunk_size
        ratio_0_to_1 = layer_id / max(n_layer - 1, 1)
        ratio_1_to_0 = 1.0 - layer_id / n_layer
        ddd = (torch.arange(n_embd, dtype=torch.float32) / n_embd).view(1, 1, n_embd)
        self.time_maa_x = nn.Parameter(1.0 - ddd.pow(ratio_1_to_0))
        self.time_maa_w = nn.Parameter(1.0 - ddd.pow(ratio_1_to_0))
        self.time_maa_k = nn.Parameter(1.0 - ddd.pow(ratio_1_to_0))
        self.time_maa_v = nn.Parameter(1.0 - (ddd.pow(ratio_1_to_0) + 0.3 * ratio_0_to_1))
        self.time_maa_r = nn.Parameter(1.0 - ddd.pow(0.5 * ratio_1_to_0))
        self.time_maa_g = nn.Parameter(1.0 - ddd.pow(0.5 * ratio_1_to_0))
        mix_dim, decay_dim = 32, 64
        self.time_maa_w1 = nn.Parameter(torch.empty(n_embd, 5 * mix_dim).uniform_(-1e-4, 1e-4))
        self.time_maa_w2 = nn.Parameter(torch.empty(5, mix_dim, n_embd).uniform_(-1e-4, 1e-4))
        n = torch.arange(n_embd, dtype=torch.float32)
        decay_speed = -6 + 5 * (n / max(n_embd - 1, 1)) ** (0.7 + 1.3 * ratio_0_to_1)
        self.time_decay = nn.Parameter(decay_speed.view(1, 1, n_embd))
        self.time_decay_w1 = nn.Parameter(torch.empty(n_embd, decay_dim).uniform_(-1e-4, 1e-4))
        self.time_decay_w2 = nn.Parameter(torch.empty(decay_dim, n_embd).uniform_(-1e-4, 1e-4))
        zigzag = ((n + 1) % 3 - 1) * 0.1
        bonus = ratio_0_to_1 * (1 - n / max(n_embd - 1, 1)) + zigzag
        self.time_faaaa = nn.Parameter(bonus.view(n_head, self.head_size))
        self.key = nn.Linear(n_embd, n_embd, bias=False)
        self.value = nn.Linear(n_embd, n_embd, bias=False)
        self.receptance = nn.Linear(n_embd, n_embd, bias=False)
        self.gate = nn.Linear(n_embd, n_embd, bias=False)
        self.output = nn.Linear(n_embd, n_embd, bias=False)
        self.ln_x = nn.GroupNorm(n_head, n_embd, eps=1e-5)

    def forward(self, x: Tensor, mask: Tensor | None = None, sequential: bool = False) -> Tensor:
        """(G, L, C) -> (G, L, C); padded positions (``mask`` False) get zero keys."""
        groups, length, channels = x.shape
        xx = _token_shift(x) - x
        xxx = x + xx * self.time_maa_x
        mix = torch.tanh(xxx @ self.time_maa_w1).view(groups * length, 5, -1).transpose(0, 1)
        mw, mk, mv, mr, mg = torch.bmm(mix, self.time_maa_w2).view(5, groups, length, -1)
        xw = x + xx * (self.time_maa_w + mw)
        xk = x + xx * (self.time_maa_k + mk)
        xv = x + xx * (self.time_maa_v + mv)
        xr = x + xx * (self.time_maa_r + mr)
        xg = x + xx * (self.time_maa_g + mg)
        r, k, v = self.receptance(xr), self.key(xk), self.value(xv)
        g = F.silu(self.gate(xg))
        log_w = self.time_decay + torch.tanh(xw @ self.time_decay_w1) @ self.time_decay_w2
        if mask is not None:
            k = k * mask.unsqueeze(-1).to(k.dtype)
        heads = (groups, length, self.n_head, self.head_size)
        r, k, v = r.view(heads), k.view(heads), v.view(heads)
        w = torch.exp(-torch.exp(log_w)).view(heads)
        if sequential:
            y = bi_wkv_sequential(r, k, v, w, self.time_faaaa)
        else:
            y = bi_wkv(r, k, v, w, self.time_faaaa, self.chunk_size, self.scan)
        y = self.ln_x(y.reshape(groups * length, channels)).view(groups, length, channels)
        return self.output(y * g)


class RWKVChannelMix(nn.Module):
    """RWKV channel mixing (squared-ReLU FFN gated by a sigmoid receptance), with token shift."""

    def __init__(self, n_embd: int, n_layer: int, layer_id: int, hidden_rate: int = 4) -> None:
        super().__init__()
        ratio_1_to_0 = 1.0 - layer_id / n_layer
        ddd = (torch.arange(n_embd, dtype=torch.float32) / n_embd).view(1, 1, n_embd)
        self.spatial_mix_k = nn.Parameter(ddd.pow(ratio_1_to_0))
        self.spatial_mix_r = nn.Parameter(ddd.pow(ratio_1_to_0))
        self.key = nn.Linear(n_embd, hidden_rate * n_embd, bias=False)
        self.receptance = nn.Linear(n_embd, n_embd, bias=False)
        self.value = nn.Linear(hidden_rate * n_embd, n_embd, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """(G, L, C) -> (G, L, C)."""
        # the official mixes x with (shifted - x), not with shifted; kept for its checkpoints
        xx = _token_shift(x) - x
        xk = x * self.spatial_mix_k + xx * (1 - self.spatial_mix_k)
        xr = x * self.spatial_mix_r + xx * (1 - self.spatial_mix_r)
        kv = self.value(torch.relu(self.key(xk)).square())
        return torch.sigmoid(self.receptance(xr)) * kv


class RWKVBlock(nn.Module):
    """LION's RWKV block: pre-norm time mix + channel mix with layer scale (``init_values``)."""

    def __init__(self, d_model: int, n_head: int, n_layer: int, layer_id: int,
                 drop_path: float = 0.0, hidden_rate: int = 4, init_values: float | None = None,
                 post_norm: bool = False, chunk_size: int = 16, scan: str = 'auto',
                 **unused) -> None:
        super().__init__()
        self.layer_id = layer_id
        self.ln1 = nn.LayerNorm(d_model)
        self.ln2 = nn.LayerNorm(d_model)
        if layer_id == 0:
            self.ln0 = nn.LayerNorm(d_model)
        self.att = RWKVTimeMix(d_model, n_head, n_layer, layer_id, chunk_size, scan)
        self.ffn = RWKVChannelMix(d_model, n_layer, layer_id, hidden_rate)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.post_norm = post_norm
        self.layer_scale = init_values is not None
        if self.layer_scale:
            self.gamma1 = nn.Parameter(init_values * torch.ones(d_model))
            self.gamma2 = nn.Parameter(init_values * torch.ones(d_model))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """(G, L, C) -> (G, L, C)."""
        if self.layer_id == 0:
            x = self.ln0(x)
        g1 = self.gamma1 if self.layer_scale else 1.0
        g2 = self.gamma2 if self.layer_scale else 1.0
        if self.post_norm:
            x = x + self.drop_path(g1 * self.ln1(self.att(x, mask)))
            return x + self.drop_path(g2 * self.ln2(self.ffn(x)))
        x = x + self.drop_path(g1 * self.att(self.ln1(x), mask))
        return x + self.drop_path(g2 * self.ffn(self.ln2(x)))


# --------------------------------------------------------------------------------------------
# RetNet
# --------------------------------------------------------------------------------------------
class MultiScaleRetention(nn.Module):
    """Multi-scale retention in LION's chunk form; names as the official module.

    Args:
        hidden_size: channels ``C``.
        num_heads: heads; head ``h`` decays with ``gamma_h = 1 - 2^(-5-h)``.
        expand_k, expand_v: key / value widths relative to ``C``.
        used_MLP: as LION: when True (published) there is no output gate / norm.
        chunk_size: chunk length (64 as LION's kernel; it defines the operator).
    """

    def __init__(self, hidden_size: int, num_heads: int, expand_k: float = 1.0,
                 expand_v: float = 2.0, used_MLP: bool = True, chunk_size: int = 64) -> None:
        super().__init__()
        self.key_dim, self.value_dim = int(hidden_size * expand_k), int(hidden_size * expand_v)
        if self.key_dim % num_heads or self.value_dim % num_heads:
            raise ValueError(f'RetNet: key/value dims {self.key_dim}/{self.value_dim} not '
                             f'divisible by {num_heads} heads')
        self.num_heads, self.chunk_size = num_heads, chunk_size
        self.q_proj = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, self.value_dim, bias=False)
        self.use_gate = not used_MLP
        if self.use_gate:
            self.g_norm = nn.LayerNorm(self.value_dim // num_heads, eps=1e-6)
            self.g_proj = nn.Linear(hidden_size, self.value_dim, bias=False)
        self.o_proj = nn.Linear(self.value_dim, hidden_size, bias=False)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight, gain=2 ** -2.5)

    def forward(self, x: Tensor, mask: Tensor | None = None, sequential: bool = False) -> Tensor:
        """(G, L, C) -> (G, L, C); padded positions (``mask`` False) get zero keys."""
        groups, length, _ = x.shape
        heads = self.num_heads
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if mask is not None:
            k = k * mask.unsqueeze(-1).to(k.dtype)
        q, k, v = (t.view(groups, length, heads, -1).transpose(1, 2) for t in (q, k, v))
        if sequential:
            o = chunk_retention_sequential(q, k, v, self.chunk_size)
        else:
            o = chunk_retention(q, k, v, self.chunk_size)
        o = o.transpose(1, 2)  # (G, L, H, Dv)
        if self.use_gate:
            o = self.g_norm(o).reshape(groups, length, -1) * F.silu(self.g_proj(x))
        else:
            o = o.reshape(groups, length, -1)
        return self.o_proj(o)


class RetNetFFN(nn.Module):
    """fc1 -> GELU -> fc2."""

    def __init__(self, embed_dim: int, ffn_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(embed_dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class RetNetBlock(nn.Module):
    """LION's RetNet block: pre-norm retention + (``used_MLP``) pre-norm FFN, residuals."""

    def __init__(self, d_model: int, n_head: int, expand_k: float = 1.0, expand_v: float = 2.0,
                 hidden_rate: int = 4, used_MLP: bool = True, drop_path: float = 0.0,
                 chunk_size: int = 64, **unused) -> None:
        super().__init__()
        self.retention_layer_norm = nn.LayerNorm(d_model, eps=1e-6)
        self.multi_scale_retention = MultiScaleRetention(d_model, n_head, expand_k, expand_v,
                                                         used_MLP, chunk_size)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.final_layer_norm = nn.LayerNorm(d_model, eps=1e-6)
        self.used_MLP = used_MLP
        if used_MLP:
            self.ffn = RetNetFFN(d_model, hidden_rate * d_model)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """(G, L, C) -> (G, L, C)."""
        x = x + self.drop_path(self.multi_scale_retention(self.retention_layer_norm(x), mask))
        if self.used_MLP:
            x = x + self.drop_path(self.ffn(self.final_layer_norm(x)))
        return x


_OPERATORS = {'mamba': MambaBlock, 'rwkv': RWKVBlock, 'retnet': RetNetBlock}


def build_linear_rnn_block(operator: str, d_model: int, layer_id: int = 0, n_layer: int = 1,
                           **cfg) -> nn.Module:
    """The block of ``operator`` (``'mamba'``, ``'rwkv'`` or ``'retnet'``, any case).

    ``layer_id`` / ``n_layer`` feed RWKV's depth-dependent init; the other operators ignore them.
    ``cfg`` holds the operator's own arguments (e.g. ``d_state``, ``n_head``, ``drop_path``).
    """
    name = operator.lower()
    if name not in _OPERATORS:
        raise ValueError(f"unknown linear RNN operator '{operator}', expected one of "
                         f'{sorted(_OPERATORS)}')
    if name == 'rwkv':
        return RWKVBlock(d_model, layer_id=layer_id, n_layer=n_layer, **cfg)
    return _OPERATORS[name](d_model, **cfg)
