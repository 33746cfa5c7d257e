"""The torch-free state-dict reader: real checkpoints load, anything else is refused."""

import io
import pickle
import struct
import sys
import types
import zipfile

import numpy as np
import pytest

from lab.models.efficientnet_lite import LITE_SPECS, weights_file
from lab.models.torch_state_dict import UnsafeCheckpointError, load_state_dict


def test_reads_the_packaged_efficientnet_lite0_checkpoint():
    state = load_state_dict(weights_file(LITE_SPECS["efficientnet-lite0"]))
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_fc.weight"].dtype == np.float32
    # trained weights, not zeros: the classifier bias is far from constant
    assert state["_fc.bias"].std() > 1e-3


class _FakeStorage:  # pickled as torch.FloatStorage
    pass


def _fake_torch_modules(monkeypatch):
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while pickling")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    _FakeStorage.__module__, _FakeStorage.__qualname__ = "torch", "FloatStorage"
    torch.FloatStorage = _FakeStorage
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return utils._rebuild_tensor_v2


class _Tensor:
    def __init__(self, rebuild, key, shape):
        self.rebuild, self.key, self.shape = rebuild, key, shape

    def __reduce__(self):
        stride = tuple(int(np.prod(self.shape[i + 1 :])) for i in range(len(self.shape)))
        return self.rebuild, (("storage", _FakeStorage, self.key, "cpu", int(np.prod(self.shape))), 0, self.shape, stride, False, None)


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj if isinstance(obj, tuple) and obj and obj[0] == "storage" else None


def _pickle_state(tensors):
    import collections

    buffer = io.BytesIO()
    _Pickler(buffer, protocol=2).dump(collections.OrderedDict(tensors))
    return buffer.getvalue()


def test_reads_the_zip_layout_of_newer_torch(tmp_path, monkeypatch):
    rebuild = _fake_torch_modules(monkeypatch)
    weight = np.arange(6, dtype=np.float32).reshape(2, 3)
    data = _pickle_state({"layer.weight": _Tensor(rebuild, "0", (2, 3))})
    path = tmp_path / "model.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data)
        archive.writestr("archive/data/0", weight.tobytes())
    monkeypatch.delitem(sys.modules, "torch")
    state = load_state_dict(path)
    np.testing.assert_array_equal(state["layer.weight"], weight)


def test_reads_the_legacy_layout(tmp_path, monkeypatch):
    rebuild = _fake_torch_modules(monkeypatch)
    weight = np.array([1.5, -2.0, 3.25], np.float32)
    path = tmp_path / "legacy.pth"
    with open(path, "wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(header, f, protocol=2)
        f.write(_pickle_state({"bias": _Tensor(rebuild, "7", (3,))}))
        pickle.dump(["7"], f, protocol=2)
        f.write(struct.pack("<q", 3) + weight.tobytes())
    state = load_state_dict(path)
    np.testing.assert_array_equal(state["bias"], weight)


class _Exploit:
    def __reduce__(self):
        import os

        return os.system, ("echo pwned > /dev/null",)


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_refuses_a_pickle_that_calls_anything_else(tmp_path, layout):
    payload = pickle.dumps({"weight": _Exploit()}, protocol=2)
    path = tmp_path / "evil.pth"
    if layout == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", payload)
    else:
        with open(path, "wb") as f:
            for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
                pickle.dump(header, f, protocol=2)
            f.write(payload)
    with pytest.raises(UnsafeCheckpointError, match="system"):
        load_state_dict(path)


def test_refuses_a_file_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "random.pth"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(pickle.UnpicklingError):
        load_state_dict(path)
