"""Semantic segmentation: encoder-decoder segmentor, decode heads and losses."""
from .heads import BaseDecodeHead, FCNHead, SegFormerHead, UPerHead
from .losses import SegCrossEntropyLoss, seg_cross_entropy
from .segmentor import EncoderDecoder, SegDataPreprocessor, slide_windows

__all__ = ['BaseDecodeHead', 'EncoderDecoder', 'FCNHead', 'SegCrossEntropyLoss',
           'SegDataPreprocessor', 'SegFormerHead', 'UPerHead', 'seg_cross_entropy',
           'slide_windows']
