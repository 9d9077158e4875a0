# SegFormer's all-MLP decoder (Xie et al. 2021) on a ResNet-50 (strides 4-32), for 19 classes.
# The published recipes start from ImageNet weights: load them into the backbone with
# perception.engine.checkpoint_mapping.load_pretrained(model.backbone, 'resnet50-11ad3fa6.pth',
# layout='torchvision') (Swin: layout='official', EfficientViT: layout='official').
data_preprocessor = dict(
    type='SegDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    size_divisor=32,
    pad_val=0,
    seg_pad_val=255,
)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(type='ResNet', depth=50, out_indices=(0, 1, 2, 3), frozen_stages=-1,
                  norm_eval=False),
    decode_head=dict(
        type='SegFormerHead',
        in_channels=[256, 512, 1024, 2048],
        in_index=(0, 1, 2, 3),
        channels=768,
        dropout_ratio=0.1,
        num_classes=19,
        align_corners=False,
        loss_decode=dict(type='SegCrossEntropyLoss', loss_weight=1.0),
    ),
    test_cfg=dict(mode='whole'),
)
