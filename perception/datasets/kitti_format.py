"""Reading and writing KITTI object label files (``label_2/XXXXXX.txt`` and detection results).

A line holds 15 whitespace-separated fields, and a detection file adds a 16th, the score::

    type truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y [score]

The file's size order is ``h w l``; :func:`read_label_file` returns the sizes as ``(l, h, w)``
so that ``location``, ``dimensions`` and ``rotation_y`` concatenate into the camera-box layout
``[x, y, z, l, h, w, ry]`` (bottom centre, rectified camera frame; docs/conventions.md).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np

from ..engine.errors import DataError
from ..engine.fileio import atomic_write_bytes

# Field order of one line after the type name (file order: sizes h, w, l).
_FIELDS = ('truncated', 'occluded', 'alpha', 'x1', 'y1', 'x2', 'y2', 'h', 'w', 'l', 'x', 'y', 'z',
           'rotation_y', 'score')

# Values KITTI writes where a field does not apply (DontCare lines, detections).
UNKNOWN_TRUNCATED = -1.0
UNKNOWN_OCCLUDED = -1
UNKNOWN_ALPHA = -10.0


def empty_annos(with_score: bool = False) -> dict[str, np.ndarray]:
    """The annotation dict of a frame with no objects (arrays with 0 rows)."""
    annos = {
        'name': np.zeros(0, dtype='<U1'),
        'truncated': np.zeros(0),
        'occluded': np.zeros(0, dtype=np.int64),
        'alpha': np.zeros(0),
        'bbox': np.zeros((0, 4)),
        'dimensions': np.zeros((0, 3)),
        'location': np.zeros((0, 3)),
        'rotation_y': np.zeros(0),
    }
    if with_score:
        annos['score'] = np.zeros(0)
    return annos


def read_label_file(path: str | os.PathLike,
                    with_score: bool | None = None) -> dict[str, np.ndarray]:
    """Read a KITTI label / detection file.

    Args:
        path: the ``.txt`` file.
        with_score: ``False``: every line must have 15 fields (ground truth); ``True``: 16 fields
            (detections); ``None``: either, but the same count on every line of the file.

    Returns:
        ``name`` (N,) str, ``truncated`` (N,) float, ``occluded`` (N,) int64, ``alpha`` (N,),
        ``bbox`` (N, 4) ``x1 y1 x2 y2`` in pixels, ``dimensions`` (N, 3) **(l, h, w)**,
        ``location`` (N, 3) bottom centre ``x y z``, ``rotation_y`` (N,), all float64; and
        ``score`` (N,) only when the file has a 16th column (with ``with_score=True`` also for an
        empty file). Ground-truth files therefore have no ``score`` key. ``DontCare`` lines are
        kept. An empty file (or one holding only blank lines) is a frame with no objects.

    Raises:
        DataError: the file is missing, a line has the wrong number of fields, or a field is not
            a finite number (NaN and inf are refused); the message names the file, the line and
            the field.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f'{path}: label file not found')
    try:
        text = path.read_text()
    except UnicodeDecodeError as err:
        raise DataError(f'{path}: not a text file ({err})') from None

    rows: list[list[str]] = []
    line_numbers: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if fields:
            rows.append(fields)
            line_numbers.append(number)
    if not rows:
        return empty_annos(with_score=bool(with_score))

    allowed = {False: (15,), True: (16,), None: (15, 16)}[with_score]
    expected = ' or '.join(map(str, allowed))
    first_count = len(rows[0])
    for fields, number in zip(rows, line_numbers):
        if len(fields) not in allowed:
            raise DataError(
                f'{path}, line {number}: {len(fields)} fields, expected {expected} '
                '(type truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y'
                f'{" score" if with_score is not False else ""})')
        if len(fields) != first_count:
            raise DataError(f'{path}, line {number}: {len(fields)} fields, but line '
                            f'{line_numbers[0]} has {first_count}; a file either has scores on '
                            'every line or on none')

    names = np.array([fields[0] for fields in rows])
    numbers = _parse_numbers(path, rows, line_numbers)
    occluded = numbers[:, 1]
    bad = np.flatnonzero(occluded != np.round(occluded))
    if bad.size:
        raise DataError(f'{path}, line {line_numbers[bad[0]]}: field 3 (occluded) is '
                        f'{rows[bad[0]][2]!r}, expected an integer')
    annos = {
        'name': names,
        'truncated': numbers[:, 0].copy(),
        'occluded': occluded.astype(np.int64),
        'alpha': numbers[:, 2].copy(),
        'bbox': numbers[:, 3:7].copy(),
        'dimensions': numbers[:, [9, 7, 8]].copy(),  # file h w l -> (l, h, w)
        'location': numbers[:, 10:13].copy(),
        'rotation_y': numbers[:, 13].copy(),
    }
    if first_count == 16:
        annos['score'] = numbers[:, 14].copy()
    return annos


def _parse_numbers(path: Path, rows: list[list[str]], line_numbers: list[int]) -> np.ndarray:
    """Fields 2.. of every row as float64 (M, 14 or 15); a clear error for the first bad one."""
    try:
        numbers = np.array([fields[1:] for fields in rows], dtype=np.float64)
    except ValueError:
        numbers = None
    if numbers is not None and np.isfinite(numbers).all():
        return numbers
    # Slow path, only to name the offending field.
    for fields, number in zip(rows, line_numbers):
        for column, value in enumerate(fields[1:], start=2):
            name = _FIELDS[column - 2]
            try:
                parsed = float(value)
            except ValueError:
                raise DataError(f'{path}, line {number}: field {column} ({name}) is {value!r}, '
                                'expected a number') from None
            if not np.isfinite(parsed):
                raise DataError(f'{path}, line {number}: field {column} ({name}) is {value!r}, '
                                'expected a finite number')
    raise AssertionError('unreachable: a bad field was detected but not found')


def write_label_file(path: str | os.PathLike, annos: Mapping[str, np.ndarray],
                     decimals: int = 2) -> None:
    """Write ``annos`` (the layout :func:`read_label_file` returns) as a KITTI label file.

    ``name``, ``bbox`` (N, 4), ``dimensions`` (N, 3) as (l, h, w), ``location`` (N, 3) and
    ``rotation_y`` (N,) are required. ``truncated``, ``occluded`` and ``alpha`` default to KITTI's
    "not given" values (-1, -1, -10), as detection files write them. With a ``score`` key the
    16th column is written (with at least 4 decimals, so rankings survive). Floats are written
    with ``decimals`` decimals (KITTI's own files use 2). The parent folder is created; the file
    is replaced if it exists.
    """
    names = np.asarray(annos['name']).astype(str).reshape(-1)
    count = len(names)

    def column(key: str, width: int | None, default: float | None = None) -> np.ndarray:
        if key not in annos:
            if default is None:
                raise KeyError(f'write_label_file({path}): annos has no {key!r}')
            value = np.full(count, default, dtype=np.float64)
        else:
            value = np.asarray(annos[key], dtype=np.float64)
        shape = (count,) if width is None else (count, width)
        if value.shape != shape:
            raise ValueError(f'write_label_file({path}): {key!r} has shape {value.shape}, '
                             f'expected {shape} for {count} objects')
        if not np.isfinite(value).all():
            raise ValueError(f'write_label_file({path}): {key!r} holds NaN or inf')
        return value

    bad_names = [name for name in names if not name or any(c.isspace() for c in name)]
    if bad_names:
        raise ValueError(f'write_label_file({path}): object type {bad_names[0]!r} is empty or '
                         'holds whitespace')
    truncated = column('truncated', None, UNKNOWN_TRUNCATED)
    occluded = column('occluded', None, UNKNOWN_OCCLUDED)
    alpha = column('alpha', None, UNKNOWN_ALPHA)
    bbox = column('bbox', 4)
    dims = column('dimensions', 3)
    loc = column('location', 3)
    rot = column('rotation_y', None)
    score = column('score', None) if 'score' in annos else None

    f = f'{{:.{decimals}f}}'
    fs = f'{{:.{max(decimals, 4)}f}}'
    lines = []
    for i in range(count):
        length, height, width = dims[i]
        values = [names[i], f.format(truncated[i]), str(int(round(occluded[i]))),
                  f.format(alpha[i]), *(f.format(v) for v in bbox[i]), f.format(height),
                  f.format(width), f.format(length), *(f.format(v) for v in loc[i]),
                  f.format(rot[i])]
        if score is not None:
            values.append(fs.format(score[i]))
        lines.append(' '.join(values))
    atomic_write_bytes(path, ''.join(line + '\n' for line in lines).encode(), durable=False)
