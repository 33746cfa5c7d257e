"""The registry of named backbones: :func:`load_model` and :func:`available_models`.

Each entry gives, per image, an embedding (the "transfer layer") and the 1000
ImageNet class probabilities (the "output layer"), with its own preprocessing.
"""

from __future__ import annotations

import functools

from .base import Backbone, WeightsUnavailableError, cached_weights_path, file_sha256
from .efficientnet_lite import LITE_SPECS, build_efficientnet_lite, load_lite_weights, weights_file
from .keras_applications import KERAS_APP_SPECS, load_keras_application

__all__ = ["Backbone", "DEFAULT_MODEL", "WeightsUnavailableError", "available_models", "load_model"]

DEFAULT_MODEL = "efficientnet-lite0"


def available_models() -> list[str]:
    """Names accepted by :func:`load_model`; the first is the default.

    >>> available_models()[0]
    'efficientnet-lite0'
    """
    return list(LITE_SPECS) + list(KERAS_APP_SPECS)


def _load_lite(name: str) -> Backbone:
    spec = LITE_SPECS[name]
    source = weights_file(spec)
    checksum = file_sha256(source)
    network = build_efficientnet_lite(spec)
    cache = cached_weights_path(name, checksum)
    if cache.exists():
        network.load_weights(cache)
    else:
        from .torch_state_dict import load_state_dict

        load_lite_weights(network, load_state_dict(source))
        partial = cache.with_name(cache.name + ".partial.weights.h5")
        network.save_weights(partial)
        partial.replace(cache)  # atomic: a killed conversion leaves no half-written cache
    return Backbone(name, spec.image_size, 1280, checksum, network)


@functools.lru_cache(maxsize=4)
def load_model(name: str = DEFAULT_MODEL) -> Backbone:
    """Load a pretrained backbone by name (cached per process).

    Parameters
    ----------
    name : str
        One of :func:`available_models`.

    Raises
    ------
    ValueError
        For an unknown name.
    WeightsUnavailableError
        For a ``keras.applications`` network whose weights are not on this machine.
    """
    if name in LITE_SPECS:
        return _load_lite(name)
    if name in KERAS_APP_SPECS:
        return load_keras_application(KERAS_APP_SPECS[name])
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(available_models())}")
