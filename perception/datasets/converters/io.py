"""Writing converter outputs so that nothing is lost: atomic writes, no silent overwrites."""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

from ...engine.errors import DataError


def check_can_write(path: str | os.PathLike, force: bool) -> Path:
    """Refuse to replace an existing output unless ``force``; create the parent folder."""
    path = Path(path)
    if path.exists() and not force:
        raise DataError(f'{path} already exists; pass --force to overwrite it')
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_bytes(path: str | os.PathLike, payload: bytes, durable: bool = True) -> None:
    """Write ``payload`` to a temporary file beside ``path``, then rename it into place.

    A run interrupted midway leaves the previous file (if any) untouched. ``durable`` also syncs
    the data to disk before the rename (for the info files; bulk per-frame outputs skip it, since
    a sync per small file costs more than the conversion itself).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    try:
        with open(tmp, 'wb') as f:
            f.write(payload)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_dump_pickle(obj: Any, path: str | os.PathLike, force: bool = False) -> Path:
    """Pickle ``obj`` to ``path`` atomically; an existing file needs ``force``."""
    path = check_can_write(path, force)
    atomic_write_bytes(path, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    return path
