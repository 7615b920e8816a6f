"""`kangaroo-lab figures`: every figure (PNG + PDF) redrawn from the stored CSV files; no GPU."""

from __future__ import annotations

import argparse
import os

from ..metrics import warn


def add_figures_parser(subparsers):
    p = subparsers.add_parser(
        "figures",
        help="rebuild every figure (PNG + PDF) from the stored CSV files; no GPU needed",
        description="Redraw figures/*.png and *.pdf from the files in figures/data/. A figure whose input "
        "file is missing is skipped, with the command that produces the file.",
    )
    p.add_argument("--data", metavar="DIR", default="figures/data", help="the stored files (default: %(default)s)")
    p.add_argument("--out", metavar="DIR", default="figures", help="where the figures go (default: %(default)s)")
    p.add_argument("--strict", action="store_true", help="exit with code 2 when any figure was skipped")
    p.set_defaults(run=run_figures)


def run_figures(args: argparse.Namespace) -> int:
    # heavy: matplotlib, pandas and the plots load only for this command, and the backend must be chosen
    # before pyplot is first imported
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window
    from ..plots import build_figures, missing_inputs

    if not os.path.isdir(args.data):
        raise FileNotFoundError(f"--data {args.data}: no such folder (run from the repository root, or pass --data)")
    build_figures(args.data, args.out)  # prints one line per file written and per figure skipped
    skipped = missing_inputs(args.data)
    if args.strict and skipped:
        warn(f"{len(skipped)} figure(s) skipped (--strict)", source=None)
        return 2
    return 0
