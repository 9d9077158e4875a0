"""Models: shared backbones, layers and ops, and one package per task.

Importing this package registers every model class in ``perception.registry.MODELS``.
"""
from . import (  # noqa: F401
    backbones,
    flow,
    layers,
    lidar3d,
    mono3d,
    ops,
    segmentation,
    stereo,
    super_resolution,
)
