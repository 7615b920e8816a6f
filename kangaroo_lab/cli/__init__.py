"""`kangaroo-lab`: the command line over the package.

    kangaroo-lab demo                                  # AR vs Kangaroo on bundled prompts, embedded SmolLM2
    kangaroo-lab generate --prompt "Why is the sky blue?"
    kangaroo-lab generate --prompt "Why is the sky blue?" --method ar --json
    kangaroo-lab figures                               # figures/*.png, *.pdf from figures/data/, no GPU
    kangaroo-lab corpus --from DIR --out prompts.jsonl  # public prompt corpora -> a training prompt mix

One module per subcommand (demo, generate, corpus, distill, train, bench, figures), each a pair:
`add_X_parser(subparsers)` declares its options and `run_X(args)` does the work; `build_parser` calls
every `add_X_parser`. What several share (--model/--device/--json, the decoding options, the adapter
choice) is in `common`; the coloured tokens come from `kangaroo_lab.render`. Defaults are read from the
method table (`proposers.METHOD_TABLE`) and `adapter.DEFAULT_EXIT_LAYER`, never declared here. Library
errors (ValueError, OSError such as FileNotFoundError) become one line, `kangaroo-lab: error: <message>`,
and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..bench import Interrupted
from ..render import (  # kangaroo_lab.cli's names before render.py existed: still importable from here
    ACCEPTED,
    LOOKUP,
    REJECTED,
    RESET,
    legend,
    render,
    segments,
    stats_line,
    token_kinds,
    token_pieces,
    use_colour,
)
from .bench import add_bench_parser, run_bench
from .common import AdapterChoice, choose_adapter, environment, text_file
from .corpus import add_corpus_parser, run_corpus
from .demo import (
    DEMO_MAX_NEW_TOKENS,
    DEMO_METHODS,
    DEMO_PROMPTS,
    NEXT_STEPS,
    WARMUP_TOKENS,
    add_demo_parser,
    demo_prompts,
    run_demo,
)
from .distill import add_distill_parser, run_distill
from .figures import add_figures_parser, run_figures
from .generate import add_generate_parser, print_generation, result_record, run_generate
from .train import TRAIN_OPTIONS, add_train_parser, run_train


__all__ = [  # what `from kangaroo_lab.cli import ...` offers (callers, tests and notebooks use some of these)
    "ACCEPTED",
    "DEMO_MAX_NEW_TOKENS",
    "DEMO_METHODS",
    "DEMO_PROMPTS",
    "LOOKUP",
    "NEXT_STEPS",
    "REJECTED",
    "RESET",
    "TRAIN_OPTIONS",
    "WARMUP_TOKENS",
    "AdapterChoice",
    "build_parser",
    "choose_adapter",
    "demo_prompts",
    "environment",
    "legend",
    "main",
    "print_generation",
    "render",
    "result_record",
    "segments",
    "stats_line",
    "text_file",
    "token_kinds",
    "token_pieces",
    "use_colour",
    "add_demo_parser",
    "run_demo",
    "add_generate_parser",
    "run_generate",
    "add_corpus_parser",
    "run_corpus",
    "add_distill_parser",
    "run_distill",
    "add_train_parser",
    "run_train",
    "add_bench_parser",
    "run_bench",
    "add_figures_parser",
    "run_figures",
]


def main(argv: list[str] | None = None) -> int:
    """The console entry point (`kangaroo-lab`, `python -m kangaroo_lab.cli`): parse, run, exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, OSError) as e:  # the library's errors say what to do: no traceback
        print(f"kangaroo-lab: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:  # Ctrl-C in a bench: the answers so far are kept; say how to go on
        print(f"kangaroo-lab: {e.message(argv if argv is not None else sys.argv[1:])}", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kangaroo-lab",
        description="Kangaroo (arXiv 2404.18911): lossless self-speculative decoding with double early exiting.",
        epilog="Run `kangaroo-lab COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_demo_parser(subparsers)
    add_generate_parser(subparsers)
    add_corpus_parser(subparsers)
    add_distill_parser(subparsers)
    add_train_parser(subparsers)
    add_bench_parser(subparsers)
    add_figures_parser(subparsers)
    return parser
