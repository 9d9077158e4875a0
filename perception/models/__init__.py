"""Models: shared backbones, layers and ops, and one package per task.

Importing this package registers every model class in ``perception.registry.MODELS``.
"""
from . import backbones, layers, mono3d, ops, segmentation, stereo, super_resolution  # noqa: F401
