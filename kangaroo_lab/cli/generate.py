"""`kangaroo-lab generate`: one prompt, its tokens coloured by where they came from (or --json)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from ..adapter import DEFAULT_EXIT_LAYER
from ..decoding import GenerationResult, generate
from ..options import DEFAULTS
from ..proposers import DEFAULT_METHOD, METHOD_TABLE, METHODS
from ..render import legend, render, stats_line, use_colour
from .common import add_decoding_args, add_model_args, choose_adapter, decode_options, load_model_for


def add_generate_parser(subparsers):
    p = subparsers.add_parser(
        "generate",
        help="generate from one prompt, showing which tokens were drafted",
        description="Generate from one prompt with Kangaroo (default) or plain autoregressive decoding. "
        "On a terminal, accepted drafts are green and rejected drafts red, struck through.",
    )
    p.add_argument(
        "--prompt", metavar="TEXT", required=True, help="the user's message (the model's chat template is applied)"
    )
    add_model_args(p)
    p.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD, help="(default: %(default)s)")
    p.add_argument(
        "--exit-layer",
        metavar="L",
        type=int,
        default=None,
        help=f"the draft exits after this many layers (default: {DEFAULT_EXIT_LAYER}, or the --adapter's own)",
    )
    add_decoding_args(p)
    _add_sampling_args(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--adapter",
        metavar="PATH",
        help="a trained adapter folder (default: the one shipped for the model, else untrained)",
    )
    which.add_argument("--untrained", action="store_true", help="use a freshly initialised (untrained) adapter")
    p.set_defaults(run=run_generate)


def _add_sampling_args(p: argparse.ArgumentParser):
    """--max-new-tokens, --temperature, --top-p, --seed."""
    p.add_argument(
        "--max-new-tokens", metavar="N", type=int, default=DEFAULTS.max_new_tokens, help="(default: %(default)s)"
    )
    p.add_argument(
        "--temperature",
        metavar="T",
        type=float,
        default=DEFAULTS.temperature,
        help="0 = greedy; above 0, lossless speculative sampling (default: %(default)s)",
    )
    p.add_argument("--top-p", metavar="P", type=float, default=DEFAULTS.top_p, help="(default: %(default)s)")
    p.add_argument(
        "--seed", metavar="N", type=int, default=DEFAULTS.seed, help="seed for sampling (default: %(default)s)"
    )


def run_generate(args: argparse.Namespace) -> int:
    opts = decode_options(args, args.method)
    model = load_model_for(args)
    prompt_ids = model.encode(args.prompt)  # chat template applied; an empty prompt fails here, before any warning
    uses_adapter = METHOD_TABLE[args.method].needs_adapter
    choice = choose_adapter(model, args.adapter, args.exit_layer, args.untrained) if uses_adapter else None
    res = generate(model, prompt_ids, adapter=choice and choice.adapter, method=args.method, options=opts)
    if args.json:
        record = {"model": model.name, "adapter": choice and choice.describe(), "options": asdict(opts)}
        print(json.dumps({**record, **result_record(res)}))
    else:
        print_generation(res, model.decode)
    return 0


# ------------------------------------------------------------------------------------ output of one generation
def print_generation(res: GenerationResult, decode):
    """The text (coloured on a terminal, with a legend when there were drafts), then the stats line."""
    colour = use_colour(sys.stdout)
    if colour and res.trace:
        print(legend())
    print(render(res, decode, colour))
    print()
    print(stats_line(res))


def result_record(res: GenerationResult) -> dict:
    """The fields of a result that --json prints."""
    return {
        "method": res.method,
        "text": res.text,
        "token_ids": res.token_ids,
        "accept_lengths": res.accept_lengths,
        "mean_accepted": res.mean_accepted,
        "nodes_per_round": res.nodes_per_round,
        "syncs_per_round": res.syncs_per_round,
        "tokens_per_second": res.tokens_per_second,
        "seconds": res.seconds,
        "rounds": res.rounds,
        "draft_confidences": [None if c != c else c for c in res.draft_confidences],  # nan: lookup
        "draft_accepted": res.draft_accepted,
        "stop_reason": res.stop_reason,
    }
