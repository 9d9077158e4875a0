"""Shared helpers: the repository root, the shared sample data, and running the tools."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / 'shared' / 'data'
DEMO_CONFIG = ROOT / 'configs/espcn/espcn_x3_synthetic-sr.py'


def run_tool(*args: str | os.PathLike, cwd: str | os.PathLike | None = None,
             timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python tools/<args>`` as a user would, capturing output."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED='1')
    env.pop('PERCEPTION_DEBUG', None)
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd or ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f'shared sample data not found at {SHARED_DATA}')
    return SHARED_DATA


@pytest.fixture
def one_thread():
    """One torch thread: the 2-core test machine is shared, and learning budgets are in CPU s."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def two_threads():
    """Two torch threads whatever OMP_NUM_THREADS says, so thread races in kernels show up."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)
