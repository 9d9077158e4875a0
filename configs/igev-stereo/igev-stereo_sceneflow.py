# IGEV-Stereo at its published size (12.6 M parameters) trained on SceneFlow as the paper:
# train_stereo.py defaults --batch_size 8 --image_size 320 736 --train_iters 22 --valid_iters 32
# --spatial_scale -0.2 0.4 --saturation_range 0 1.4 --max_disp 192 --num_steps 200000 (AdamW
# lr 2e-4, wd 1e-5, one-cycle linear schedule with 1% warm-up, gradient clipping at 1.0, 2D
# BatchNorms frozen). The official feature network starts from ImageNet MobileNetV2 weights
# (timm mobilenetv2_100); load them into model.feature.backbone with
# perception.engine.checkpoint_mapping.load_pretrained(..., layout='timm').
_base_ = ['../_base_/datasets/sceneflow_stereo.py', '../_base_/default_runtime.py']

crop_size = (320, 736)
# IGEV's FlowAugmentor: colour jitter (20% asymmetric, saturation 0-1.4), eraser (p 0.5, 1-2
# rectangles of 50-100 px), log2 scale in [-0.2, 0.4] with stretch (p 0.8, +-0.2), then a crop
# whose right window moves up to 2 rows (yjitter, on unless --noyjitter); no flips.
train_pipeline = [
    dict(type='LoadStereoPair'),
    dict(type='LoadDisparity', required=True),
    dict(type='StereoColorJitter', saturation=(0.0, 1.4), asymmetric_prob=0.2),
    dict(type='StereoEraser', prob=0.5, max_rects=2, size_range=(50, 100)),
    dict(type='StereoRandomScale', min_scale=-0.2, max_scale=0.4, stretch_prob=0.8,
         max_stretch=0.2, crop_size=crop_size),
    dict(type='StereoRandomCrop', crop_size=crop_size, y_jitter=2),
    dict(type='PackStereoInputs'),
]
train_dataloader = dict(batch_size=8, dataset=dict(pipeline=train_pipeline))

model = dict(
    type='IGEVStereo',
    hidden_dims=(128, 128, 128),
    n_gru_layers=3,
    max_disp=192,
    corr_levels=2,
    corr_radius=4,
    train_iters=22,
    test_iters=32,
    loss_gamma=0.9,
    init_loss_weight=1.0,
    freeze_bn=True,
    data_preprocessor=dict(type='StereoDataPreprocessor'),
)

max_iters = 200000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=10000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-5, eps=1e-8),
                     clip_grad=dict(max_norm=1.0))
# The official schedule runs num_steps + 100 steps of one cycle (ends just above zero).
param_scheduler = [
    dict(type='OneCycleLR', eta_max=2e-4, total_steps=max_iters + 100, pct_start=0.01,
         by_epoch=False, anneal_strategy='linear'),
]
default_hooks = dict(checkpoint=dict(interval=10000, max_keep_ckpts=5))

# tools/benchmark.py input: one KITTI-sized pair (2 views x 3 x 375 x 1242).
benchmark = dict(input_shape=[2, 3, 375, 1242])
