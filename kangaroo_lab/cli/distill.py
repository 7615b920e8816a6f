"""`kangaroo-lab distill`: the target model answers prompts; its token ids are the adapter's training data."""

from __future__ import annotations

import argparse
import json

from ..distill import self_distill
from ..options import DEFAULTS, check_sampling
from ..questions import load_questions
from ..templates import DEFAULT_NUM_PROMPTS, training_prompts
from .common import add_model_args, load_model_for, text_file


def add_distill_parser(subparsers):
    p = subparsers.add_parser(
        "distill",
        help="let the model answer our training prompts: the adapter's training data",
        description="Self-distillation: the target model answers prompts (our template prompts by default, "
        "or --questions FILE, e.g. the real mix of `kangaroo-lab corpus`) with its chat template; "
        "token ids go to a JSONL corpus. Batched on our engine (static cache, CUDA graphs). Resumable.",
    )
    add_model_args(p)
    p.add_argument("--out", metavar="FILE", required=True, help="the corpus (JSONL) to write or resume")
    p.add_argument("--questions", metavar="FILE", help="Spec-Bench / ShareGPT / JSONL prompts instead of ours")
    p.add_argument(
        "--prompts",
        metavar="N",
        type=int,
        default=DEFAULT_NUM_PROMPTS,
        help="how many of our training prompts (default: %(default)s)",
    )
    p.add_argument(
        "--max-new-tokens", metavar="N", type=int, default=DEFAULTS.max_new_tokens, help="(default: %(default)s)"
    )
    p.add_argument("--batch-size", metavar="N", type=int, default=64, help="(default: %(default)s)")
    p.add_argument("--temperature", metavar="T", type=float, default=0.0, help="0 = greedy answers (default)")
    p.add_argument("--top-p", metavar="P", type=float, default=1.0, help="nucleus sampling (default: %(default)s)")
    p.add_argument(
        "--seed",
        metavar="S",
        type=int,
        default=0,
        help="sampling seed (default: %(default)s). The shipped adapters learned from greedy answers plus "
        "one sampled pass: --temperature 0.7 --top-p 0.95 --seed 1 into a second file",
    )
    p.add_argument(
        "--engine",
        choices=("ours", "transformers"),
        default="ours",
        help="our batched engine (default) or transformers' generate (slower; for comparison)",
    )
    p.set_defaults(run=run_distill)


def run_distill(args: argparse.Namespace) -> int:
    for name in ("prompts", "batch_size", "max_new_tokens"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    check_sampling(args.temperature, args.top_p, args.seed)  # before the model loads
    questions = load_questions(text_file(args.questions)) if args.questions else training_prompts(args.prompts)
    model = load_model_for(args)
    path = self_distill(
        model,
        questions,
        args.out,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
        engine=args.engine,
    )
    print(json.dumps({"corpus": str(path)}) if args.json else f"corpus written to {path}")
    return 0
