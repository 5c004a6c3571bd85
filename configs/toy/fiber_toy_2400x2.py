# The toy recipe with the same number of images seen in twice as many, smaller steps: batch 2 x 2400 iterations.
# Not one of the measured recipes of docs/toy.md, section "What each recipe reaches"; tools/test.py gives its
# figures.
_base_ = './fiber_toy.py'

batch_size = 2
max_iters = 2400
milestones = [int(0.67 * max_iters), int(0.89 * max_iters)]

train_dataloader = dict(batch_size=batch_size)
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=milestones, gamma=0.1),
]
custom_hooks = [dict(type='WeightDecayScheduleHook', milestones=milestones)]
default_hooks = dict(checkpoint=dict(interval=max_iters))
