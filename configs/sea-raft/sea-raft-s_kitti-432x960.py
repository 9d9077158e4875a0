# SEA-RAFT (S): the published small model (8.9 M parameters: ResNet-18 encoders, otherwise as M,
# 4 iterations), trained with the same stage as sea-raft-m_kitti-432x960.py (the official S and M
# configs of each stage differ only in the encoder).
_base_ = ['./sea-raft-m_kitti-432x960.py']

model = dict(depth=18)
load_from = 'work_dirs/sea-raft-s_tskh-432x960/iter_300000.pth'
