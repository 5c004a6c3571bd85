# FIBER-B fine-tuned on each ODinW-35 dataset, k-shot or full; see ./_base_/odinw_finetune.py.
#   python tools/odinw_finetune.py configs/odinw/fiber_b_odinw35_finetune.py CKPT --shots 1 3 5 10 0 \
#       --seeds 3 30 300 --gpus 8
_base_ = './_base_/odinw_finetune.py'

finetune_protocol = dict(datasets=_base_.finetune_tables['odinw35'])
odinw = None  # the tables are picked from; keep them out of the final config
finetune_tables = None
