"""First GPU check of the CUDA-graph fast path (greedy): correctness against AR and speed, one card.

    python scripts/gpu_graphs_check.py --model GGUF --out DIR
"""

import argparse
import json
import time
from pathlib import Path

import torch
import transformers

from kangaroo_lab import generate, load_adapter, load_model
from kangaroo_lab.data import load_minibench
from kangaroo_lab.graphs import greedy_graphs


def step_times(model, adapter, max_draft, reps=50) -> dict:
    """Median ms of one replay of each captured step (positions in a cache already set up)."""
    ar, g = greedy_graphs(model, None, max_draft), greedy_graphs(model, adapter, max_draft)
    out = {}
    steps = {"ar_step": (ar, ar.ar_step), "draft_step": (g, g.draft_step),
             **{f"verify_{k}": (g, v) for k, v in enumerate(g.verify)}}
    for name, (g, step) in steps.items():
        times = []
        for _ in range(reps):
            g.pos.fill_(300), g.round_pos.fill_(300), g.slot.zero_()
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            step()
            b.record()
            torch.cuda.synchronize()
            times.append(a.elapsed_time(b))
        out[name] = sorted(times)[len(times) // 2]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--questions", type=int, default=12)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    args = ap.parse_args()
    model = load_model(args.model, device="cuda")
    adapter = load_adapter(model)
    prompts = [q.turns[0] for q in load_minibench()[:: max(1, 60 // args.questions)]][: args.questions]
    t = time.perf_counter()
    for graphs in (False, True):  # warm-up, and capture the graphs
        generate(model, prompts[0], method="ar", max_new_tokens=32, cuda_graphs=graphs)
        generate(model, prompts[0], adapter=adapter, max_new_tokens=32, cuda_graphs=graphs)
    warm = time.perf_counter() - t
    runs = {}
    for name, kw in {"ar-eager": dict(method="ar", cuda_graphs=False), "ar-graphs": dict(method="ar", cuda_graphs=True),
                     "kangaroo-eager": dict(adapter=adapter, cuda_graphs=False),
                     "kangaroo-graphs": dict(adapter=adapter, cuda_graphs=True)}.items():
        runs[name] = [generate(model, p, max_new_tokens=args.max_new_tokens, **kw) for p in prompts]
    summary = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
               "transformers": transformers.__version__, "questions": len(prompts),
               "max_new_tokens": args.max_new_tokens, "warmup_and_capture_s": warm, "methods": {}}
    ar = runs["ar-graphs"]
    for name, res in runs.items():
        tokens, seconds = sum(len(r.token_ids) for r in res), sum(r.seconds for r in res)
        summary["methods"][name] = {
            "tokens_per_s": tokens / seconds, "mean_accepted": sum(sum(r.accept_lengths) for r in res) / max(1, sum(r.rounds for r in res)),
            "identical_to_ar_graphs": sum(r.token_ids == a.token_ids for r, a in zip(res, ar)),
            "identical_to_ar_eager": sum(r.token_ids == a.token_ids for r, a in zip(res, runs["ar-eager"]))}
    for name, m in summary["methods"].items():
        print(f"{name:16s} {m['tokens_per_s']:8.1f} tok/s  mean accepted {m['mean_accepted']:.2f}  "
              f"identical to ar-graphs {m['identical_to_ar_graphs']}/{len(prompts)}, to ar-eager {m['identical_to_ar_eager']}")
    with torch.inference_mode():
        summary["step_ms"] = step_times(model, adapter, 6)
    print(json.dumps(summary["step_ms"]))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.out, "graphs_check.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
