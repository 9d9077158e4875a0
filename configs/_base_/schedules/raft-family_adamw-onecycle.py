# The training recipe that RAFT (princeton-vl/RAFT train.py) and SEA-RAFT (its train.py) share:
# AdamW (eps 1e-8), gradients clipped at norm 1.0, a one-cycle learning rate with linear annealing
# (5 % warm-up) over `max_iters + 100` steps, iteration-based loops, flow metrics (EPE, 1/3/5 px,
# Fl-all). A stage sets `max_iters`, `lr`, the weight decay and restates `param_scheduler` with
# its own numbers (a list is replaced, not merged, when a config inherits it).
max_iters = 100000
lr = 4e-4
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=5000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=lr, weight_decay=1e-4, eps=1e-8),
                     clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='OneCycleLR', eta_max=lr, total_steps=max_iters + 100, pct_start=0.05,
         by_epoch=False, anneal_strategy='linear'),
]
val_evaluator = dict(type='FlowMetric')
test_evaluator = val_evaluator
