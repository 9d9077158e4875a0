# SEA-RAFT (L) on KITTI: the M KITTI fine-tuning evaluated with 12 iterations
# (official config/eval/kitti-L.json).
_base_ = ['./sea-raft-m_kitti-432x960.py']

model = dict(test_iters=12)
