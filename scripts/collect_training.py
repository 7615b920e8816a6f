"""Collect adapter training reports and curves into figures/data/ (CSV).

    python scripts/collect_training.py RUN_DIR [RUN_DIR ...] --shipped kangaroo_lab/assets/adapters/smollm2-135m-instruct [--append]

Each RUN_DIR holds report.json (+ curves.csv) as `train_adapter` writes them. A run is marked
shipped when an adapter with the same exit layer, variant, step count and training tokens is in
--shipped. With --append the runs are added to the CSVs already in --out (earlier sessions' runs,
whose folders are gone), and every row's shipped mark is set again.
"""

import argparse
import csv
import json
from pathlib import Path

ABLATION_FIELDS = [
    "exit_layer",
    "variant",
    "steps",
    "lr",
    "batch_size",
    "parameters",
    "top1",
    "expected_accept",
    "heldout_loss",
    *[f"accept_pos{i}" for i in range(1, 7)],
    "mean_accepted_eta0",
    "train_response_tokens",
    "tokens_seen",
    "minutes",
    "gpu_share",
    "shipped",
    "device",
    "torch",
    "transformers",
    "data",
    "unroll",
    "top1_pairs",
]


def shipped_key(r: dict) -> tuple:
    return int(r["exit_layer"]), r["variant"], int(r["steps"]), int(r["train_response_tokens"])


def row(report: dict, shipped: set) -> dict:
    return {
        "exit_layer": report["exit_layer"],
        "variant": report["variant"],
        "steps": report["steps"],
        "lr": report["config"]["lr"],
        "batch_size": report["config"]["batch_size"],
        "parameters": report["parameters"],
        "top1": report["heldout"]["top1"],
        "expected_accept": report["heldout"]["expected_accept"],
        "heldout_loss": report["heldout"]["loss"],
        **{f"accept_pos{i + 1}": v for i, v in enumerate(report["accept_by_position"])},
        "mean_accepted_eta0": report["mean_accepted_eta0"],
        "train_response_tokens": report["train_response_tokens"],
        "tokens_seen": report["tokens_seen"],
        "minutes": report["minutes"],
        "gpu_share": report.get("gpu_share", 1),  # trainings sharing the GPU at once (wall minutes stretch)
        "shipped": shipped_key(report) in shipped,
        "device": report["device"],
        "torch": report["versions"]["torch"],
        "transformers": report["versions"]["transformers"],
        "data": report.get("data", "templates"),
        "unroll": report["config"].get("unroll", 1),
        "top1_pairs": report["heldout"].get("top1_pairs", ""),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--shipped", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("figures/data"))
    ap.add_argument("--append", action="store_true", help="keep the rows already in --out")
    args = ap.parse_args()
    shipped = {shipped_key(json.loads(m.read_text())["training"]) for m in args.shipped.glob("*/adapter.json")}
    rows, curves = [], []
    if args.append:
        rows = list(csv.DictReader((args.out / "adapter_ablation.csv").open()))
        curves = list(csv.DictReader((args.out / "training_curves.csv").open()))
        for r in rows:
            r["shipped"] = shipped_key(r) in shipped
    for run in args.runs:
        report = json.loads((run / "report.json").read_text())
        rows.append(row(report, shipped))
        if (run / "curves.csv").is_file():
            for c in csv.DictReader((run / "curves.csv").open()):
                curves.append(
                    {
                        "exit_layer": report["exit_layer"],
                        "variant": report["variant"],
                        "steps_total": report["steps"],
                        "lr_max": report["config"]["lr"],
                        **c,
                        "device": report["device"],
                        "torch": report["versions"]["torch"],
                        "transformers": report["versions"]["transformers"],
                        "data": report.get("data", "templates"),
                        "unroll": report["config"].get("unroll", 1),
                    }
                )
    rows.sort(key=lambda r: (r["variant"] != "attention", int(r["exit_layer"]), -int(r["steps"])))
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "adapter_ablation.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=ABLATION_FIELDS)
        w.writeheader()
        w.writerows(rows)
    with (args.out / "training_curves.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for c in curves for k in c)))
        w.writeheader()
        w.writerows(curves)
    print(f"{len(rows)} runs, {len(curves)} curve points -> {args.out}")


if __name__ == "__main__":
    main()
