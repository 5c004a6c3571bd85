from .tuning_modes import (TUNING_MODES, TuningMode, add_prompt_offset, freeze_all_but, get_tuning_mode,
                           new_prompt_offset)

__all__ = ['TUNING_MODES', 'TuningMode', 'add_prompt_offset', 'freeze_all_but', 'get_tuning_mode', 'new_prompt_offset']
