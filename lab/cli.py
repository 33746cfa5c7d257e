"""The ``lab`` command line: index, info, search, similar, judge, teach, terms, words, evaluate, check, repair, panel, report.

Every command takes ``-c COLLECTION``; ``--json`` prints one JSON object
instead of text, for scripts.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import sys
from pathlib import Path

from . import __version__
from .neighbors import METRICS
from .vectors import LAYERS


def _print_json(value) -> None:
    from .json_output import dumps

    sys.stdout.write(dumps(value) + "\n")


def _print_report(report, args) -> None:
    """A command's report object: its ``to_dict()`` as JSON with ``--json``, else its text."""
    if args.json:
        _print_json(report.to_dict())
    else:
        print(report)


def _cmd_index(args) -> int:
    from .collection import Collection
    from .image_decoding import existing_source

    options = dict(batch_size=args.batch_size, chunk_size=args.chunk_size, progress=not args.json and not args.quiet, runtime=args.runtime)
    with contextlib.ExitStack() as stack:
        if args.workers is not None or args.scheduler:  # reach the cluster before creating anything
            from .distributed import cluster_client

            options["client"] = stack.enter_context(cluster_client(n_workers=args.workers, scheduler=args.scheduler))
        for image in args.images:  # before creating anything: a typo must not leave an empty collection behind
            existing_source(image)
        col = Collection.open(args.collection, create=True, model=args.model)
        report = col.add(args.images, **options)
    _print_report(report, args)
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
    from .image_decoding import display_path

    if args.json:
        _print_json({**{k: v for k, v in frame.attrs.items()}, "results": frame.to_dict(orient="records")})
        return
    if frame.attrs.get("message"):
        print(frame.attrs["message"], file=sys.stderr)
    for rank, row in enumerate(frame.itertuples(index=False), start=1):
        print(f"{rank:>3}  {row.score:8.4f}  {display_path(row.path)}  ({row.reason})")


def _non_empty(col):
    """``col``, or a ValueError saying how to fill it: searching an empty collection is a mistake, not a query with no match."""
    if len(col) == 0:
        from .wording import empty_collection

        raise ValueError(empty_collection(col.root))
    return col


def _cmd_search(args) -> int:
    from .collection import Collection

    frame = _non_empty(Collection.open(args.collection)).search(args.word, k=args.k, offset=args.offset)
    _print_results(frame, args)
    return 0


def _row_or_path(value: str):
    return int(value) if value.isdigit() else value


def _cmd_similar(args) -> int:
    from .collection import Collection

    frame = _non_empty(Collection.open(args.collection)).similar(_row_or_path(args.image), k=args.k, metric=args.metric, layer=args.layer)
    _print_results(frame, args)
    return 0


def _cmd_judge(args) -> int:
    from .collection import Collection

    col = Collection.open(args.collection)
    relevant = not args.not_relevant
    # every image is checked before any judgment is written; all are stored in one transaction
    ids = col.judge(args.word, [_row_or_path(image) for image in args.images], relevant=relevant, user=args.user)
    if args.json:
        _print_json({"word": args.word, "relevant": relevant, "judgment_ids": ids})
    else:
        print(f"recorded {len(ids)} judgment{'s' if len(ids) != 1 else ''} ({'relevant' if relevant else 'not relevant'}) for '{args.word}'")
    return 0


def _cmd_teach(args) -> int:
    from .collection import Collection
    from .validation import check_image

    col = Collection.open(args.collection)
    for image in args.images:  # refuse an empty path or a folder before teaching any
        check_image(_row_or_path(image))
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
        print("no word has feedback yet: judge search results (`lab judge`) or teach a word (`lab teach`)")
    else:
        print(terms.to_string(index=False))
    return 0


def _cmd_evaluate(args) -> int:
    from .collection import Collection
    from .evaluation import check_result_name, collection_labels, evaluate

    check_result_name(args.name)  # before the work, not after
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    col = Collection.open(args.collection)
    result = evaluate(col, collection_labels(col, args.labels), words=args.words or None, rounds=args.rounds, progress=not args.json)
    result.facts["command"] = "lab " + shlex.join(_argv_for_record(args))  # quoted: it can be pasted back into a shell
    for notice in result.notices():
        print(f"lab evaluate: {notice}", file=sys.stderr)
    if args.out:
        for path in result.save(args.out, args.name):
            print(f"wrote {path}", file=sys.stderr)
    if args.json:
        _print_json(result.to_dict())
    else:
        print(result.to_markdown())
    return 0


def _argv_for_record(args) -> list[str]:
    return sys.argv[1:] if len(sys.argv) > 1 else ["evaluate", "-c", str(args.collection)]


def _cmd_check(args) -> int:
    from .collection import Collection

    report = Collection.open(args.collection, verify=False).check()
    _print_report(report, args)
    return 0 if report.ok else 1


def _cmd_repair(args) -> int:
    from .collection import Collection

    report = Collection.open(args.collection, verify=False).repair(progress=not args.json)
    _print_report(report, args)
    return 0


def _cmd_prune(args) -> int:
    from .collection import Collection
    from .image_decoding import display_path

    col = Collection.open(args.collection)
    n_before = len(col)
    missing = col.prune(within=args.folders or None, folders_gone=args.all, dry_run=args.dry_run)
    if args.json:
        _print_json({"missing": missing["path"].tolist(), "folder_gone": missing["folder_gone"].tolist(), "removed": int(missing["removed"].sum())})
        return 0
    if missing.empty:
        print(f"nothing to prune: the file of every one of the {n_before} images is on disk")
        return 0
    for row in missing.itertuples():
        print(f"  {'removed' if row.removed else 'gone'}: {display_path(row.path)}{' (its folder is gone too)' if row.folder_gone else ''}")
    kept = missing[~missing["removed"]]
    if args.dry_run:
        print(f"would remove {int((args.all | ~missing['folder_gone']).sum())} of {n_before} images (--dry-run: nothing removed)")
    else:
        print(f"removed {int(missing['removed'].sum())} of {n_before} images; their judgments are kept and apply again if the images are indexed again")
    if not args.all and kept["folder_gone"].any():
        print(f"kept {len(kept)} whose folders are gone as well (a renamed folder, or a drive not mounted?): --all removes them too")
    return 0


def _cmd_words_export(args) -> int:
    from .collection import Collection
    from .word_transfer import read_words

    col = Collection.open(args.collection)
    path = col.export_words(args.file, words=args.word)
    _, tables = read_words(path)
    words = sorted({term for records, _ in tables.values() for term in records.get("term", [])})
    if args.json:
        _print_json({"file": str(path), "words": words})
    else:
        print(f"wrote {len(words)} word{'s' if len(words) != 1 else ''} ({', '.join(words)}) to {path}")
        print(f"import them into another collection built with {col.model_name}: lab words import -c OTHER {shlex.quote(str(path))}")
    return 0


def _cmd_words_import(args) -> int:
    from .collection import Collection

    report = Collection.open(args.collection).import_words(args.file)
    _print_report(report, args)
    return 0


def _cmd_panel(args) -> int:
    import threading

    from .installed import require_extra
    from .panel import serve

    require_extra("panel", "lab panel")
    server = serve(args.collection, port=args.port, ip=args.ip, open_browser=args.open, cull_idle=args.cull_idle)
    # Ctrl-C, SIGTERM and SIGHUP only set a flag the wait loop reads: an exception raised by a handler
    # could land inside subprocess's own locking and leave the clean-up waiting forever
    stopping = threading.Event()
    previous = {sig: signal.signal(sig, lambda signum, frame: stopping.set()) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    print(f"serving the search panel at {server.url} (Ctrl-C stops it)", file=sys.stderr)
    try:
        status = server.wait(stop=stopping)
        return 0 if stopping.is_set() else status
    finally:
        server.stop()  # Voila and every kernel; a second Ctrl-C only sets the flag again
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (and exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if not isinstance(err, OSError) or err.strerror is None else f"{err.strerror}: {err.filename or ''}".rstrip(": ")


def _cmd_report(args) -> int:
    from .installed import require_extra
    from .report import run_report

    require_extra("report", "lab report")
    command = "lab " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["report"] else f"lab report -c {args.collection}"
    run = run_report(args.collection, args.images, args.out, command=command, progress=not args.json)
    if args.json:
        _print_json({"index": str(run.index), "pages": [str(p) for p in run.pages], "seconds": run.seconds})
    else:
        print(f"report: {run.index}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lab", description="Search collections of unlabeled images.")
    parser.add_argument("--version", action="version", version=f"lab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def command(name, func, help_text, within=sub):
        p = within.add_parser(name, help=help_text, description=help_text)
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
    p.add_argument("word", help='a word or phrase, e.g. "dog", "sports car", "beach"')
    p.add_argument("-k", type=int, default=20, help="results per page (default 20)")
    p.add_argument("--offset", type=int, default=0, help="rank of the first result (paging)")

    p = command("similar", _cmd_similar, "find images similar to an image (a row id or a path, inside the collection or not)")
    p.add_argument("image", help="row id or image path")
    p.add_argument("-k", type=int, default=20, help="number of results (default 20)")
    p.add_argument("--metric", default="cosine", choices=METRICS, help="distance (default cosine)")
    p.add_argument("--layer", default="transfer", choices=list(LAYERS), help="transfer: embeddings (default); output: class probabilities")

    p = command("judge", _cmd_judge, "mark images relevant (or not) to a word")
    p.add_argument("word", help="the word the images show (or do not show)")
    p.add_argument("images", nargs="+", help="row ids or paths of images in the collection")
    p.add_argument("--not-relevant", action="store_true", help="mark them not relevant")
    p.add_argument("--user", default=None, help="who is judging")

    p = command("teach", _cmd_teach, "teach a word with example images (inside the collection or not)")
    p.add_argument("word", help="the word the images show, e.g. garfield")
    p.add_argument("images", nargs="+", help="row ids or image paths")
    p.add_argument("--user", default=None, help="who is teaching")

    command("terms", _cmd_terms, "list the words that have feedback, with judgment counts")

    p = command("evaluate", _cmd_evaluate, "measure search on a labeled collection (labels from a CSV or folder names); never writes judgments")
    p.add_argument("--labels", help="CSV with path,label_name (paths relative to the CSV); default: each image's folder name")
    p.add_argument("--words", nargs="+", help="query words to evaluate (default: every label)")
    p.add_argument("--rounds", type=int, default=4, help="pages the simulated user judges per word")
    p.add_argument("--out", help="folder for <name>.md, CSV and JSON tables")
    p.add_argument("--name", default="evaluation", help="file name stem in --out")
    command("check", _cmd_check, "verify a collection: checksums, NaN/inf, row counts, the feedback store (exit 1 when damaged)")
    command("repair", _cmd_repair, "set damaged chunks aside, re-extract their images, rebuild a damaged feedback store")
    p = command("prune", _cmd_prune, "remove images whose files are gone (moved, renamed or deleted) from the collection")
    p.add_argument("folders", nargs="*", help="only images under these folders (default: the whole collection)")
    p.add_argument("--dry-run", action="store_true", help="list them, remove nothing")
    p.add_argument("--all", action="store_true", help="also images whose folders are gone (by default kept: an unplugged drive looks the same)")
    words = sub.add_parser("words", help="copy learned words to another collection", description="copy learned words to another collection")
    words_sub = words.add_subparsers(dest="words_command", required=True, metavar="ACTION")
    p = command("export", _cmd_words_export, "write learned words (judgments and taught examples) to a portable zip", words_sub)
    p.add_argument("file", help="the file to write, e.g. words.zip")
    p.add_argument("--word", action="append", help="a word to export (repeat for several; default every word with feedback)")
    p = command("import", _cmd_words_import, "add the words in a file from `lab words export` (same model only)", words_sub)
    p.add_argument("file", help="a file written by `lab words export`")

    p = command("panel", _cmd_panel, "serve the search panel as a web page (Voila)")
    p.add_argument("--port", type=int, default=8866, help="port to serve on (default 8866)")
    p.add_argument("--ip", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--open", action="store_true", help="open a browser")
    p.add_argument(
        "--cull-idle", type=float, default=600, metavar="SECONDS",
        help="shut down a page's kernel once no browser is connected and it has been idle this long (default 600; 0: never)",
    )

    p = command("report", _cmd_report, "run the notebooks on a collection and render them, with their outputs, to HTML")
    p.add_argument("--images", default=None, help="the image folder the collection indexes (its labels score the experiments)")
    p.add_argument("--out", default="results/report", help="report folder (default results/report)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lab`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # SIGTERM (kill, a scheduler stopping a job) ends a command as Ctrl-C does: temporary stores are
    # removed, the chunk in flight is abandoned, finished ones stay (the panel installs its own handlers)
    with _terminate_as_interrupt():
        return _run(args)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be, so the same clean-up runs; the exit status says which (143, not 130)."""


def _raise_terminated(signum, frame):
    raise _Terminated()


@contextlib.contextmanager
def _terminate_as_interrupt():
    """Within: SIGTERM raises :class:`_Terminated` (in the main thread; the previous handler is restored after)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _close_progress_bars() -> None:
    """End any progress bar left open by an interruption, so a message starts on its own line and no bar is drawn after it."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()
    sys.stderr.write("\r\033[K" if sys.stderr.isatty() else "")


def _run(args) -> int:
    """Run the chosen command; errors a user can act on become one line on stderr and an exit status."""
    import sqlite3

    from .collection import CollectionError
    from .distributed import ClusterError
    from .feedback import FeedbackError
    from .installed import MissingExtraError
    from .models import WeightsUnavailableError
    from .report import NotebookFailed

    try:
        return args.func(args)
    except (OSError, CollectionError, FeedbackError, WeightsUnavailableError, MissingExtraError, NotebookFailed, ClusterError, ValueError, IndexError, TypeError) as err:
        print(f"lab {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except sqlite3.Error as err:
        print(f"lab {args.command}: error: the feedback store of {args.collection} is damaged or locked ({_one_line(err)})", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        _close_progress_bars()
        resume = "; finished chunks are kept, run the same command to resume" if args.command == "index" else ""
        print(f"lab {args.command}: {'terminated' if isinstance(stop, _Terminated) else 'interrupted'}{resume}", file=sys.stderr)
        return 143 if isinstance(stop, _Terminated) else 130


if __name__ == "__main__":
    sys.exit(main())
