"""mmengine's LoggerHook with the test-metrics JSON written by one process only."""
from typing import Dict, Optional

from mmengine.dist import is_main_process
from mmengine.hooks import LoggerHook

from mmdet.registry import HOOKS


@HOOKS.register_module()
class RankZeroLoggerHook(LoggerHook):
    """:class:`mmengine.hooks.LoggerHook` whose ``after_test_epoch`` runs on rank 0 only.

    In mmengine 0.10 every rank dumps the test metrics to the same ``<log_dir>/<timestamp>.json``; with
    ``dist_test.sh`` the concurrent writes of slightly different contents (each rank's own timings) can leave a
    file that is not valid JSON. The metrics are already gathered on every rank, so rank 0's copy is the result;
    the other ranks' log lines are not printed by mmengine's logger anyway.
    """

    def after_test_epoch(self, runner, metrics: Optional[Dict[str, float]] = None) -> None:
        if is_main_process():
            super().after_test_epoch(runner, metrics)
