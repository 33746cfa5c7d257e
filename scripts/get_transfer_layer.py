"""The original system's transfer-layer script: one embedding per image.

    python scripts/get_transfer_layer.py image_path output_path [--model NAME] [--runtime {litert,keras}]

Writes ``output_path/embeddings.npy`` (n, d) and ``image_names.csv``. The
default model is efficientnet-lite0 (d = 1280); ``--model inception-v3`` gives
the original 2048-d layer where its weights are available.
"""

from lab.features_export import export_features_cli

if __name__ == "__main__":
    export_features_cli("transfer", __doc__.splitlines()[0])
