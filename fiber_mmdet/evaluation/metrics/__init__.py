from .coco_plus_one_metric import CocoPlusOneMetric
from .flickr30k_metric import Flickr30kRecallMetric, parse_flickr30k_sentences
from .lvis_fixed_ap_metric import LVISFixedAPRank0Metric, numpy_float_alias_for_lvis
from .refexp_metric import GIoURefExpMetric, rank_by_score_then_box

__all__ = [
    'CocoPlusOneMetric', 'Flickr30kRecallMetric', 'GIoURefExpMetric', 'LVISFixedAPRank0Metric',
    'numpy_float_alias_for_lvis', 'parse_flickr30k_sentences', 'rank_by_score_then_box'
]
