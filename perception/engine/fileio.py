"""Writing files so that nothing is lost: a reader sees the old file or the new one, never half."""
from __future__ import annotations

import os
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike, payload: bytes, durable: bool = True) -> Path:
    """Write ``payload`` to a temporary file beside ``path``, then rename it into place.

    The parent folder is created if needed. A run interrupted midway leaves the previous file (if
    any) untouched and no temporary file behind. ``durable`` also syncs the data to disk before
    the rename (info files, submissions); bulk outputs (per-frame point clouds, images) skip it,
    since a sync per small file costs more than the work that made it. Returns the path.
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
    return path
