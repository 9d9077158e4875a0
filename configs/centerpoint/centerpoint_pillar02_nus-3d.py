# CenterPoint-pillar on nuScenes as mmdetection3d's
# centerpoint_pillar02_second_secfpn_head-circlenms_8xb4-cyclic-20e_nus-3d (dynamic VFE in place of
# PillarFeatureNet, so its official weights convert with `tools/convert_ckpt.py centerpoint`):
# 0.2 m pillars, 10 sweeps of (x, y, z, intensity, time lag), 10 classes in CenterPoint's 6 tasks
# with velocity and circle NMS.
_base_ = [
    '../_base_/models/centerpoint_nus.py',
    '../_base_/datasets/nus-3d.py',
    '../_base_/schedules/cyclic-adamw_80e.py',
    '../_base_/default_runtime.py',
]

benchmark = dict(input_shape=[300000, 5])
