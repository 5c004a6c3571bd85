"""A concatenation of test sets that share one pipeline, stated once."""
from typing import Any, List, Optional, Sequence, Union

from mmengine.dataset import BaseDataset

from mmdet.datasets import ConcatDataset
from mmdet.registry import DATASETS


class PerDatasetMetainfo(list):
    """The metainfo of datasets that differ (mmdet's ``ConcatDataset`` then lists one dict per dataset), which
    also answers ``meta.get(key)`` / ``meta[key]`` from the first dataset.

    mmdet's multi-dataset evaluators read the list; ``init_detector`` and ``DetInferencer`` call
    ``metainfo.get('palette')`` on it, which a plain list does not have.
    """

    def get(self, key: str, default: Any = None) -> Any:
        return self[0].get(key, default) if self else default

    def __getitem__(self, item):
        return self[0][item] if isinstance(item, str) else super().__getitem__(item)

    def __contains__(self, item) -> bool:
        return item in self[0] if isinstance(item, str) and self else super().__contains__(item)


@DATASETS.register_module()
class SharedPipelineConcatDataset(ConcatDataset):
    """mmdet's ``ConcatDataset`` with a ``pipeline`` for every dataset that does not bring its own.

    Multi-dataset benchmarks (ODinW-13/35, the RefCOCO splits, the toy test set) run every dataset through the same
    test pipeline. Stating it once here means an override of ``test_dataloader.dataset.pipeline`` reaches all of
    them, and it is what MMDetection's ``DetInferencer`` and ``inference_detector`` read
    (``cfg.test_dataloader.dataset.pipeline``) to run single images, so they work with a benchmark config, which
    a plain ``ConcatDataset`` breaks. Its ``metainfo``, when the datasets' differ, is a
    :class:`PerDatasetMetainfo`, for the same reason.

    Args:
        datasets (list[dict | BaseDataset]): the datasets, as for ``ConcatDataset``.
        pipeline (list[dict], optional): the shared pipeline, given to each dataset config without one.
        lazy_init (bool): as for ``ConcatDataset``. Defaults to False.
        ignore_keys (str | list[str], optional): as for ``ConcatDataset``.
    """

    def __init__(self,
                 datasets: Sequence[Union[BaseDataset, dict]],
                 pipeline: Optional[List[dict]] = None,
                 lazy_init: bool = False,
                 ignore_keys: Union[str, List[str], None] = None) -> None:
        if pipeline is not None:
            datasets = [
                dict(d, pipeline=pipeline) if isinstance(d, dict) and d.get('pipeline', None) is None else d
                for d in datasets
            ]
        self.pipeline = pipeline
        super().__init__(datasets, lazy_init=lazy_init, ignore_keys=ignore_keys)

    @property
    def metainfo(self):
        meta = super().metainfo
        return PerDatasetMetainfo(meta) if isinstance(meta, list) else meta
