"""Backbones: the Keras EfficientNet-Lite port sees what ImageNet networks see."""

from pathlib import Path

import numpy as np
import pytest

from lab.models import WeightsUnavailableError, available_models, load_model
from lab.sample_images import reference_images

REFERENCE = Path(__file__).parent / "data" / "reference_logits.npz"

# ImageNet-1k indices
CATS = {281, 282, 283, 284, 285, 286, 287}  # tabby ... Egyptian cat (281-285), plus cougar (286) and lynx (287), the wild cats next to them
COFFEE = {967, 968, 504}  # espresso, cup, coffee mug
FLOWERS = {985, 986}  # daisy, yellow lady's slipper


@pytest.fixture(scope="module")
def images():
    return reference_images()


@pytest.fixture(scope="module")
def lite0():
    return load_model("efficientnet-lite0")


def _top5(backbone, image):
    _, probabilities = backbone.predict(backbone.preprocess(image)[None])
    return set(np.argsort(-probabilities[0])[:5].tolist()), probabilities[0]


def test_default_model_recognises_the_packaged_photos(lite0, images):
    cat, _ = _top5(lite0, images["cat__chelsea"])
    coffee, _ = _top5(lite0, images["coffee__coffee"])
    flower, _ = _top5(lite0, images["flower__flower"])
    assert cat & CATS, cat
    assert coffee & COFFEE, coffee
    assert flower & FLOWERS, flower


def test_outputs_have_documented_shapes_and_probabilities_sum_to_one(lite0, images):
    batch = np.stack([lite0.preprocess(image) for image in images.values()])
    embeddings, probabilities = lite0.predict(batch)
    assert embeddings.shape == (len(images), 1280) and embeddings.dtype == np.float32
    assert probabilities.shape == (len(images), 1000)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert (embeddings >= 0).all()  # ReLU6 features, average-pooled


@pytest.mark.parametrize("name", ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"])
def test_keras_port_matches_the_pytorch_reference_logits(name, images):
    reference = np.load(REFERENCE, allow_pickle=False)
    assert list(reference["image_names"]) == list(images)
    backbone = load_model(name)
    batch = np.stack([backbone.preprocess(image) for image in images.values()])
    np.testing.assert_allclose(backbone.logits(batch), reference[name], atol=1e-4, rtol=0)


def test_converted_weights_are_cached_and_reused(lite0, _isolated_lab_home):
    cached = list((_isolated_lab_home / "weights").glob("efficientnet-lite0-*.weights.h5"))
    assert len(cached) == 1
    assert lite0.weights_checksum.startswith(cached[0].name.split("-")[2][:16])


def test_predict_rejects_wrong_input_shape(lite0):
    with pytest.raises(ValueError, match="shape"):
        lite0.predict(np.zeros((1, 100, 100, 3), np.uint8))


def test_unknown_model_name_lists_the_choices():
    with pytest.raises(ValueError, match="efficientnet-lite0"):
        load_model("alexnet")


def test_keras_application_offline_names_the_missing_weights(tmp_path, monkeypatch):
    import keras.utils

    from lab.models.keras_applications import KERAS_APP_SPECS, load_keras_application

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(WeightsUnavailableError) as info:
        load_keras_application(KERAS_APP_SPECS["inception-v3"])
    message = str(info.value)
    assert "inception_v3_weights_tf_dim_ordering_tf_kernels.h5" in message
    assert str(tmp_path / "models") in message
    assert "efficientnet-lite0" in message


def test_keras_application_download_is_checked_against_kerass_hash(tmp_path, monkeypatch):
    import keras.utils

    from lab.models.keras_applications import KERAS_APP_SPECS, load_keras_application

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    asked = {}

    def offline(*args, **kwargs):
        asked.update(kwargs)
        raise OSError("network is unreachable")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(WeightsUnavailableError):
        load_keras_application(KERAS_APP_SPECS["inception-v3"])
    assert asked["file_hash"] == "9a0d58056eeedaa3f26cb7ebd46da564"


def test_inception_v3_wiring_gives_2048_d_transfer_layer_and_probabilities():
    from lab.models.base import Backbone
    from lab.models.keras_applications import KERAS_APP_SPECS, build_keras_application

    network = build_keras_application(KERAS_APP_SPECS["inception-v3"], weights=None)
    backbone = Backbone("inception-v3", 299, 2048, "untrained", network, outputs_probabilities=True)
    embeddings, probabilities = backbone.predict(np.full((2, 299, 299, 3), 128, np.uint8))
    assert embeddings.shape == (2, 2048)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_registry_lists_default_first_and_the_original_network():
    names = available_models()
    assert names[0] == "efficientnet-lite0"
    assert "inception-v3" in names and "resnet50" in names
