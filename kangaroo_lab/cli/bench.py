"""`kangaroo-lab bench`: every method over the same questions (Spec-Bench answer files, summary.csv and a
markdown table), or a sweep of settings written one CSV row at a time; --trace and --costs after a run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import bench, costs
from ..adapter import DEFAULT_EXIT_LAYER
from ..models import Model
from ..options import DEFAULTS, DecodeOptions
from ..proposers import BASELINE, DEFAULT_METHOD, METHOD_TABLE, method_layout
from ..questions import load_questions
from .common import add_decoding_args, add_model_args, decode_options, load_model_for, text_file


def add_bench_parser(subparsers):
    p = subparsers.add_parser(
        "bench",
        help="Spec-Bench-style benchmark: ar, kangaroo and transformers' methods; sweeps",
        description="Time every method over the same questions (greedy, in one process) and write Spec-Bench "
        "answer files, summary.csv (speedup, mean accepted tokens, CTAR, identical to AR) and a "
        "markdown table; or sweep the exit layer / (threshold x max draft), one CSV row at a time.",
    )
    add_model_args(p)
    _add_run_args(p)
    add_decoding_args(p)
    p.add_argument(
        "--max-new-tokens",
        metavar="N",
        type=int,
        default=DEFAULTS.max_new_tokens,
        help="per turn (default: %(default)s)",
    )
    p.add_argument(
        "--hf-limit",
        metavar="N",
        type=int,
        default=None,
        help="transformers' methods answer only the first N questions per category (default: all)",
    )
    _add_sweep_args(p)
    _add_extras_args(p)
    p.add_argument("--out", metavar="DIR", default=str(bench.DEFAULT_OUT), help="(default: %(default)s)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run in --out: questions already answered are read back, not "
        "run again (the settings must be the same)",
    )
    p.set_defaults(run=run_bench)


def _add_run_args(p: argparse.ArgumentParser):
    """--questions, --methods, --exit-layer: what a run measures."""
    p.add_argument(
        "--questions",
        metavar="FILE",
        help="Spec-Bench question.jsonl, ShareGPT or JSONL prompts (default: the bundled mini-bench)",
    )
    p.add_argument(
        "--methods",
        metavar="LIST",
        default=None,
        help=f"comma-separated, from {','.join(bench.METHODS)} (default: all; ar always runs)",
    )
    p.add_argument(
        "--exit-layer",
        metavar="L",
        type=int,
        default=DEFAULT_EXIT_LAYER,
        help="exit layer of kangaroo, kangaroo-noadapter and hf-earlyexit (default: %(default)s)",
    )


def _add_sweep_args(p: argparse.ArgumentParser):
    """--sweep and --sweep-limit; the swept values are bench's."""
    layers, etas, gammas = bench.SWEEP_EXIT_LAYERS, bench.SWEEP_THRESHOLDS, bench.SWEEP_MAX_DRAFTS
    p.add_argument(
        "--sweep",
        choices=bench.SWEEPS,
        default=None,
        help=f"instead of the methods, settings between two ar runs: exit-layer = kangaroo at exit layers "
        f"{layers[0]}..{layers[-1]} (at --threshold, --max-draft); threshold = kangaroo at eta "
        f"{etas[0]}..{etas[-1]} x gamma {gammas[0]}..{gammas[-1]} (at --exit-layer); tree = "
        f"kangaroo-tree and kangaroo+lookup at node budget {bench.SWEEP_NODE_BUDGETS} x depth "
        f"{bench.SWEEP_DEPTHS} x top-k {bench.SWEEP_TOP_KS}",
    )
    p.add_argument(
        "--sweep-limit",
        metavar="N",
        type=int,
        default=bench.SWEEP_LIMIT,
        help="questions per category in a sweep (default: %(default)s)",
    )


def _add_extras_args(p: argparse.ArgumentParser):
    """--trace and --costs: measured after a benchmark run, with its model and its rounds."""
    p.add_argument(
        "--trace",
        action="store_true",
        help="also record every draft of kangaroo at eta 0 (confidence, accepted) -> OUT/draft_trace.csv",
    )
    p.add_argument(
        "--costs",
        action="store_true",
        help="also time each decoding step (full, draft, shallow, verify over 1..128 rows) of this model "
        "and, on a GPU, of a Vicuna-7B-shaped model -> OUT/step_times.csv, and project the run's "
        "rounds of every speculative method onto the 7B shape -> OUT/projection_7b.csv "
        "(a projection, labelled so)",
    )


def _speculative(method: str) -> bool:
    return METHOD_TABLE[method].speculative


def run_bench(args: argparse.Namespace) -> int:
    methods = _check_args(args)
    options = {
        m: decode_options(args, bench.engine_method(m), max_new_tokens=args.max_new_tokens) for m in bench.OUR_METHODS
    }  # validated before the model loads
    if args.costs and not any(m in bench.OUR_METHODS and _speculative(m) for m in methods):
        raise ValueError("--costs projects the rounds of the speculative methods: add one to --methods")
    questions = load_questions(text_file(args.questions)) if args.questions else None
    model = load_model_for(args)
    chain = options[DEFAULT_METHOD]  # the paper's chain: the exit-layer sweep and --trace run it
    if args.sweep:
        rows = _sweep(args, model, questions, chain)
    else:
        result = bench.benchmark(
            model,
            questions,
            methods,
            args.out,
            args.exit_layer,
            max_new_tokens=args.max_new_tokens,
            hf_limit=args.hf_limit,
            options=options,
            resume=args.resume,
        )
        rows = result.rows
        _bench_extras(args, model, questions, chain, result)
    if args.json:  # one JSON object, as every command prints: the rows of summary.csv (or of the sweep's CSV)
        print(json.dumps({"out": args.out, "rows": rows}))
    else:
        print(bench.sweep_markdown(rows) if args.sweep else bench.summary_markdown(rows))
        print(f"\nresults written under {args.out}")
    return 0


def _check_args(args: argparse.Namespace) -> tuple[str, ...]:
    """The methods to run (ar first); a ValueError for options that do not go together."""
    if args.sweep and args.resume:
        raise ValueError("--resume continues a benchmark run; a sweep writes its CSV row by row: run it again")
    if args.sweep and (args.methods is not None or args.hf_limit is not None or args.trace or args.costs):
        raise ValueError(
            "--methods, --hf-limit, --trace and --costs do not apply to --sweep "
            "(a sweep runs ar and the swept settings); run them without --sweep"
        )
    return bench.parse_methods(args.methods)  # None: every method; an empty list is refused


def _sweep(args: argparse.Namespace, model: Model, questions, chain: DecodeOptions) -> list[dict]:
    """The rows of --sweep's CSV."""
    common = dict(questions=questions, out=args.out, limit=args.sweep_limit, max_new_tokens=args.max_new_tokens)
    if args.sweep == "exit-layer":
        return bench.sweep_exit_layer(model, threshold=chain.threshold, max_draft=chain.max_draft, **common)
    if args.sweep == "threshold":
        return bench.sweep_threshold(model, exit_layer=args.exit_layer, **common)
    return bench.sweep_tree(model, exit_layer=args.exit_layer, **common)


def _bench_extras(args, model: Model, questions, chain: DecodeOptions, result):
    """--trace and --costs, after the benchmark (they reuse its model and its rounds)."""
    if not (args.trace or args.costs):
        return
    adapter, _ = bench.kangaroo_adapter(model, args.exit_layer)
    if args.trace:
        path = bench.draft_trace(
            model, adapter, questions, Path(args.out) / "draft_trace.csv", chain.max_draft, chain.max_new_tokens
        )
        print(f"draft trace written to {path}", file=sys.stderr)
    if args.costs:
        runs = {
            m: (method_layout(bench.engine_method(m), o), bench.recorded_rounds(result.records, m))
            for m, o in result.options.items()
            if _speculative(m)
        }
        n_questions = len({r.key for r in result.records if r.method == BASELINE})
        source = (
            f"the rounds of this run: {model.name}, {n_questions} questions, l={args.exit_layer}, options in run.json"
        )
        costs.measure(model, adapter, {m: r for m, r in runs.items() if r[1]}, args.out, source)
        print(f"step times (and, on a GPU, the 7B projection) written under {args.out}", file=sys.stderr)
