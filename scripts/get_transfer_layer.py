"""The original system's transfer-layer script: one embedding per image.

    python scripts/get_transfer_layer.py image_path output_path [--model NAME]

Writes ``output_path/embeddings.npy`` (n, d) and ``image_names.csv``. The
default model is efficientnet-lite0 (d = 1280); ``--model inception-v3`` gives
the original 2048-d layer where its weights are available.
"""

import argparse
import sys

from lab.features_export import export_features

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image_path", help="an image file or a folder of images")
    parser.add_argument("output_path", help="output folder")
    parser.add_argument("--model", default=None, help="backbone (default efficientnet-lite0)")
    args = parser.parse_args()
    result = export_features(args.image_path, args.output_path, layer="transfer", model=args.model)
    for item in result["failed"]:
        print(f"skipped {item['path']}: {item['reason']}", file=sys.stderr)
    print(f"wrote {result['written']} rows to {result['array']}")
