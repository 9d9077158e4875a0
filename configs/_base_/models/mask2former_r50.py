# Mask2Former (Cheng et al. 2022) on a ResNet-50: multi-scale deformable-attention pixel decoder
# (6 layers) and a 9-layer masked-attention transformer decoder with 100 queries, as the official
# semantic segmentation configs. No auxiliary head. The published recipes start from ImageNet
# weights: load them with perception.engine.checkpoint_mapping.load_pretrained(model.backbone,
# 'resnet50-11ad3fa6.pth', layout='torchvision').
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
        type='Mask2FormerHead',
        in_channels=[256, 512, 1024, 2048],
        num_classes=19,
        num_queries=100,
        embed_dims=256,
        pixel_decoder_layers=6,
        decoder_layers=9,
        ignore_index=255,
    ),
    test_cfg=dict(mode='whole'),
)
