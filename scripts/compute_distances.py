"""The original system's neighbour-table script: exact kNN of every image.

    python scripts/compute_distances.py features_path output_dir_path distance_metric n_neighbors [n_cores]

``features_path`` is a ``.npy`` from get_transfer_layer.py / get_inception_output.py
(or the folder holding it). Writes ``neighbors.npy`` and ``distances.npy``
(n, n_neighbors) to ``output_dir_path``. ``distance_metric`` is any metric of
scikit-learn's NearestNeighbors (cosine, euclidean, manhattan, ...);
``n_cores`` -1 uses all cores (default 4).
"""

import argparse

from lab.features_export import compute_neighbors

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("features_path")
    parser.add_argument("output_dir_path")
    parser.add_argument("distance_metric")
    parser.add_argument("n_neighbors", type=int)
    parser.add_argument("n_cores", type=int, nargs="?", default=4)
    args = parser.parse_args()
    result = compute_neighbors(args.features_path, args.output_dir_path, args.distance_metric, args.n_neighbors, n_jobs=args.n_cores)
    print(f"wrote {result['n_neighbors']} {result['metric']} neighbours of {result['n_images']} images to {result['output_dir']}")
