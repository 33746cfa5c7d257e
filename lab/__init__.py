"""lab: a research workbench for searching collections of unlabeled images.

>>> from lab import Collection, available_models
"""

import os as _os

# TensorFlow's C++ start-up chatter is noise for a command-line user.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from .collection import Collection, CollectionError, IndexReport
from .models import available_models, load_model
from .search import SearchConfig
from .session import SearchSession

__all__ = ["Collection", "CollectionError", "IndexReport", "SearchConfig", "SearchSession", "available_models", "load_model"]
__version__ = "0.1.0"
