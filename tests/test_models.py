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


@pytest.mark.parametrize("runtime", ["keras", "litert"])
@pytest.mark.parametrize("name", ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"])
def test_keras_port_and_its_litert_conversion_match_the_pytorch_reference_logits(name, runtime, images):
    reference = np.load(REFERENCE, allow_pickle=False)
    assert list(reference["image_names"]) == list(images)
    backbone = load_model(name, runtime=runtime)
    assert backbone.runtime == runtime
    batch = np.stack([backbone.preprocess(image) for image in images.values()])
    np.testing.assert_allclose(backbone.logits(batch), reference[name], atol=1e-4, rtol=0)


def test_converted_weights_are_cached_and_reused(lite0, _isolated_lab_home):
    cached = list((_isolated_lab_home / "weights").glob("efficientnet-lite0-*.weights.h5"))
    assert len(cached) == 1
    assert lite0.weights_checksum.startswith(cached[0].name.split("-")[2][:16])
    converted = list((_isolated_lab_home / "weights").glob("efficientnet-lite0-*.tflite"))
    assert [p.name for p in converted] == [cached[0].name.replace(".weights.h5", ".tflite")]
    assert not list((_isolated_lab_home / "weights").glob(".*partial"))  # written atomically


def test_litert_and_keras_runtimes_agree_on_real_photos(lite0, photo_folder):
    """The default runtime (LiteRT) gives the reference Keras outputs to 1e-4, one batch or one image at a time."""
    from lab.image_decoding import decode_image, find_images

    keras_backbone = load_model("efficientnet-lite0", runtime="keras")
    assert lite0.runtime == "litert" and keras_backbone.runtime == "keras"
    batch = np.stack([lite0.preprocess(decode_image(path, lite0.image_size)) for path in find_images(photo_folder)])
    assert len(batch) >= 20
    embeddings, probabilities = lite0.predict(batch)
    reference_embeddings, reference_probabilities = keras_backbone.predict(batch)
    np.testing.assert_allclose(embeddings, reference_embeddings, atol=1e-4, rtol=0)
    np.testing.assert_allclose(probabilities, reference_probabilities, atol=1e-4, rtol=0)
    np.testing.assert_allclose(lite0.logits(batch), keras_backbone.logits(batch), atol=1e-4, rtol=0)
    one_by_one = np.concatenate([lite0.predict(image[None])[0] for image in batch[:3]])
    np.testing.assert_allclose(one_by_one, embeddings[:3], atol=1e-5, rtol=0)


def test_litert_runner_layouts_give_the_same_outputs(lite0, images):
    """One batched call, and single-threaded interpreters per thread with slices or batches of one."""
    from lab.models.litert import LiteRTRunner

    batch = np.stack([lite0.preprocess(image) for image in images.values()]).astype(np.float32)
    expected = lite0._forward(batch)
    for options in ({"per_thread": False}, {"per_thread": True, "n_threads": 2}, {"per_thread": True, "n_threads": 3, "call_batch": 1}):
        got = LiteRTRunner(lite0.model_path, 1280, **options)(batch)
        for a, b in zip(got, expected):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_unknown_runtime_lists_the_choices():
    with pytest.raises(ValueError, match="litert, keras"):
        load_model("efficientnet-lite0", runtime="onnx")


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
