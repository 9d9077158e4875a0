"""Data transforms (loading, augmentation, packing), registered in ``TRANSFORMS``."""
from .augment3d import (
    GlobalRotScaleTrans,
    ObjectNameFilter,
    ObjectRangeFilter,
    ObjectSample,
    PointShuffle,
    PointsRangeFilter,
    RandomFlip3D,
)
from .formatting import Pack3DDetInputs
from .imresize import imresize
from .loading import LoadAnnotations3D, LoadImage, LoadPointsFromFile, LoadPointsFromMultiSweeps

__all__ = ['GlobalRotScaleTrans', 'LoadAnnotations3D', 'LoadImage', 'LoadPointsFromFile',
           'LoadPointsFromMultiSweeps', 'ObjectNameFilter', 'ObjectRangeFilter', 'ObjectSample',
           'Pack3DDetInputs', 'PointShuffle', 'PointsRangeFilter', 'RandomFlip3D', 'imresize']
