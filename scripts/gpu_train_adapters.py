"""Self-distil SmolLM2's answers and train the shipped adapters on one GPU (issue: train the adapter).

Stages, each one device call (a call may last 10 minutes; /tmp/kl survives between calls):

    python scripts/gpu_train_adapters.py distill --model GGUF --work /tmp/kl --out $OUT
    python scripts/gpu_train_adapters.py train --model GGUF --work /tmp/kl --out $OUT --runs 2:attention 1:attention

`train` writes each adapter to WORK/adapters/l{L}-{variant}/ and packs the call's adapters into
OUT/adapters-<first run>.tar, with the reports and curves.
"""

import argparse
import json
import tarfile
import time
from pathlib import Path


from kangaroo_lab import load_model
from kangaroo_lab.data import self_distill, training_prompts
from kangaroo_lab.training import TrainConfig, load_corpus, train_adapter


def distill(args, model):
    t0 = time.perf_counter()
    corpus = Path(args.work) / "corpus.jsonl"
    self_distill(model, training_prompts(args.prompts), corpus, max_new_tokens=256, batch_size=args.batch_size)
    examples = load_corpus(corpus, model)
    stats = {"prompts": args.prompts, "examples": len(examples), "minutes": (time.perf_counter() - t0) / 60,
             "response_tokens": sum(len(e.response_ids) for e in examples),
             "device": str(model.device)}
    print(json.dumps(stats))
    Path(args.out, "distill.json").write_text(json.dumps(stats, indent=1))


def train(args, model):
    corpus = Path(args.work) / "corpus.jsonl"
    done = []
    for run in args.runs:
        layer, variant = run.split(":")
        tag = f"l{layer}-{variant.replace('+', '-')}"
        config = TrainConfig(exit_layer=int(layer), variant=variant, steps=args.steps, batch_size=args.batch_size,
                             lr=args.lr, accept_prompts=12, accept_tokens=64)
        adapter = train_adapter(model, corpus, Path(args.work) / "adapters" / tag, config)
        r = adapter.meta.training
        print(tag, json.dumps({k: r[k] for k in ("heldout", "accept_by_position", "mean_accepted_eta0", "minutes",
                                                  "tokens_seen", "train_response_tokens")}), flush=True)
        done.append(tag)
    with tarfile.open(Path(args.out) / f"adapters-{done[0]}.tar", "w") as tar:
        for tag in done:
            tar.add(Path(args.work) / "adapters" / tag, arcname=tag)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("stage", choices=["distill", "train"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--work", default="/tmp/kl")
    ap.add_argument("--out", required=True)
    ap.add_argument("--prompts", type=int, default=6000)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--steps", type=int, default=TrainConfig.steps)
    ap.add_argument("--lr", type=float, default=TrainConfig.lr)
    ap.add_argument("--runs", nargs="*", default=["2:attention"])
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    model = load_model(args.model, device=args.device)
    if args.stage == "distill":
        args.batch_size = args.batch_size or 256
        distill(args, model)
    else:
        args.batch_size = args.batch_size or TrainConfig.batch_size
        train(args, model)


if __name__ == "__main__":
    main()
