# The attribute-first toy recipe on fiber_toy.py's 1200 iterations (steps at 67 % / 89 %): AP50 0.58, attribute
# grounding 0.84 (one thread, seed 0). The findings of docs/toy.md compare recipes at this length.
_base_ = './fiber_toy_attribute_first.py'

max_iters = 1200
milestones = [int(0.67 * max_iters), int(0.89 * max_iters)]

train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=milestones, gamma=0.1),
]
custom_hooks = [dict(type='WeightDecayScheduleHook', milestones=milestones)]
default_hooks = dict(checkpoint=dict(interval=max_iters))
