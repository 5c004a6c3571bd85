# FIBER-B on LVIS v1 val (19,809 images; GLIP/FIBER's lvis_od_val.json), Fixed AP as the minival config.
_base_ = './fiber_b_lvis_minival_fixed_ap.py'

data_root = 'data/coco/'
ann_file = 'annotations/lvis_od_val.json'
test_dataloader = dict(dataset=dict(ann_file=ann_file))
test_evaluator = dict(ann_file=data_root + ann_file)
