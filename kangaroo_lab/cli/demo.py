"""`kangaroo-lab demo`: greedy autoregressive decoding vs Kangaroo (chain, and our fastest method) on the
bundled prompts: speed, mean accepted tokens, and a check that every method's text equals AR's."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace
from importlib.resources import files

import torch
from tqdm import tqdm

from ..decoding import GenerationResult, generate
from ..models import Model
from ..options import DecodeOptions
from ..proposers import BASELINE, DEFAULT_METHOD, HEADLINE_METHOD
from .common import AdapterChoice, add_model_args, choose_adapter, decode_options, environment, load_model_for
from .generate import print_generation, result_record

DEMO_PROMPTS = "demo_prompts.json"  # in kangaroo_lab/assets/
DEMO_MAX_NEW_TOKENS = 64  # short answers keep the demo under a minute on a CPU
DEMO_METHODS = (BASELINE, DEFAULT_METHOD, HEADLINE_METHOD)  # the baseline, the paper's method, our fastest
WARMUP_TOKENS = 8
NEXT_STEPS = (
    'Next: `kangaroo-lab generate --prompt "..."` to watch drafts being accepted and rejected,\n'
    "      `kangaroo-lab bench --help` to measure every method side by side, README.md for the method."
)


def add_demo_parser(subparsers):
    p = subparsers.add_parser(
        "demo",
        help="autoregressive vs Kangaroo on a few bundled prompts",
        description="Greedy autoregressive decoding vs Kangaroo on a few bundled prompts: speed, mean "
        "accepted tokens, and a check that both produce identical text.",
    )
    add_model_args(p)
    p.add_argument(
        "--max-new-tokens", metavar="N", type=int, default=DEMO_MAX_NEW_TOKENS, help="per answer (default: %(default)s)"
    )
    p.set_defaults(run=run_demo)


def demo_prompts() -> list[dict]:
    """The bundled demo prompts: [{"name": ..., "prompt": ...}, ...]."""
    return json.loads((files("kangaroo_lab") / "assets" / DEMO_PROMPTS).read_text())


def run_demo(args: argparse.Namespace) -> int:
    opts = {m: decode_options(args, m, temperature=0.0) for m in DEMO_METHODS}  # greedy: every method must match AR
    model = load_model_for(args)
    choice = choose_adapter(model)
    if not args.json:
        env = demo_environment(model)
        print("device: {device} | dtype: {dtype} | {versions}".format(**env))
        print(f"model: {model.name} | adapter: {choice.label} | max new tokens: {args.max_new_tokens}\n")
    prompts = demo_prompts()
    for method in DEMO_METHODS:  # so that the first timing is not a cold start
        warm = replace(opts[method], max_new_tokens=WARMUP_TOKENS)
        generate(model, prompts[0]["prompt"], choice.adapter, method, warm)
    runs = _run_prompts(model, choice, opts, prompts)
    if args.json:
        print(json.dumps(_demo_record(model, choice, opts, runs)))
    else:
        _print_demo(model, choice, runs)
    return 0


def _run_prompts(model: Model, choice: AdapterChoice, opts: dict[str, DecodeOptions], prompts: list[dict]) -> list:
    """[(prompt, result, identical to AR's tokens: None for AR itself)], every method on every prompt."""
    runs = []
    for p in tqdm(prompts, desc=" + ".join(DEMO_METHODS), unit="prompt", file=sys.stderr, leave=False):
        ar = generate(model, p["prompt"], method=BASELINE, options=opts[BASELINE])
        runs.append((p, ar, None))
        for method in DEMO_METHODS[1:]:
            res = generate(model, p["prompt"], choice.adapter, method, opts[method])
            runs.append((p, res, res.token_ids == ar.token_ids))
    return runs


def _overall(results: list[GenerationResult]) -> dict:
    tokens = sum(len(r.token_ids) for r in results)
    rounds = sum(r.rounds for r in results)
    return {
        "new_tokens": tokens,
        "tokens_per_second": tokens / sum(r.seconds for r in results),
        "mean_accepted": sum(sum(r.accept_lengths) for r in results) / max(1, rounds),
    }


def _by_method(runs) -> dict[str, list[GenerationResult]]:
    methods = dict.fromkeys(res.method for _, res, _ in runs)
    return {m: [res for _, res, _ in runs if res.method == m] for m in methods}


def _demo_record(model: Model, choice: AdapterChoice, opts: dict[str, DecodeOptions], runs) -> dict:
    overall = {m: _overall(rs) for m, rs in _by_method(runs).items()}
    ar = overall[BASELINE]["tokens_per_second"]
    return {
        "environment": demo_environment(model),
        "model": model.name,
        "adapter": choice.describe(),
        "options": {m: asdict(o) for m, o in opts.items()},
        "runs": [
            {"name": p["name"], "prompt": p["prompt"], "identical_to_ar": same, **result_record(res)}
            for p, res, same in runs
        ],
        "overall": overall,
        "speedup": {m: o["tokens_per_second"] / ar for m, o in overall.items() if m != BASELINE},
    }


# ------------------------------------------------------------------------------------ the printed report
def _table_row(name: str, method: str, tokens: int, tps: float, accepted: float, same: str) -> str:
    return f"{name:<20} {method:<16} {tokens:>10} {tps:>9.1f} {accepted:>14.2f}  {same}"


def _print_demo(model: Model, choice: AdapterChoice, runs):
    overall = {m: _overall(rs) for m, rs in _by_method(runs).items()}
    _print_table(runs, overall)
    ar = overall[BASELINE]["tokens_per_second"]
    print()
    for method, o in overall.items():
        if method != BASELINE:
            print(f"{method} runs at {o['tokens_per_second'] / ar:.2f}x the speed of autoregressive decoding here.")
    _print_notes(model, choice)
    _print_sample(model, runs)
    print(f"\n{NEXT_STEPS}")


def _print_table(runs, overall: dict[str, dict]):
    """One row per (prompt, method), then one overall row per method."""
    yes_no = {None: "-", True: "yes", False: "NO"}
    print(f"{'prompt':<20} {'method':<16} {'new tokens':>10} {'tokens/s':>9} {'mean accepted':>14}  identical to AR")
    for p, res, same in runs:
        print(
            _table_row(
                p["name"], res.method, len(res.token_ids), res.tokens_per_second, res.mean_accepted, yes_no[same]
            )
        )
    print("-" * 87)
    for method, o in overall.items():
        same = [s for _, r, s in runs if r.method == method and s is not None]
        print(
            _table_row(
                "overall",
                method,
                o["new_tokens"],
                o["tokens_per_second"],
                o["mean_accepted"],
                f"{sum(same)}/{len(same)} yes" if same else "-",
            )
        )


def _print_notes(model: Model, choice: AdapterChoice):
    """What to make of the speeds: an untrained adapter; a CPU's arithmetic limit and its threads."""
    if choice.source == "untrained":
        print("The adapter is UNTRAINED: the output is still exact, but few drafts are accepted, so expect no speedup.")
    if model.device.type == "cpu":
        print(
            "On a CPU a step over many rows costs nearly as many times more (arithmetic, not memory, is the limit),\n"
            "so wide trees lose here; on a GPU they are nearly free (README, Results)."
        )
        print(
            f"Decoding used {torch.get_num_threads()} torch thread(s), half the cores: on a 2-core machine 2 threads\n"
            "ran faster when it was idle but many times slower next to any other busy process\n"
            "(models.default_cpu_threads; set KANGAROO_LAB_THREADS or OMP_NUM_THREADS to choose)."
        )


def _print_sample(model: Model, runs):
    """The speculative answer with the most tokens per round, coloured on a terminal."""
    p, res, _ = max((run for run in runs if run[1].method != BASELINE), key=lambda run: run[1].mean_accepted)
    print(f"\n{res.method}'s answer to the {p['name']} prompt, {res.mean_accepted:.2f} tokens per round:")
    print(f"> {p['prompt']}\n")
    print_generation(res, model.decode)


def demo_environment(model: Model) -> dict:
    """`metrics.environment` (device, versions: what every stored result names) and the model's dtype."""
    return environment(model) | {"dtype": str(model.dtype).removeprefix("torch.")}
