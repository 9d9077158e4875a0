"""Semantic segmentation: encoder-decoder segmentor, decode heads and losses."""
from .heads import BaseDecodeHead, FCNHead, SegFormerHead, UPerHead
from .losses import SegCrossEntropyLoss, seg_cross_entropy
from .mask2former import Mask2FormerHead, MaskedTransformerDecoder, MSDeformAttnPixelDecoder
from .segmentor import EncoderDecoder, SegDataPreprocessor, slide_windows

__all__ = ['BaseDecodeHead', 'EncoderDecoder', 'FCNHead', 'Mask2FormerHead',
           'MaskedTransformerDecoder', 'MSDeformAttnPixelDecoder', 'SegCrossEntropyLoss',
           'SegDataPreprocessor', 'SegFormerHead', 'UPerHead', 'seg_cross_entropy',
           'slide_windows']
