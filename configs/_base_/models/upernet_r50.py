# UPerNet (PPM + FPN, Xiao et al. 2018) on a ResNet-50 with an FCN auxiliary head on stride 16,
# as mmsegmentation's upernet_r50.py (which uses the deep-stem ResNetV1c and SyncBN; ours is the
# torchvision ResNet-50 with BN). The published recipes start from ImageNet weights: load them with
# perception.engine.checkpoint_mapping.load_pretrained(model.backbone, 'resnet50-11ad3fa6.pth',
# layout='torchvision').
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
        type='UPerHead',
        in_channels=[256, 512, 1024, 2048],
        in_index=(0, 1, 2, 3),
        pool_scales=(1, 2, 3, 6),
        channels=512,
        dropout_ratio=0.1,
        num_classes=19,
        align_corners=False,
        loss_decode=dict(type='SegCrossEntropyLoss', loss_weight=1.0),
    ),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=1024,
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=19,
        align_corners=False,
        loss_decode=dict(type='SegCrossEntropyLoss', loss_weight=0.4),
    ),
    test_cfg=dict(mode='whole'),
)
