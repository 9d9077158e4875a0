# RAFT-small (990,162 parameters: bottleneck encoders, radius-3 correlation, 96-channel ConvGRU,
# bilinear 8x upsampling), the published raft-small.pth model: trained like raft_things.py
# (chairs -> things); `tools/convert_ckpt.py raft raft-small.pth OUT --config` this file.
_base_ = ['./raft_things.py']

model = dict(small=True)
# the chairs stage of RAFT-small is raft_chairs.py with model.small=True
load_from = None
