# MonoDETR with MonoDGP's geometry-error depth (Pu et al., CVPR 2025): depth = geometric depth
# (3D height / 2D height x focal) + a learned error with Laplacian uncertainty, in place of the
# average of the regressed, geometric and depth-map depths. MonoDGP's other parts (decoupled 2D
# queries, region segmentation head) are not part of this option. Training schedule as MonoDETR.
_base_ = ['./monodetr_r50_kitti-mono3d.py']

model = dict(depth_mode='monodgp')
