# FIBER-B on Flickr30k Entities test; protocol as the val config.
_base_ = './fiber_b_flickr30k_val.py'

test_dataloader = dict(dataset=dict(ann_file='final_flickr_separateGT_test.json'))
