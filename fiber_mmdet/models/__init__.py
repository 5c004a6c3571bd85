from .layers import SpatialDropBlock  # noqa: F401  (registers the FPN plugin)
from .backbones import *  # noqa: F401,F403
from .task_modules import *  # noqa: F401,F403
from .dense_heads import *  # noqa: F401,F403
from .detectors import *  # noqa: F401,F403
from .language_models import *  # noqa: F401,F403
from .necks import *  # noqa: F401,F403
