"""2D backbones shared by all image tasks (ResNet, ConvNeXt, Swin, EfficientViT)."""
