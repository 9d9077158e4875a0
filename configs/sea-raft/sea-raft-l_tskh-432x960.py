# SEA-RAFT (L): the M network trained as sea-raft-m_tskh-432x960.py and evaluated with 12
# iterations (official config/eval/sintel-L.json); 19.7 M parameters.
_base_ = ['./sea-raft-m_tskh-432x960.py']

model = dict(test_iters=12)
