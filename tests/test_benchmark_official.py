"""tools/benchmark_official.py without the official code: arguments, timing order, the table,
and skipping a model whose official repository is absent."""
import importlib.util
import itertools
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location('benchmark_official',
                                               ROOT / 'tools' / 'benchmark_official.py')
bench = importlib.util.module_from_spec(_spec)
sys.modules['benchmark_official'] = bench  # dataclasses look their module up
_spec.loader.exec_module(bench)


def test_parse_args_defaults_and_choices(tmp_path):
    args = bench.parse_args(['--official-root', str(tmp_path)])
    assert args.official_root == tmp_path
    assert args.models == ['raft-stereo', 'igev', 'swinir-light', 'hit-sr', 'raft', 'sea-raft-s',
                           'monodetr', 'flatformer']
    assert (args.runs, args.warmup, args.threads) == (5, 1, 1)
    args = bench.parse_args(['--official-root', str(tmp_path), '--models', 'raft', 'igev',
                             '--runs', '3', '--warmup', '0', '--threads', '2'])
    assert args.models == ['raft', 'igev'] and (args.runs, args.warmup, args.threads) == (3, 0, 2)
    with pytest.raises(SystemExit):
        bench.parse_args(['--official-root', str(tmp_path), '--models', 'no-such-model'])
    with pytest.raises(SystemExit):
        bench.parse_args(['--official-root', str(tmp_path), '--runs', '0'])


def test_table_from_fake_timings():
    rows = [bench.Row('raft', '436x1024', '12', official_s=2.0, ours_s=1.5, max_diff=3.2e-5),
            bench.Row('hit-sr', '256x256 LR', '-', official_s=4.0, ours_s=5.0, max_diff=0.0)]
    assert rows[0].ratio == 0.75 and rows[1].ratio == 1.25
    lines = bench.format_table(rows).splitlines()
    assert lines[0].startswith('| model | input | iterations | official median s |')
    assert lines[2] == '| raft | 436x1024 | 12 | 2.000 | 1.500 | 0.75 | 3.2e-05 |'
    assert lines[3] == '| hit-sr | 256x256 LR | - | 4.000 | 5.000 | 1.25 | 0.0e+00 |'
    assert len(lines) == 4


def test_timing_alternates_and_drops_warmup(monkeypatch):
    calls = []
    # each call takes (1 + call index) seconds on a fake clock
    clock = itertools.count()
    ticks = iter(t for i in clock for t in (0.0, 1.0 + i))
    monkeypatch.setattr(bench.time, 'perf_counter', lambda: next(ticks))
    medians = bench.time_interleaved(lambda: calls.append('official'),
                                     lambda: calls.append('ours'), runs=3, warmup=1)
    assert calls == ['official', 'ours'] * 4
    # official calls are 0, 2, 4, 6 (durations 1, 3, 5, 7); warm-up drops the first of each
    assert medians == (5.0, 6.0)


def test_skips_model_without_official_code(tmp_path, capsys):
    (tmp_path / 'RAFT').mkdir()  # a folder without core/raft.py is not the official code
    assert bench.main(['--official-root', str(tmp_path), '--models', 'raft', 'hit-sr']) == 0
    out = capsys.readouterr().out
    assert (f'skipping raft: its official code is not under --official-root '
            f'({tmp_path}/RAFT/core/raft.py not found') in out
    assert 'skipping hit-sr: its official code is not under --official-root' in out
    assert out.rstrip().splitlines()[-1] == '| --- | --- | --- | --- | --- | --- | --- |'
