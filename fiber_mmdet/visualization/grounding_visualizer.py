"""mmdet's ``DetLocalVisualizer`` for grounding: boxes named by the phrase they ground, colours by phrase."""
from typing import List, Optional, Sequence

import numpy as np
from mmengine.structures import InstanceData

from mmdet.registry import VISUALIZERS
from mmdet.structures import DetDataSample
from mmdet.visualization import DetLocalVisualizer
from mmdet.visualization.palette import get_palette


def gt_label_names(sample: DetDataSample, classes: Optional[Sequence[str]]) -> Optional[List[str]]:
    """What each ground-truth box of ``sample`` refers to, for every benchmark format.

    * phrase grounding (Flickr30k-style: ``phrases`` and a ``phrase_ids`` entry per box): the box's phrase;
    * referring expression (``tokens_positive == -1``): the expression;
    * detection (``text`` = class names, else the dataset's ``classes``): the class name.

    Returns None when the sample says nothing about its labels (the visualizer then writes ``class N``).
    """
    labels = sample.gt_instances.labels.tolist()
    phrases, phrase_ids = sample.get('phrases', None), sample.get('phrase_ids', None)
    if phrases is not None and phrase_ids is not None and len(phrase_ids) == len(labels):
        return [phrases[i] for i in phrase_ids]
    tokens_positive, text = sample.get('tokens_positive', None), sample.get('text', None)
    if isinstance(tokens_positive, int) and tokens_positive == -1 and isinstance(text, str):
        return [text] * len(labels)
    names = text if isinstance(text, (list, tuple)) else classes
    if names is not None and all(0 <= label < len(names) for label in labels):
        return [names[label] for label in labels]
    return None


@VISUALIZERS.register_module()
class GroundingLocalVisualizer(DetLocalVisualizer):
    """Draws ground truth (left) and predictions (right) with their phrase / class names.

    FIBER's labels index the prompt's entities, which differ per sample, so mmdet's one-palette-per-dataset
    colouring would give two different phrases the same colour across images and fail outright when a label
    passes the palette's length (LVIS prompts, long phrase lists). Here every distinct name of a sample gets its
    own colour from the dataset palette (cycled), the same on the ground-truth and the prediction side.
    Predictions must carry ``label_names`` (FIBER's ``predict`` sets them).
    """

    def _relabelled(self, instances: InstanceData, names: Optional[List[str]], order: dict) -> InstanceData:
        instances = instances.clone()
        if names is None:
            names = [f'class {int(label)}' for label in instances.labels]
        for name in names:
            order.setdefault(name, len(order))
        instances.label_names = list(names)
        instances.labels = instances.labels.new_tensor([order[n] for n in names]).long()
        return instances

    def add_datasample(self, name: str, image: np.ndarray, data_sample: Optional[DetDataSample] = None,
                       **kwargs) -> None:
        """Same arguments as :meth:`DetLocalVisualizer.add_datasample`."""
        if data_sample is None:
            return super().add_datasample(name, image, data_sample, **kwargs)
        sample = data_sample.cpu().clone()
        meta = self.dataset_meta
        # a concatenated test set gives one metainfo per dataset; the sample's own text names its labels
        first = meta[0] if isinstance(meta, list) and meta and isinstance(meta[0], dict) else dict(meta or {})
        order: dict = {}
        if 'gt_instances' in sample and len(sample.gt_instances) > 0:
            names = gt_label_names(sample, first.get('classes', None))
            sample.gt_instances = self._relabelled(sample.gt_instances, names, order)
        if 'pred_instances' in sample and len(sample.pred_instances) > 0:
            pred = sample.pred_instances
            sample.pred_instances = self._relabelled(pred, pred.get('label_names', None), order)
        base = first.get('palette', None)
        base = base if isinstance(base, list) and base else get_palette('random', max(len(order), 1))
        self.dataset_meta = dict(first, palette=[tuple(base[i % len(base)]) for i in range(max(len(order), 1))])
        try:
            super().add_datasample(name, image, sample, **kwargs)
        finally:
            self.dataset_meta = meta
