"""The speed work of issue 4 on one GPU, in stages; everything lands under --out.

Its results in figures/data/bench/ (graph_variants*.csv, rows_identity.csv, sweep_exit_layer.csv,
sweep_threshold.csv, draft_trace.csv) came from this script at commit e093f28 (the chain before
trees); it runs on today's API, where the trees' work lives in scripts/gpu_trees.py.

    python scripts/gpu_speed.py --model GGUF --out DIR --stages variants,bench,costs,sweeps

variants  the fast path's options side by side (eager graphs / compiled, natural / fixed rows):
          AR and Kangaroo tokens/s on mini-bench questions, identity with AR, step times
bench     `bench.benchmark` with every method (transformers' ones on --hf-limit questions per
          category), then the eta = 0 draft trace of every mini-bench question
costs     step times of SmolLM2 and of a Vicuna-7B-shaped engine (random fp16 weights), and the
          7B projection from the bench's Kangaroo rounds (needs the bench stage's answers)
sweeps    `bench.sweep_exit_layer` and `bench.sweep_threshold`
"""

import argparse
import json
import time
from pathlib import Path

import torch

from kangaroo_lab import generate, load_adapter, load_model
from kangaroo_lab import bench, costs, metrics
from kangaroo_lab.adapter import shipped_adapter_dir
from kangaroo_lab.questions import load_minibench
from kangaroo_lab.decoding import METHOD_DEFAULTS, method_layout
from kangaroo_lab.graphs import GraphOptions

VARIANTS = {
    "eager steps, natural rows": GraphOptions(fixed_rows=False, compile=False),
    "compiled, natural rows": GraphOptions(fixed_rows=False),
    "compiled, fixed rows": GraphOptions(fixed_rows=True),
}


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def variants(model, adapter, out: Path, n_questions: int, max_new_tokens: int):
    qs = load_minibench()[:: 60 // n_questions][:n_questions]
    prompts = [q.turns[0] for q in qs]
    rows, steps = [], []
    for name, options in VARIANTS.items():
        t = time.perf_counter()
        for method, kw in (("ar", {}), ("kangaroo", {"adapter": adapter})):
            generate(model, prompts[0], method=method, max_new_tokens=max_new_tokens, cuda_graphs=options, **kw)
        warm = time.perf_counter() - t
        res = {
            m: [
                generate(
                    model,
                    p,
                    method=m,
                    max_new_tokens=max_new_tokens,
                    cuda_graphs=options,
                    **({"adapter": adapter} if m == "kangaroo" else {}),
                )
                for p in prompts
            ]
            for m in ("ar", "kangaroo")
        }
        for m, rs in res.items():
            tokens, seconds = sum(len(r.token_ids) for r in rs), sum(r.seconds for r in rs)
            rounds = [n for r in rs for n in r.accept_lengths]
            nodes = [len(x.drafts) for r in rs for x in r.trace]  # per round: candidates verified
            rows.append(
                {
                    "variant": name,
                    "method": m,
                    "questions": len(rs),
                    "tokens_per_s": tokens / seconds,
                    "mean_accepted": sum(rounds) / len(rounds),
                    "nodes_per_round": metrics.mean(nodes),
                    "identical_to_ar": sum(a.token_ids == b.token_ids for a, b in zip(rs, res["ar"])),
                    "warmup_compile_capture_s": warm,
                }
            )
            log(json.dumps(rows[-1]))
        with torch.inference_mode():
            t = time.perf_counter()
            st = costs.step_times(model, adapter, rows=range(1, 10), options=options, shape="smollm2-135m")
        for r in st:
            r["variant"] = name
        steps += st
        log(
            name,
            "step ms:",
            {f"{r['step']}{r['tokens']}": round(r["ms"], 3) for r in st},
            f"({time.perf_counter() - t:.1f} s incl. capture)",
        )
    env = metrics.environment(model)
    for r in rows:
        r.update(env)
    bench.write_csv(out / "graph_variants.csv", rows, list(rows[0]))
    bench.write_csv(out / "graph_variants_steps.csv", steps, list(steps[0]))


def run_bench(model, adapter, out: Path, hf_limit: int, max_new_tokens: int):
    t = time.perf_counter()
    result = bench.benchmark(model, out=out / "bench", hf_limit=hf_limit, max_new_tokens=max_new_tokens, progress=False)
    log(f"bench {time.perf_counter() - t:.0f} s")
    print(bench.summary_markdown(result.rows), flush=True)
    t = time.perf_counter()
    bench.draft_trace(
        model, adapter, out=out / "bench" / "draft_trace.csv", max_new_tokens=max_new_tokens, progress=False
    )
    log(f"draft trace {time.perf_counter() - t:.0f} s")


def extras(model, adapter, out: Path, max_new_tokens: int):
    """On the first turn of every mini-bench question: fixed rows (bf16 identity by construction)
    against the default natural rows, and the attention+ffn adapter against the default one."""
    prompts = [q.turns[0] for q in load_minibench()]
    ffn = load_adapter(model, shipped_adapter_dir(model.name, 2, "attention+ffn"))
    settings = {
        "ar, natural rows": ("ar", None, GraphOptions()),
        "kangaroo, natural rows": ("kangaroo", adapter, GraphOptions()),
        "ar, fixed rows": ("ar", None, GraphOptions(fixed_rows=True)),
        "kangaroo, fixed rows": ("kangaroo", adapter, GraphOptions(fixed_rows=True)),
        "kangaroo attention+ffn, natural rows": ("kangaroo", ffn, GraphOptions()),
    }
    res, rows = {}, []
    for name, (method, a, options) in settings.items():
        generate(model, prompts[0], method=method, adapter=a, max_new_tokens=max_new_tokens, cuda_graphs=options)
        res[name] = [
            generate(model, p, method=method, adapter=a, max_new_tokens=max_new_tokens, cuda_graphs=options)
            for p in prompts
        ]
    for name, rs in res.items():
        ar = res["ar, fixed rows" if "fixed" in name else "ar, natural rows"]
        tokens, seconds = sum(len(r.token_ids) for r in rs), sum(r.seconds for r in rs)
        rounds = [n for r in rs for n in r.accept_lengths]
        rows.append(
            {
                "setting": name,
                "prompts": len(rs),
                "tokens_per_s": tokens / seconds,
                "mean_accepted": sum(rounds) / len(rounds),
                "identical_to_ar_same_rows": sum(a.token_ids == b.token_ids for a, b in zip(rs, ar)),
                "identical_to_ar_natural": sum(a.token_ids == b.token_ids for a, b in zip(rs, res["ar, natural rows"])),
                **metrics.environment(model),
            }
        )
        log(json.dumps(rows[-1]))
    bench.write_csv(out / "extras.csv", rows, list(rows[0]))


def run_costs(model, adapter, out: Path):
    """Step times and the 7B projection from the bench stage's kangaroo answers (as `bench --costs`)."""
    rounds = bench.rounds_from_answers(out / "bench" / "answers" / "kangaroo.jsonl")
    chain = method_layout("kangaroo", METHOD_DEFAULTS["kangaroo"])
    steps, proj = costs.measure(
        model,
        adapter,
        {"kangaroo": (chain, rounds)},
        out / "bench",
        source="kangaroo rounds in bench/answers (SmolLM2-135M, mini-bench, l=2, eta 0.6, gamma 6)",
    )
    for r in steps:
        log(r["shape"], r["step"], r["tokens"], round(r["ms"], 3))
    for r in proj:
        log("projection", r["method"], r["category"], round(r["projected_speedup"], 3))


def run_sweeps(model, out: Path, max_new_tokens: int):
    t = time.perf_counter()
    bench.sweep_exit_layer(model, out=out / "bench", max_new_tokens=max_new_tokens, progress=False)
    log(f"exit-layer sweep {time.perf_counter() - t:.0f} s")
    t = time.perf_counter()
    bench.sweep_threshold(
        model,
        out=out / "bench",
        max_new_tokens=max_new_tokens,
        progress=False,
        thresholds=(0.0, 0.2, 0.4, 0.6, 0.8),
        max_drafts=(2, 4, 6, 8, 10),
    )
    log(f"threshold sweep {time.perf_counter() - t:.0f} s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--stages", default="variants")
    ap.add_argument("--questions", type=int, default=10)
    ap.add_argument("--hf-limit", type=int, default=1)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    model = load_model(args.model, device="cuda")
    adapter = load_adapter(model)
    log(f"loaded {model.name} {model.dtype} in {time.perf_counter() - t:.1f} s on {torch.cuda.get_device_name()}")
    for stage in args.stages.split(","):
        t = time.perf_counter()
        if stage == "variants":
            variants(model, adapter, out, args.questions, args.max_new_tokens)
        elif stage == "bench":
            run_bench(model, adapter, out, args.hf_limit, args.max_new_tokens)
        elif stage == "extras":
            extras(model, adapter, out, args.max_new_tokens)
        elif stage == "costs":
            run_costs(model, adapter, out)
        elif stage == "sweeps":
            run_sweeps(model, out, args.max_new_tokens)
        else:
            raise SystemExit(f"unknown stage {stage}")
        log(f"stage {stage} done in {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
