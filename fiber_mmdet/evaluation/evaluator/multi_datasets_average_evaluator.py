"""Per-dataset metrics over a concatenated test set plus their average (ODinW-13 / ODinW-35)."""
import warnings
from collections import OrderedDict
from typing import Dict, List, Sequence, Union

import numpy as np
from mmengine.evaluator import BaseMetric

from mmdet.evaluation.evaluator import MultiDatasetsEvaluator
from mmdet.registry import EVALUATOR
from mmdet.utils import ConfigType


@EVALUATOR.register_module()
class MultiDatasetsAverageEvaluator(MultiDatasetsEvaluator):
    """Evaluate each dataset of an mmdet ``ConcatDataset`` with its own metric and report the average.

    ODinW is reported as the mean COCO AP over its datasets (13 for ODinW-13). mmdet's
    :class:`~mmdet.evaluation.evaluator.MultiDatasetsEvaluator` (subclassed here) evaluates each slice of the
    concatenated set with its metric and prefixes the keys (``'<dataset prefix>/<metric prefix>/<key>'``, e.g.
    ``'Aquarium/coco/bbox_mAP'``) but gives no average, and it is registered in mmengine's root registry; this
    one is registered in mmdet's ``EVALUATOR`` and adds, for each key in ``average_keys``,
    ``'<average_prefix>/<key>'`` = the unweighted mean of that key over the datasets (e.g. ``'odinw/bbox_mAP'``).

    The validation dataset must be **mmdet's** ``ConcatDataset`` (it writes ``cumulative_sizes`` into the
    metainfo). Use full-precision metrics (e.g. ``CocoPlusOneMetric``) so the average is not an average of
    3-decimal roundings.

    Args:
        metrics (dict | BaseMetric | Sequence): One metric per dataset, in dataset order.
        dataset_prefixes (Sequence[str]): One name per dataset, in dataset order.
        average_keys (Sequence[str]): Metric keys (without any prefix) to average. Defaults to ``('bbox_mAP', )``.
        average_prefix (str): Prefix of the averaged keys; must differ from every dataset prefix. Defaults to
            ``'average'``.
    """

    def __init__(self,
                 metrics: Union[ConfigType, BaseMetric, Sequence],
                 dataset_prefixes: Sequence[str],
                 average_keys: Sequence[str] = ('bbox_mAP', ),
                 average_prefix: str = 'average') -> None:
        super().__init__(metrics, dataset_prefixes)
        if len(self.metrics) != len(dataset_prefixes):
            raise ValueError(f'{len(self.metrics)} metrics for {len(dataset_prefixes)} dataset prefixes.')
        if average_prefix in dataset_prefixes:
            raise ValueError(f'average_prefix {average_prefix!r} is also a dataset prefix.')
        self.average_keys = list(average_keys)
        self.average_prefix = average_prefix

    def evaluate(self, size: int) -> dict:
        """Evaluate every dataset slice, then add the averages.

        Args:
            size (int): Length of the concatenated dataset.

        Returns:
            dict: The per-dataset metrics (``'<dataset>/<metric prefix>/<key>'``) followed by
            ``'<average_prefix>/<key>'`` for each averaged key. A dataset missing an averaged key is reported
            with a warning and left out of that average.
        """
        metrics = super().evaluate(size)
        averages = self.average(metrics)
        return OrderedDict(list(metrics.items()) + list(averages.items()))

    def average(self, metrics: Dict[str, float]) -> Dict[str, float]:
        """Average ``average_keys`` over the datasets of ``metrics``.

        Args:
            metrics (dict): Per-dataset results as returned by :class:`MultiDatasetsEvaluator`.

        Returns:
            dict: ``{'<average_prefix>/<key>': mean}``; a key no dataset reported is omitted (with a warning).
        """
        averages = OrderedDict()
        for key in self.average_keys:
            values: List[float] = []
            missing = []
            for dataset_prefix in self.dataset_prefixes:
                found = [
                    value for name, value in metrics.items()
                    if name.startswith(dataset_prefix + '/') and name.rsplit('/', 1)[-1] == key
                ]
                if len(found) > 1:
                    raise ValueError(f'dataset {dataset_prefix!r} reports {key!r} more than once.')
                if found:
                    values.append(float(found[0]))
                else:
                    missing.append(dataset_prefix)
            if missing:
                warnings.warn(f'{key!r} is missing for {len(missing)} of {len(self.dataset_prefixes)} datasets '
                              f'({missing}); the average is over the other {len(values)}.')
            if values:
                averages[f'{self.average_prefix}/{key}'] = float(np.mean(values))
        return averages
