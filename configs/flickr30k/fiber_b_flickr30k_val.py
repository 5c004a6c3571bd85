# FIBER-B on Flickr30k Entities val, MDETR's separate-GT annotations: one prompt per sentence, each
# phrase a label, default post-processing (score 0.05, class-wise NMS 0.6, 100 boxes per image), Recall@1/5/10
# and the upper bound with the ANY-box protocol.
_base_ = '../_base_/fiber_b_zero_shot.py'

data_root = 'data/flickr30k_entities/'
ann_file = 'final_flickr_separateGT_val.json'
dataset_help = 'docs/datasets.md, section "Evaluation data", Flickr30k Entities'

test_dataloader = dict(
    dataset=dict(
        type='Flickr30kDataset',
        data_root=data_root,
        ann_file=ann_file,
        data_prefix=dict(img='flickr30k_images/')))
# recall per phrase type too: add ann_file=data_root + ann_file, sentences_dir=data_root + 'Sentences/'
test_evaluator = dict(type='Flickr30kRecallMetric', topk=(1, 5, 10, -1))
