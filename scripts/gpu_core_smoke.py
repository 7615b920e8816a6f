"""GPU smoke run of the core (issue: lossless double-early-exit decoding).

Greedy `kangaroo` (untrained adapter, exit layer 2) vs `ar` on SmolLM2-135M-Instruct, 10 prompts,
128 new tokens, in bf16 and in fp32 on one GPU. For every mismatch, the position where the two
outputs diverge and the target's top-2 logit gap there (recomputed by a plain full forward pass).

    python scripts/gpu_core_smoke.py --model /path/SmolLM2-135M-Instruct.Q4_1.gguf --out results/
"""

import argparse
import json
import platform
from pathlib import Path

import torch
import transformers

from kangaroo_lab import generate, load_model, new_adapter

PROMPTS = [
    "What is the capital of Australia, and why was it chosen?",
    "Write a short poem about autumn leaves.",
    "Explain how a refrigerator keeps food cold.",
    "A farmer has 17 sheep and buys 8 more, then sells 5. How many sheep does he have?",
    "Translate into French: The library opens at nine o'clock every morning.",
    "Give three tips for staying focused while studying.",
    "Summarise the water cycle in four sentences.",
    "What is the difference between a virus and a bacterium?",
    "Write a Python function that reverses a string.",
    "Describe a sunrise over the ocean to someone who has never seen one.",
]


def top2_gap(model, prefix: list[int]) -> tuple[float, int, int]:
    """Target logits after `prefix` by one uncached full pass: (top1 - top2 logit, top1 id, top2 id)."""
    with torch.inference_mode():
        states = model.engine.hidden_states(torch.tensor([prefix], device=model.device))
        logits = model.engine.head(states[-1])[0, -1].float()
    v, i = logits.topk(2)
    return float(v[0] - v[1]), int(i[0]), int(i[1])


def run(model_path: str, dtype: torch.dtype, max_new_tokens: int) -> dict:
    model = load_model(model_path, device="cuda", dtype=dtype)
    adapter = new_adapter(model, exit_layer=2)
    generate(model, PROMPTS[0], adapter=adapter, max_new_tokens=16)  # warm-up
    rows = []
    for prompt in PROMPTS:
        ar = generate(model, prompt, method="ar", max_new_tokens=max_new_tokens)
        kg = generate(model, prompt, adapter=adapter, method="kangaroo", max_new_tokens=max_new_tokens)
        row = {
            "prompt": prompt,
            "identical": ar.token_ids == kg.token_ids,
            "ar_tokens": len(ar.token_ids),
            "kangaroo_tokens": len(kg.token_ids),
            "ar_tok_s": ar.tokens_per_second,
            "kangaroo_tok_s": kg.tokens_per_second,
            "mean_accepted": kg.mean_accepted,
        }
        if not row["identical"]:
            i = next(
                (j for j, (a, b) in enumerate(zip(ar.token_ids, kg.token_ids)) if a != b),
                min(len(ar.token_ids), len(kg.token_ids)),
            )
            gap, top1, top2 = top2_gap(model, ar.prompt_ids + ar.token_ids[:i])
            row.update(
                diverge_at=i,
                top2_logit_gap=gap,
                ar_token=ar.token_ids[i] if i < len(ar.token_ids) else None,
                kangaroo_token=kg.token_ids[i] if i < len(kg.token_ids) else None,
                uncached_top1=top1,
                uncached_top2=top2,
            )
        rows.append(row)
    return {"dtype": str(dtype), "identical": sum(r["identical"] for r in rows), "prompts": len(rows), "rows": rows}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", default="results")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    args = ap.parse_args()
    out = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "max_new_tokens": args.max_new_tokens,
        "adapter": "untrained, exit layer 2",
        "runs": [],
    }
    for dtype in (torch.bfloat16, torch.float32):
        r = run(args.model, dtype, args.max_new_tokens)
        out["runs"].append(r)
        print(f"{r['dtype']}: identical {r['identical']}/{r['prompts']}")
        for row in r["rows"]:
            if not row["identical"]:
                print(
                    f"  diverge at {row['diverge_at']}: top-2 gap {row['top2_logit_gap']:.4f} "
                    f"(ar {row['ar_token']}, kangaroo {row['kangaroo_token']}) {row['prompt'][:40]!r}"
                )
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.out, "core_gpu_smoke.json").write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "runs"}))


if __name__ == "__main__":
    main()
