"""Cityscapes: rasterise ``*_gtFine_polygons.json`` into ``*_gtFine_labelTrainIds.png``.

Follows cityscapesScripts' ``json2labelImg`` with the ``trainIds`` encoding: the image starts as
``unlabeled`` (trainId 255); objects are drawn in file order, each filling its polygon with its
label's trainId, so later objects cover earlier ones. Deleted objects and labels with a negative id
(``license plate``) are skipped; a name ending in ``group`` (``cargroup``) that is not itself a
label takes the label without the suffix. Polygons are filled with ``cv2.fillPoly``.

Run through ``python tools/create_data.py cityscapes --root-path data/cityscapes``.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from mmengine.logging import print_log
from mmengine.utils import track_parallel_progress, track_progress

from ...engine.errors import DataError
from .io import atomic_write_bytes

__all__ = ['CITYSCAPES_LABELS', 'CityscapesLabel', 'create_cityscapes_trainids',
           'json_to_train_ids', 'polygons_to_train_ids']

POLYGON_SUFFIX = '_gtFine_polygons.json'
TRAIN_IDS_SUFFIX = '_gtFine_labelTrainIds.png'


class CityscapesLabel(NamedTuple):
    name: str
    id: int
    train_id: int


# cityscapesScripts' label table (helpers/labels.py): name, id, trainId.
CITYSCAPES_LABELS = (
    CityscapesLabel('unlabeled', 0, 255),
    CityscapesLabel('ego vehicle', 1, 255),
    CityscapesLabel('rectification border', 2, 255),
    CityscapesLabel('out of roi', 3, 255),
    CityscapesLabel('static', 4, 255),
    CityscapesLabel('dynamic', 5, 255),
    CityscapesLabel('ground', 6, 255),
    CityscapesLabel('road', 7, 0),
    CityscapesLabel('sidewalk', 8, 1),
    CityscapesLabel('parking', 9, 255),
    CityscapesLabel('rail track', 10, 255),
    CityscapesLabel('building', 11, 2),
    CityscapesLabel('wall', 12, 3),
    CityscapesLabel('fence', 13, 4),
    CityscapesLabel('guard rail', 14, 255),
    CityscapesLabel('bridge', 15, 255),
    CityscapesLabel('tunnel', 16, 255),
    CityscapesLabel('pole', 17, 5),
    CityscapesLabel('polegroup', 18, 255),
    CityscapesLabel('traffic light', 19, 6),
    CityscapesLabel('traffic sign', 20, 7),
    CityscapesLabel('vegetation', 21, 8),
    CityscapesLabel('terrain', 22, 9),
    CityscapesLabel('sky', 23, 10),
    CityscapesLabel('person', 24, 11),
    CityscapesLabel('rider', 25, 12),
    CityscapesLabel('car', 26, 13),
    CityscapesLabel('truck', 27, 14),
    CityscapesLabel('bus', 28, 15),
    CityscapesLabel('caravan', 29, 255),
    CityscapesLabel('trailer', 30, 255),
    CityscapesLabel('train', 31, 16),
    CityscapesLabel('motorcycle', 32, 17),
    CityscapesLabel('bicycle', 33, 18),
    CityscapesLabel('license plate', -1, -1),
)
_BY_NAME = {label.name: label for label in CITYSCAPES_LABELS}


def _label_for(name: str, where: str) -> CityscapesLabel:
    if name not in _BY_NAME and name.endswith('group'):
        name = name[:-len('group')]
    if name not in _BY_NAME:
        raise DataError(f'{where}: unknown Cityscapes label {name!r}')
    return _BY_NAME[name]


def polygons_to_train_ids(annotation: dict, where: str = '<annotation>') -> np.ndarray:
    """Rasterise one parsed polygon JSON into an ``(imgHeight, imgWidth)`` uint8 trainId map.

    ``annotation``: ``{'imgHeight', 'imgWidth', 'objects': [{'label', 'polygon': [[x, y], ...],
    'deleted'?}, ...]}``. ``where`` names the source in error messages.
    """
    try:
        height, width = int(annotation['imgHeight']), int(annotation['imgWidth'])
        objects = annotation['objects']
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f'{where}: expected imgHeight, imgWidth and objects ({exc})') from None
    if height <= 0 or width <= 0:
        raise DataError(f'{where}: image size {width}x{height} must be positive')
    out = np.full((height, width), _BY_NAME['unlabeled'].train_id, dtype=np.uint8)
    # One fillPoly per object, in file order: later objects must overwrite earlier ones.
    for index, obj in enumerate(objects):
        if obj.get('deleted'):
            continue
        label = _label_for(str(obj.get('label')), f'{where}: objects[{index}]')
        if label.id < 0:
            continue
        polygon = np.asarray(obj.get('polygon', []), dtype=np.float64)
        if polygon.ndim != 2 or polygon.shape[1] != 2 or len(polygon) < 1:
            raise DataError(f'{where}: objects[{index}] ({label.name}) polygon must be a list of '
                            f'[x, y] points, got shape {polygon.shape}')
        cv2.fillPoly(out, [np.round(polygon).astype(np.int32)], int(label.train_id))
    return out


def json_to_train_ids(json_path: str | os.PathLike) -> np.ndarray:
    """Read a ``*_gtFine_polygons.json`` and rasterise it (:func:`polygons_to_train_ids`)."""
    try:
        with open(json_path, encoding='utf-8') as f:
            annotation = json.load(f)
    except json.JSONDecodeError as exc:
        raise DataError(f'{json_path}: line {exc.lineno}: not valid JSON ({exc.msg})') from None
    return polygons_to_train_ids(annotation, str(json_path))


def _output_path(json_path: Path) -> Path:
    return json_path.with_name(json_path.name[:-len(POLYGON_SUFFIX)] + TRAIN_IDS_SUFFIX)


def _convert_one(json_path: Path) -> Path:
    out = _output_path(json_path)
    ok, encoded = cv2.imencode('.png', json_to_train_ids(json_path))
    if not ok:
        raise DataError(f'{out}: PNG encoding failed')
    atomic_write_bytes(out, encoded.tobytes(), durable=False)
    return out


def create_cityscapes_trainids(root: str | os.PathLike, workers: int = 4,
                               force: bool = False) -> list[Path]:
    """Write ``*_gtFine_labelTrainIds.png`` beside every ``gtFine/*/*/*_gtFine_polygons.json``.

    Args:
        root: the Cityscapes root holding ``gtFine/{train,val,test}/<city>/``.
        workers: worker processes (1 = in this process).
        force: replace existing trainId PNGs; without it any existing one stops the run before
            any work.

    Returns the written paths, in sorted order. Each PNG is written to a temporary name and
    renamed, so an interrupted run leaves no truncated file.
    """
    root = Path(root)
    gt_root = root / 'gtFine'
    if not gt_root.is_dir():
        raise DataError(f'{root}: no gtFine/ folder; expected gtFine/{{train,val,test}}/<city>/'
                        f'*{POLYGON_SUFFIX} (see data/README.md)')
    jobs = sorted(gt_root.glob(f'*/*/*{POLYGON_SUFFIX}'))
    if not jobs:
        raise DataError(f'{gt_root}: no *{POLYGON_SUFFIX} files below gtFine/<split>/<city>/')
    existing = [str(_output_path(j)) for j in jobs if _output_path(j).exists()]
    if existing and not force:
        raise DataError(f'{len(existing)} trainId maps already exist (e.g. {existing[0]}); pass '
                        '--force to overwrite them')
    print_log(f'Cityscapes: rasterising {len(jobs)} polygon files from {gt_root} with {workers} '
              'workers', logger='current')
    start = time.perf_counter()
    if workers > 1 and len(jobs) > 1:
        written = track_parallel_progress(_convert_one, jobs, nproc=workers,
                                          chunksize=max(1, len(jobs) // (workers * 8)))
    else:
        written = track_progress(_convert_one, jobs)
    seconds = time.perf_counter() - start
    print_log(f'Cityscapes: {len(jobs)} trainId maps written in {seconds:.1f} s',
              logger='current')
    return list(written)
