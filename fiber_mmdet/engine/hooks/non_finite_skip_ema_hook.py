"""MMEngine's EMA hook that leaves the average alone on a step the optimizer wrapper skipped."""
from typing import Dict, Optional, Union

from mmengine.hooks import EMAHook

from mmdet.registry import HOOKS
from ..optimizers.non_finite_skip_optim_wrapper import step_guards

DATA_BATCH = Optional[Union[dict, tuple, list]]


@HOOKS.register_module()
class NonFiniteSkipEMAHook(EMAHook):
    """``EMAHook`` (same arguments) that does not update the average, nor its step count, on an iteration
    whose update a :class:`NonFiniteSkipOptimWrapper` skipped: a skipped step is as if it had not happened."""

    def after_train_iter(self, runner, batch_idx: int, data_batch: DATA_BATCH = None,
                         outputs: Optional[Dict] = None) -> None:
        if any(g.last_skip is not None for g in step_guards(runner.optim_wrapper)):
            return
        super().after_train_iter(runner, batch_idx, data_batch, outputs)
