# Synthetic textured shapes with exact masks in the Cityscapes layout
# (perception/datasets/synthetic/segmentation.py), 5 classes, 64x128 images. Write them with
#   python -c "from perception.datasets.synthetic.segmentation import write_synthetic_cityscapes;
#              write_synthetic_cityscapes('data/synthetic_seg', 300, 40, 64, 128, num_classes=5)"
# Training: random resize 0.75-1.5, 64x128 crops, flips. No photometric distortion: colour is
# half of what tells the classes apart, and the demo trains for a few hundred steps only.
dataset_type = 'CityscapesDataset'
data_root = 'data/synthetic_seg/'
metainfo = dict(
    classes=('background', 'red stripes', 'blue checker', 'red speckle', 'blue flat'),
    palette=[[120, 125, 95], [185, 75, 60], [60, 95, 185], [185, 75, 60], [60, 95, 185]])
crop_size = (64, 128)
train_pipeline = [
    dict(type='LoadSegImage'),
    dict(type='LoadSegAnnotations'),
    dict(type='RandomResize', scale=(128, 64), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadSegImage'),
    dict(type='LoadSegAnnotations'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='train', metainfo=metainfo,
                 pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='val', metainfo=metainfo,
                 pipeline=test_pipeline),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='SegMetric')
test_evaluator = val_evaluator
