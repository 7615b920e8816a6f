"""`kangaroo-lab train`: a Kangaroo adapter trained on a self-distilled corpus (`kangaroo-lab distill`)."""

from __future__ import annotations

import argparse
import json

from ..adapter import VARIANTS
from ..training import TrainConfig, train_adapter
from .common import add_model_args, load_model_for, text_file

TRAIN_OPTIONS = ("steps", "batch_size", "max_len", "lr", "warmup", "eval_every", "seed", "unroll", "unroll_decay")
"""TrainConfig fields the CLI exposes (unroll: multi-step training, see training.py)."""


def add_train_parser(subparsers):
    d = TrainConfig()
    p = subparsers.add_parser(
        "train",
        help="train an adapter on a self-distilled corpus",
        description="Train a Kangaroo adapter (soft cross-entropy against the full model's next-token "
        "distribution). Data-parallel with `accelerate launch --num_processes N -m kangaroo_lab.cli train ...`.",
    )
    add_model_args(p)
    p.add_argument(
        "--data",
        metavar="FILE",
        nargs="+",
        required=True,
        help="a corpus from `kangaroo-lab distill` (JSONL or NPZ); several are read as one "
        "(e.g. greedy and sampled answers to the same prompts)",
    )
    p.add_argument("--out", metavar="DIR", required=True, help="where the adapter, its report and curves go")
    p.add_argument("--exit-layer", metavar="L", type=int, default=d.exit_layer, help="(default: %(default)s)")
    p.add_argument("--variant", choices=VARIANTS, default=d.variant, help="(default: %(default)s)")
    for name in TRAIN_OPTIONS:
        value = getattr(d, name)
        p.add_argument("--" + name.replace("_", "-"), type=type(value), default=value, help="(default: %(default)s)")
    p.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> int:
    config = TrainConfig(
        exit_layer=args.exit_layer, variant=args.variant, **{k: getattr(args, k) for k in TRAIN_OPTIONS}
    )
    model = load_model_for(args)
    data = [f if str(f).endswith(".npz") else text_file(f) for f in args.data]  # an archive is binary
    adapter = train_adapter(model, data if len(data) > 1 else data[0], args.out, config)
    report = adapter.meta.training
    if not report:  # a secondary process of a data-parallel run: the main process reports
        return 0
    summary = {k: report[k] for k in ("heldout", "accept_by_position", "tokens_seen", "minutes")}
    print(
        json.dumps({"adapter": args.out, **summary})
        if args.json
        else f"adapter saved to {args.out}: held-out top-1 {report['heldout']['top1']:.3f}, "
        f"expected acceptance {report['heldout']['expected_accept']:.3f}"
    )
    return 0
