# SEA-RAFT (S): the published small model (8.9 M parameters: ResNet-18 encoders, otherwise as M,
# 4 iterations), trained with the same stage as sea-raft-m_chairs-368x496.py (the official S and M
# configs of each stage differ only in the encoder).
_base_ = ['./sea-raft-m_chairs-368x496.py']

model = dict(depth=18)
