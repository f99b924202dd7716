"""Options shared by commands, and the helper that prints a command's report with them."""

from __future__ import annotations

import argparse

from lmcache.report import FORMATS, Progress, Report, emit

__all__ = ["add_output_options", "emit_report", "progress"]


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--format {terminal,json}``, ``--output PATH`` and ``-q/--quiet`` to a command."""
    group = parser.add_argument_group("output")
    group.add_argument(
        "--format",
        choices=FORMATS,
        default=FORMATS[0],
        help="How the result is printed on stdout: an aligned table, or one JSON document. "
        "Default: %(default)s.",
    )
    group.add_argument(
        "--output",
        metavar="PATH",
        default=None,
        help="Also write the result to PATH, in the format chosen by --format.",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="Print nothing on stdout (the exit status tells the outcome; --output is still written).",
    )


def emit_report(args: argparse.Namespace, report: Report) -> None:
    """Print ``report`` as the output options in ``args`` ask."""
    emit(report, args.format, args.output, args.quiet)


def progress(args: argparse.Namespace) -> Progress:
    """A progress printer that follows the output options in ``args``."""
    return Progress(args.format, args.quiet)
