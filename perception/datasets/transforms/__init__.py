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
from .depth import (
    LoadDepth,
    LoadPosedPair,
    PackPosedDepthInputs,
    PosedRandomCrop,
    PosedRandomResize,
    PosedResize,
)
from .flow import (
    FlowColorJitter,
    FlowEraser,
    FlowRandomCrop,
    FlowRandomFlip,
    FlowRandomScale,
    LoadFlow,
    LoadFlowPair,
    PackFlowInputs,
)
from .formatting import Pack3DDetInputs
from .imresize import imresize
from .loading import LoadAnnotations3D, LoadImage, LoadPointsFromFile, LoadPointsFromMultiSweeps
from .mono3d import Mono3DPhotoMetric, Mono3DRandomCropResize, Mono3DResize, Mono3DTargets
from .segmentation import (
    LoadSegAnnotations,
    LoadSegImage,
    PackSegInputs,
    PhotoMetricDistortion,
    RandomCrop,
    RandomFlip,
    RandomResize,
)
from .stereo import (
    LoadDisparity,
    LoadStereoPair,
    PackStereoInputs,
    StereoColorJitter,
    StereoEraser,
    StereoRandomCrop,
    StereoRandomFlip,
    StereoRandomScale,
)

__all__ = ['FlowColorJitter', 'FlowEraser', 'FlowRandomCrop', 'FlowRandomFlip', 'FlowRandomScale',
           'GlobalRotScaleTrans', 'LoadAnnotations3D', 'LoadDisparity', 'LoadFlow', 'LoadFlowPair',
           'LoadImage', 'LoadPointsFromFile', 'LoadPointsFromMultiSweeps', 'LoadSegAnnotations',
           'LoadSegImage', 'LoadStereoPair', 'Mono3DPhotoMetric', 'Mono3DRandomCropResize',
           'Mono3DResize', 'Mono3DTargets', 'ObjectNameFilter', 'ObjectRangeFilter', 'ObjectSample',
           'Pack3DDetInputs', 'PackFlowInputs', 'PackSegInputs', 'PackStereoInputs',
           'PhotoMetricDistortion', 'PointShuffle', 'PointsRangeFilter', 'RandomCrop', 'RandomFlip',
           'RandomFlip3D', 'RandomResize', 'StereoColorJitter', 'StereoEraser', 'StereoRandomCrop',
           'StereoRandomFlip', 'StereoRandomScale', 'imresize',
           'LoadDepth', 'LoadPosedPair', 'PackPosedDepthInputs', 'PosedRandomCrop',
           'PosedRandomResize', 'PosedResize']
