"""The registry of named backbones: :func:`load_model` and :func:`available_models`.

Each entry gives, per image, an embedding (the "transfer layer") and the 1000
ImageNet class probabilities (the "output layer"), with its own preprocessing.
"""

from __future__ import annotations

import functools

from .base import Backbone, WeightsUnavailableError, cached_weights_path, file_sha256
from .efficientnet_lite import LITE_SPECS, build_efficientnet_lite, load_lite_weights, weights_file
from .keras_applications import KERAS_APP_SPECS, load_keras_application

__all__ = ["Backbone", "DEFAULT_MODEL", "DEFAULT_RUNTIME", "RUNTIMES", "WeightsUnavailableError", "available_models", "load_model"]

DEFAULT_MODEL = "efficientnet-lite0"
RUNTIMES = ("litert", "keras")
DEFAULT_RUNTIME = "litert"


def available_models() -> list[str]:
    """Names accepted by :func:`load_model`; the first is the default.

    >>> available_models()[0]
    'efficientnet-lite0'
    """
    return list(LITE_SPECS) + list(KERAS_APP_SPECS)


def _load_lite(name: str, checksum: str) -> Backbone:
    spec = LITE_SPECS[name]
    source = weights_file(spec)
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


@functools.lru_cache(maxsize=None)
def _lite_checksum(name: str) -> str:
    return file_sha256(weights_file(LITE_SPECS[name]))


def load_model(name: str = DEFAULT_MODEL, runtime: str = DEFAULT_RUNTIME) -> Backbone:
    """Load a pretrained backbone by name (cached per process).

    Parameters
    ----------
    name : str
        One of :func:`available_models`.
    runtime : {"litert", "keras"}
        What runs :meth:`Backbone.predict`. ``"litert"`` (default): the Keras
        network converted once to ``.tflite`` and run by the LiteRT
        interpreter (see :mod:`lab.models.litert`), for the EfficientNet-Lite
        models; the ``keras.applications`` networks always run on Keras.
        ``"keras"``: the Keras model itself, the reference.

    Raises
    ------
    ValueError
        For an unknown name or runtime.
    WeightsUnavailableError
        For a ``keras.applications`` network whose weights are not on this machine.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if name in LITE_SPECS or name in KERAS_APP_SPECS:
        return _load(name, runtime if name in LITE_SPECS else "keras")
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(available_models())}")


@functools.lru_cache(maxsize=8)
def _load(name: str, runtime: str) -> Backbone:
    if name in LITE_SPECS:
        checksum = _lite_checksum(name)
        if runtime == "litert":
            from .litert import load_litert

            return load_litert(name, checksum, lambda: _load_lite(name, checksum))
        return _load_lite(name, checksum)
    if name in KERAS_APP_SPECS:
        return load_keras_application(KERAS_APP_SPECS[name])
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(available_models())}")
