"""The GPU work of issue 9 (trees, lookup, on-device rounds) on one GPU, in stages; results under --out.

    python scripts/gpu_trees.py --model GGUF --out DIR --stages check,sweep,bench,costs

check   every method of ours on 2 first turns per category: tokens/s, identical to ar, tokens /
        nodes / syncs per round, and how long the first call took (capture + compile) -> check.csv
sweep   `bench.sweep_tree`: pld lookup lengths; kangaroo-tree and kangaroo+lookup over node budget x
        depth and top-k; eta on the device and on the host; the chain with the device early exit
        -> bench/sweep_tree.csv
bench   `bench.benchmark` on the whole mini-bench with every method of ours (transformers' hf and
        hf-pld on --hf-limit questions per category). Each tree method runs with the fastest setting
        of the sweep (from this run's sweep_tree.csv, or --sweep-file), pld with its fastest lookup
        length, kangaroo with the paper's defaults. -> bench/summary.csv, answers, run.json, mismatches.csv
costs   step times (full, draft, shallow, verify over 1..128 rows) of SmolLM2 and of a Vicuna-7B-shaped
        engine, and the 7B projection of every method from the bench's answers -> bench/step_times.csv,
        bench/projection_7b.csv
"""

import argparse
import csv
import json
import time
from dataclasses import asdict, replace
from pathlib import Path


from kangaroo_lab import bench, costs, generate, load_adapter, load_model
from kangaroo_lab.questions import load_minibench
from kangaroo_lab.decoding import METHOD_DEFAULTS, method_layout

OURS = ("kangaroo", "pld", "kangaroo-tree", "kangaroo+lookup")


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def check(model, adapter, out: Path, max_new_tokens: int):
    qs = bench.limit_per_category(load_minibench(), 2)
    prompts = [q.turns[0] for q in qs]
    bench.reserve_cache(model, qs, max_new_tokens, 256)  # one cache size: no recapture between prompts
    rows = []
    t = time.perf_counter()
    ar = [generate(model, p, method="ar", max_new_tokens=max_new_tokens) for p in prompts[:1]]
    log(f"ar first call {time.perf_counter() - t:.1f} s")
    ar = [generate(model, p, method="ar", max_new_tokens=max_new_tokens) for p in prompts]
    for method in OURS:
        t = time.perf_counter()
        generate(model, prompts[0], adapter=adapter, method=method, max_new_tokens=max_new_tokens)
        first = time.perf_counter() - t
        res = [generate(model, p, adapter=adapter, method=method, max_new_tokens=max_new_tokens) for p in prompts]
        rows.append(summary_row(method, res, ar, first))
        log(json.dumps(rows[-1]))
    rows.append(summary_row("ar", ar, ar, 0.0))
    with open(out / "check.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]) + list(bench.environment(model)))
        w.writeheader()
        for r in rows:
            w.writerow({**r, **bench.environment(model)})


def summary_row(method, res, ar, first):
    tokens, seconds = sum(len(r.token_ids) for r in res), sum(r.seconds for r in res)
    ar_tps = sum(len(r.token_ids) for r in ar) / sum(r.seconds for r in ar)
    rounds = sum(r.rounds for r in res)
    return {
        "method": method,
        "prompts": len(res),
        "tokens_per_s": tokens / seconds,
        "speedup_vs_ar": tokens / seconds / ar_tps,
        "mean_accepted": sum(sum(r.accept_lengths) for r in res) / max(1, rounds),
        "nodes_per_round": sum(r.nodes_per_round * r.rounds for r in res) / max(1, rounds),
        "syncs_per_round": sum(r.syncs for r in res) / max(1, rounds) if method != "ar" else 1.0,
        "identical": sum(a.token_ids == b.token_ids for a, b in zip(res, ar)),
        "first_call_s": first,
    }


def sweep_settings():
    s = [{"method": "pld", "lookup_tokens": n} for n in (8, 12, 16, 24, 32)]
    tree = [{"node_budget": b, "max_draft": d, "top_k": 4} for b in (16, 32, 64) for d in (2, 3, 4)]
    tree += [{"node_budget": 32, "max_draft": 3, "top_k": k} for k in (2, 8)]
    tree += [{"node_budget": 32, "max_draft": 6, "top_k": 4, "threshold": t, "early_exit": "host"} for t in (0.1, 0.3)]
    tree += [{"node_budget": 32, "max_draft": 3, "top_k": 4, "threshold": 0.1, "early_exit": "device"}]
    s += [{"method": "kangaroo-tree", **t} for t in tree]
    hybrid = [
        {"node_budget": b, "max_draft": d, "top_k": 4, "lookup_tokens": 16} for b in (24, 32, 48) for d in (1, 2, 3)
    ]
    hybrid += [{"node_budget": 16, "max_draft": d, "top_k": 4, "lookup_tokens": 8} for d in (2, 3)]
    hybrid += [{"node_budget": 32, "max_draft": 2, "top_k": k, "lookup_tokens": 16} for k in (2, 8)]
    hybrid += [
        {"node_budget": 32, "max_draft": 4, "top_k": 4, "lookup_tokens": 16, "threshold": t, "early_exit": "host"}
        for t in (0.1, 0.3)
    ]
    hybrid += [
        {"node_budget": 32, "max_draft": 2, "top_k": 4, "lookup_tokens": 16, "threshold": 0.1, "early_exit": "device"}
    ]
    s += [{"method": "kangaroo+lookup", **h} for h in hybrid]
    s += [{"method": "kangaroo", "early_exit": "device"}, {"method": "kangaroo"}]
    unique = {}
    for setting in s:  # settings whose budget leaves the same tree are run once
        opts = replace(METHOD_DEFAULTS[setting["method"]], **{k: v for k, v in setting.items() if k != "method"})
        key = (setting["method"], method_layout(setting["method"], opts), opts.threshold, opts.early_exit)
        unique.setdefault(key, setting)
    return list(unique.values())


def best_options(sweep_csv: Path) -> dict:
    """method -> DecodeOptions of its fastest sweep row (methods without rows keep their defaults)."""
    best = {}
    with open(sweep_csv) as f:
        for row in csv.DictReader(f):
            m = row["method"]
            if m == "ar" or not row["speedup_vs_ar"]:
                continue
            if m not in best or float(row["speedup_vs_ar"]) > float(best[m]["speedup_vs_ar"]):
                best[m] = row
    chosen = {}
    for m, row in best.items():
        if m == "kangaroo":
            continue  # the paper's chain keeps the paper's settings
        fields = {
            "threshold": float,
            "max_draft": int,
            "top_k": int,
            "node_budget": int,
            "lookup_tokens": int,
            "early_exit": str,
        }
        chosen[m] = replace(METHOD_DEFAULTS[m], **{k: t(row[k]) for k, t in fields.items() if row.get(k)})
        log(f"best {m}: {row['speedup_vs_ar']}x {asdict(chosen[m])}")
    return chosen


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--stages", default="check")
    ap.add_argument("--hf-limit", type=int, default=1)
    ap.add_argument("--hf-methods", default="hf,hf-pld")
    ap.add_argument("--sweep-file", default=None)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--limit", type=int, default=None, help="questions per category (bench; a test run)")
    args = ap.parse_args()
    out = Path(args.out)
    (out / "bench").mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    model = load_model(args.model, device=args.device)
    adapter = load_adapter(model)
    log(f"loaded {model.name} {model.dtype} in {time.perf_counter() - t:.1f} s on {bench.environment(model)['device']}")
    for stage in args.stages.split(","):
        t = time.perf_counter()
        if stage == "check":
            check(model, adapter, out, args.max_new_tokens)
        elif stage == "sweep":
            settings = sweep_settings()[: 4 if args.limit else None]
            rows = bench.sweep_tree(
                model, out=out / "bench", settings=settings, max_new_tokens=args.max_new_tokens, progress=False
            )
            print(bench.sweep_markdown(rows), flush=True)
        elif stage == "bench":
            sweep = Path(args.sweep_file) if args.sweep_file else out / "bench" / "sweep_tree.csv"
            options = bench.method_options(
                args.max_new_tokens, options=best_options(sweep) if sweep.is_file() else None
            )
            methods = list(bench.OUR_METHODS) + [m for m in args.hf_methods.split(",") if m]
            questions = bench.limit_per_category(load_minibench(), args.limit)
            result = bench.benchmark(
                model,
                questions,
                methods=methods,
                out=out / "bench",
                hf_limit=args.hf_limit,
                max_new_tokens=args.max_new_tokens,
                options=options,
                progress=False,
            )
            print(bench.summary_markdown(result.rows), flush=True)
            for m in result.mismatches:
                log("mismatch", json.dumps(m))
        elif stage == "costs":
            run = json.loads((out / "bench" / "run.json").read_text())
            runs = {}
            for m in OURS:
                path = out / "bench" / "answers" / f"{m}.jsonl"
                if path.is_file():
                    from kangaroo_lab.decoding import DecodeOptions

                    opts = DecodeOptions(**run["options"][m])
                    runs[m] = (method_layout(m, opts), bench.rounds_from_answers(path))
            source = f"the rounds of bench/answers ({model.name}, mini-bench, l=2; each method's options in run.json)"
            steps, proj = costs.measure(model, adapter, runs, out / "bench", source, progress=False)
            for r in steps:
                log(r["shape"], r["step"], r["tokens"], round(r["ms"], 3))
            for r in proj:
                log("projection", r["method"], r["category"], round(r["projected_speedup"], 3))
        else:
            raise SystemExit(f"unknown stage {stage}")
        log(f"stage {stage} done in {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
