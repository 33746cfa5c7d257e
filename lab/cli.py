"""The ``lab`` command line: index, info, search, similar, judge, teach, terms, panel.

Every command takes ``-c COLLECTION``; ``--json`` prints one JSON object
instead of text, for scripts.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import __version__


def _print_json(value) -> None:
    json.dump(value, sys.stdout, indent=None, default=str)
    sys.stdout.write("\n")


def _cmd_index(args) -> int:
    from .collection import Collection

    col = Collection.open(args.collection, create=True, model=args.model)
    report = col.add(
        args.images, batch_size=args.batch_size, chunk_size=args.chunk_size, progress=not args.json and not args.quiet
    )
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

    command("info", _cmd_info, "show a collection's model, size and schema")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lab`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from .collection import CollectionError
    from .models import WeightsUnavailableError

    try:
        return args.func(args)
    except (FileNotFoundError, CollectionError, WeightsUnavailableError, ValueError) as err:
        print(f"lab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lab {args.command}: interrupted; finished chunks are kept, run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
