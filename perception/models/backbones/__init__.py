"""2D backbones shared by all image tasks (ResNet, ConvNeXt, Swin, EfficientViT, MobileNetV2).

Each returns a tuple of NCHW feature maps selected by ``out_indices`` and exposes their channel
counts as ``out_channels``. ImageNet weights in the official / torchvision / timm layouts load
through ``perception.engine.checkpoint_mapping.load_pretrained(model, path, layout=...)``.
"""
from .convnext import ConvNeXt, convnext_base, convnext_small, convnext_tiny
from .efficientvit import (
    EfficientViT,
    efficientvit_m0,
    efficientvit_m1,
    efficientvit_m2,
    efficientvit_m3,
    efficientvit_m4,
    efficientvit_m5,
)
from .mobilenet_v2 import MobileNetV2, mobilenet_v2_100
from .resnet import ResNet, resnet18, resnet34, resnet50, resnet101
from .swin import SwinTransformer, swin_base, swin_small, swin_tiny

__all__ = ['ConvNeXt', 'EfficientViT', 'MobileNetV2', 'ResNet', 'SwinTransformer', 'convnext_base',
           'convnext_small', 'convnext_tiny', 'efficientvit_m0', 'efficientvit_m1',
           'efficientvit_m2', 'efficientvit_m3', 'efficientvit_m4', 'efficientvit_m5',
           'mobilenet_v2_100', 'resnet101', 'resnet18', 'resnet34', 'resnet50', 'swin_base',
           'swin_small', 'swin_tiny']
