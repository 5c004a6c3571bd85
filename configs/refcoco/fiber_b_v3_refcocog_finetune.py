# FIBER-B v3 fine-tuned on RefCOCOg (see _base_/refexp_finetune.py): validated on refcocog_val every epoch, tested
# on every split of the benchmark.
#   bash tools/dist_train.sh configs/refcoco/fiber_b_v3_refcocog_finetune.py 8
#   bash tools/dist_test.sh configs/refcoco/fiber_b_v3_refcocog_finetune.py WORK_DIR/best_*.pth 8
_base_ = './_base_/refexp_finetune.py'

train_dataloader = dict(dataset=_base_.refexp_train_sets['refcocog'])
val_dataloader = dict(dataset=_base_.refexp['datasets']['refcocog_val'])
val_evaluator = _base_.refexp['metrics']['refcocog_val']
test_dataloader = dict(dataset=dict(_delete_=True, **_base_.refexp['test_sets']['refcocog']))
test_evaluator = _base_.refexp['evaluators']['refcocog']
refexp = None  # the tables are picked from; keep them out of the final config
refexp_train_sets = None
