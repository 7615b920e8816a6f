"""Score adapters on the same held-out answers, teacher-forced: top-1 agreement with the target
(overall and per category), expected acceptance E[sum min(p, q)] and two-in-a-row agreement.

    python scripts/eval_adapters.py --corpus real.npz --sequences 256 --out figures/data/adapters/heldout_eval.csv \
        shipped=kangaroo_lab/assets/adapters/smollm2-135m-instruct/l2-attention new=/path/to/l2-real-u1

The held-out answers are the ones `train_adapter` keeps out of training (same split, same shuffle),
so every adapter trained on this corpus is scored on answers it never saw; adapters trained on
other data see these answers for the first time too. One forward pass of the target per batch
serves every adapter (`training.evaluate_many`). Runs on a CPU (minutes) or a GPU.
"""

import argparse
import csv
import random
import sys
import time
from pathlib import Path

from kangaroo_lab import load_adapter, load_model
from kangaroo_lab.bench import environment
from kangaroo_lab.training import TrainConfig, evaluate_many, load_corpus, split_corpus


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("adapters", nargs="+", metavar="NAME=FOLDER")
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--sequences", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    config = TrainConfig()
    model = load_model(args.model)
    examples = [e for e in load_corpus(args.corpus, model) if len(e.prompt_ids) + 8 <= config.max_len]
    _, held = split_corpus(examples, config.heldout)
    held = random.Random(config.seed).sample(held, len(held))[: args.sequences]  # as train_adapter does
    adapters = {name: load_adapter(model, folder) for name, folder in (a.split("=", 1) for a in args.adapters)}
    t0 = time.perf_counter()
    scores = evaluate_many(model, adapters, held, args.batch_size, config.max_len, by_category=True)
    rows = []
    for name, s in scores.items():
        base = {
            "adapter": name,
            "exit_layer": adapters[name].exit_layer,
            "variant": adapters[name].variant,
            "sequences": len(held),
            **environment(model),  # device and library versions
        }
        rows.append(
            {
                **base,
                "category": "overall",
                "top1": s["top1"],
                "expected_accept": s["expected_accept"],
                "top1_pairs": s["top1_pairs"],
            }
        )
        rows += [{**base, "category": c, "top1": v} for c, v in s["top1_by_category"].items()]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(
            f,
            [
                "adapter",
                "exit_layer",
                "variant",
                "category",
                "top1",
                "expected_accept",
                "top1_pairs",
                "sequences",
                "device",
                "versions",
            ],
        )
        w.writeheader()
        w.writerows(rows)
    print(f"{len(adapters)} adapters x {len(held)} answers in {time.perf_counter() - t0:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
