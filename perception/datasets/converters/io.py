"""Writing converter outputs so that nothing is lost: atomic writes, no silent overwrites."""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

from ...engine.errors import DataError
from ...engine.fileio import atomic_write_bytes

__all__ = ['atomic_dump_pickle', 'atomic_write_bytes', 'check_can_write']


def check_can_write(path: str | os.PathLike, force: bool) -> Path:
    """Refuse to replace an existing output unless ``force``; create the parent folder."""
    path = Path(path)
    if path.exists() and not force:
        raise DataError(f'{path} already exists; pass --force to overwrite it')
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def atomic_dump_pickle(obj: Any, path: str | os.PathLike, force: bool = False) -> Path:
    """Pickle ``obj`` to ``path`` atomically; an existing file needs ``force``."""
    path = check_can_write(path, force)
    atomic_write_bytes(path, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    return path
