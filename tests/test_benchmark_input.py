"""Every published image config resolves a benchmark input shape without building the model."""
import glob
import importlib.util
from pathlib import Path

import pytest

from perception.engine.config import load_config

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location('benchmark_tool', ROOT / 'tools' / 'benchmark.py')
benchmark = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(benchmark)

CONFIGS = sorted(p for p in glob.glob(str(ROOT / 'configs' / '**' / '*.py'), recursive=True)
                 if '_base_' not in p)


def _is_lidar(cfg) -> bool:
    return any(t.get('type') == 'LoadPointsFromFile' for t in cfg.get('test_pipeline') or [])


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: Path(p).name)
def test_config_resolves_input_shape(path):
    cfg = load_config(path)
    if _is_lidar(cfg):
        pytest.skip('LiDAR configs are benchmarked on a point cloud')
    shape = benchmark.config_input_shape(cfg, path)
    stereo = cfg.model.type in ('RAFTStereo', 'IGEVStereo', 'RAFT', 'SEARAFT')  # image pairs
    assert shape[:2] == [2, 3] if stereo else shape[0] == 3
    assert len(shape) == (4 if stereo else 3) and all(v > 0 for v in shape)


def test_mono3d_shape_from_test_pipeline():
    cfg = load_config(str(ROOT / 'configs/monodetr/monodetr_r50_kitti-mono3d.py'))
    assert benchmark.config_input_shape(cfg) == [3, 384, 1280]
