"""The ``lab`` command line: index, info, search, similar, judge, teach, terms, panel.

Every command takes ``-c COLLECTION``; ``--json`` prints one JSON object
instead of text, for scripts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from . import __version__


def _print_json(value) -> None:
    json.dump(value, sys.stdout, indent=None, default=str)
    sys.stdout.write("\n")


def _cmd_index(args) -> int:
    from .collection import Collection

    options = dict(batch_size=args.batch_size, chunk_size=args.chunk_size, progress=not args.json and not args.quiet, runtime=args.runtime)
    with contextlib.ExitStack() as stack:
        if args.workers is not None or args.scheduler:  # reach the cluster before creating anything
            from .distributed import cluster_client

            options["client"] = stack.enter_context(cluster_client(n_workers=args.workers, scheduler=args.scheduler))
        col = Collection.open(args.collection, create=True, model=args.model)
        report = col.add(args.images, **options)
    if args.json:
        _print_json(report.to_dict())
    else:
        print(report)
    return 0


def _cmd_info(args) -> int:
    from .collection import Collection

    info = Collection.open(args.collection).info()
    if args.json:
        _print_json(info)
    else:
        for key, value in info.items():
            print(f"{key:>16}: {value}")
    return 0


def _print_results(frame, args) -> None:
    if args.json:
        _print_json({**{k: v for k, v in frame.attrs.items()}, "results": frame.to_dict(orient="records")})
        return
    if frame.attrs.get("message"):
        print(frame.attrs["message"], file=sys.stderr)
    for rank, row in enumerate(frame.itertuples(index=False), start=1):
        print(f"{rank:>3}  {row.score:8.4f}  {row.path}  ({row.reason})")


def _cmd_search(args) -> int:
    from .collection import Collection

    frame = Collection.open(args.collection).search(args.query, k=args.k, offset=args.offset)
    _print_results(frame, args)
    return 0


def _row_or_path(value: str):
    return int(value) if value.isdigit() else value


def _cmd_similar(args) -> int:
    from .collection import Collection

    frame = Collection.open(args.collection).similar(_row_or_path(args.image), k=args.k, metric=args.metric, layer=args.layer)
    _print_results(frame, args)
    return 0


def _cmd_judge(args) -> int:
    from .collection import Collection

    col = Collection.open(args.collection)
    relevant = not args.not_relevant
    ids = [col.judge(args.query, _row_or_path(image), relevant=relevant, user=args.user) for image in args.images]
    if args.json:
        _print_json({"query": args.query, "relevant": relevant, "judgment_ids": ids})
    else:
        print(f"recorded {len(ids)} judgment{'s' if len(ids) != 1 else ''} ({'relevant' if relevant else 'not relevant'}) for '{args.query}'")
    return 0


def _cmd_teach(args) -> int:
    from .collection import Collection

    col = Collection.open(args.collection)
    ids = [col.teach(args.word, _row_or_path(image), user=args.user) for image in args.images]
    if args.json:
        _print_json({"word": args.word, "example_ids": ids})
    else:
        print(f"taught '{args.word}' with {len(ids)} example{'s' if len(ids) != 1 else ''}")
    return 0


def _cmd_terms(args) -> int:
    from .collection import Collection

    terms = Collection.open(args.collection).terms()
    if args.json:
        _print_json({"terms": terms.to_dict(orient="records")})
    elif terms.empty:
        print("no word has feedback yet")
    else:
        print(terms.to_string(index=False))
    return 0


def _cmd_panel(args) -> int:
    from .panel import serve

    process = serve(args.collection, port=args.port, ip=args.ip, open_browser=args.open)
    print(f"serving the search panel at http://{args.ip}:{args.port}/ (Ctrl-C stops it)", file=sys.stderr)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        process.wait()
        return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lab", description="Search collections of unlabeled images.")
    parser.add_argument("--version", action="version", version=f"lab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, func, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("-c", "--collection", required=True, help="collection folder")
        p.add_argument("--json", action="store_true", help="print one JSON object")
        p.set_defaults(func=func)
        return p

    p = command("index", _cmd_index, "index image files and folders into a collection (created if needed)")
    p.add_argument("images", nargs="+", help="image files or folders (searched recursively)")
    p.add_argument("--model", default=None, help="backbone for a new collection (default efficientnet-lite0)")
    p.add_argument("--batch-size", type=int, default=32, help="images per network call (default 32)")
    p.add_argument("--chunk-size", type=int, default=512, help="images per committed chunk (default 512)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--runtime", default="litert", choices=["litert", "keras"], help="what runs the network (default litert)")
    cluster = p.add_mutually_exclusive_group()
    cluster.add_argument("--workers", type=int, default=None, metavar="N", help="extract on a local Dask cluster of N worker processes")
    cluster.add_argument("--scheduler", default=None, metavar="ADDRESS", help="extract on an existing Dask cluster, e.g. tcp://host:8786")

    command("info", _cmd_info, "show a collection's model, size and schema")

    p = command("search", _cmd_search, "find images that show a word")
    p.add_argument("query", help='a word or phrase, e.g. "dog", "sports car", "beach"')
    p.add_argument("-k", type=int, default=20, help="results per page (default 20)")
    p.add_argument("--offset", type=int, default=0, help="rank of the first result (paging)")

    p = command("similar", _cmd_similar, "find images similar to an image (a row id or a path, inside the collection or not)")
    p.add_argument("image", help="row id or image path")
    p.add_argument("-k", type=int, default=20, help="number of results (default 20)")
    p.add_argument("--metric", default="cosine", choices=["cosine", "euclidean", "manhattan"])
    p.add_argument("--layer", default="transfer", choices=["transfer", "output"], help="embeddings or class probabilities")

    p = command("judge", _cmd_judge, "mark images relevant (or not) to a word")
    p.add_argument("query")
    p.add_argument("images", nargs="+", help="row ids or paths of images in the collection")
    p.add_argument("--not-relevant", action="store_true", help="mark them not relevant")
    p.add_argument("--user", default=None, help="who is judging")

    p = command("teach", _cmd_teach, "teach a word with example images (inside the collection or not)")
    p.add_argument("word")
    p.add_argument("images", nargs="+", help="row ids or image paths")
    p.add_argument("--user", default=None)

    command("terms", _cmd_terms, "list the words that have feedback, with judgment counts")

    p = command("panel", _cmd_panel, "serve the search panel as a web page (Voila)")
    p.add_argument("--port", type=int, default=8866)
    p.add_argument("--ip", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--open", action="store_true", help="open a browser")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lab`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from .collection import CollectionError
    from .distributed import ClusterError
    from .models import WeightsUnavailableError

    try:
        return args.func(args)
    except (FileNotFoundError, CollectionError, ClusterError, WeightsUnavailableError, ValueError, IndexError, TypeError) as err:
        print(f"lab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lab {args.command}: interrupted; finished chunks are kept, run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
