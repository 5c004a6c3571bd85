# FIBER-B v3 fine-tuned on RefCOCO+ (see _base_/refexp_finetune.py): validated on refcoco+_val every epoch, tested
# on every split of the benchmark.
#   bash tools/dist_train.sh configs/refcoco/fiber_b_v3_refcoco_plus_finetune.py 8
#   bash tools/dist_test.sh configs/refcoco/fiber_b_v3_refcoco_plus_finetune.py WORK_DIR/best_*.pth 8
_base_ = './_base_/refexp_finetune.py'

train_dataloader = dict(dataset=_base_.refexp_train_sets['refcoco+'])
val_dataloader = dict(dataset=_base_.refexp['datasets']['refcoco+_val'])
val_evaluator = _base_.refexp['metrics']['refcoco+_val']
test_dataloader = dict(dataset=dict(_delete_=True, **_base_.refexp['test_sets']['refcoco+']))
test_evaluator = _base_.refexp['evaluators']['refcoco+']
refexp = None  # the tables are picked from; keep them out of the final config
refexp_train_sets = None
