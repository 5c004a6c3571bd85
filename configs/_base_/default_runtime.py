default_scope = 'mmdet'
# registers every fiber_mmdet component in MMDetection's registries
custom_imports = dict(imports=['fiber_mmdet'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='RankZeroLoggerHook', interval=50),  # LoggerHook; the test JSON written by rank 0 only
    param_scheduler=dict(type='ParamSchedulerHook'),
    # CheckpointHook's arguments; written atomically, an old checkpoint removed only after the new one is saved
    checkpoint=dict(type='AtomicCheckpointHook', interval=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # tools/test.py --show-dir: ground truth | predictions, named by phrase, one picture per sample
    visualization=dict(type='PerSampleVisualizationHook'),
    # skipped non-finite steps logged, 10 in a row stop training, no checkpoint with NaN/inf weights
    non_finite=dict(type='NonFiniteGuardHook', max_consecutive_skips=10),
    # SIGTERM / SIGUSR1: finish the iteration, save a checkpoint, exit with status 75 (then --resume)
    preemption=dict(type='PreemptionHook'))

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # Seconds a rank waits in a collective before the job is killed (MMEngine's init_dist turns it into the
    # timedelta of torch.distributed.init_process_group; tools/train.py and tools/test.py on CPU honour it too).
    # Metrics are computed by rank 0 alone while the other ranks wait in a broadcast; NCCL's own default (10 min)
    # is shorter than some of those evaluations. One hour covers COCO, ODinW, Flickr30k and RefCOCO; the LVIS
    # configs raise it (configs/lvis/fiber_b_lvis_minival_fixed_ap.py). A real hang is reported after this long.
    dist_cfg=dict(backend='nccl', timeout=3600))

# Training losses, learning rate and validation metrics go to every backend: LocalVisBackend writes
# WORK_DIR/<timestamp>/vis_data/scalars.json; TensorBoard (`tensorboard --logdir WORK_DIR`) is added when installed.
vis_backends = [dict(type='LocalVisBackend')]
if __import__('importlib.util').util.find_spec('tensorboard') is not None:
    vis_backends.append(dict(type='TensorboardVisBackend'))
visualizer = dict(type='GroundingLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)

log_level = 'INFO'
load_from = None
resume = False
