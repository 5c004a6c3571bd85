# FIBER-B v3 on RefCOCOg val / test in one run, P@1/5/10 per split (see _base_/refexp_splits.py).
_base_ = './_base_/refexp_splits.py'

test_dataloader = dict(dataset=dict(_delete_=True, **_base_.refexp['test_sets']['refcocog']))
test_evaluator = _base_.refexp['evaluators']['refcocog']
refexp = None  # the tables are picked from; keep them out of the final config
