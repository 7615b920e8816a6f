"""What each decoding step costs, and what that predicts for a bigger model.

Kangaroo's speedup is a ratio of two costs per generated token:

    AR:        t_full                                       (one full step per token)
    Kangaroo:  sum over rounds (d * t_draft + t_verify(d))  /  tokens emitted
               d = drafts proposed in the round, tokens emitted = accepted drafts + 1

`step_times` measures t_full, t_draft and t_verify(k) by replaying the captured greedy steps
(`graphs.py`); `project` combines step times with the rounds a real run recorded (how many drafts,
how many accepted) to predict tokens/s. With the step times of a Vicuna-7B-shaped engine on random
weights (`shaped_model`; no 7B weights are reachable here) and the rounds measured on SmolLM2,
that is a PROJECTION of the paper's setting: the acceptance of a real 7B model with its own
adapter would differ, and the host's work between steps is left out (on the H200 it added about
0.15 ms per host sync to SmolLM2's 1.1 ms steps; against a 7B model's 4.6 ms steps it weighs less).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from .adapter import Adapter, new_adapter
from .engine import ModelConfig, Transformer
from .graphs import GraphOptions, greedy_graphs
from .models import Model, tiny_tokenizer

# Shapes of real models, to time our engine on random weights of that size.
SHAPES = {
    "vicuna-7b-shaped": ModelConfig(vocab_size=32000, dim=4096, n_layers=32, n_heads=32, n_kv_heads=32,
                                    ffn_dim=11008, norm_eps=1e-6, max_seq_len=2048),
}
STEP_COLUMNS = ("model", "shape", "step", "tokens", "ms", "device", "versions")
PROJECTION_COLUMNS = ("category", "rounds", "mean_accepted", "mean_drafts", "draft_ms", "verify_ms", "full_ms",
                      "projected_ar_tokens_per_s", "projected_kangaroo_tokens_per_s", "projected_speedup",
                      "source", "device", "versions")


def shaped_model(shape: str, device, dtype: torch.dtype = torch.float16, seed: int = 0) -> Model:
    """An engine shaped like `shape` (see SHAPES) with random N(0, 0.02) weights: for timing only."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose one of {sorted(SHAPES)}")
    config, device = SHAPES[shape], torch.device(device)
    with torch.device("meta"):
        engine = Transformer(config)
    engine = engine.to_empty(device=device).to(dtype)
    g = torch.Generator(device).manual_seed(seed)
    with torch.no_grad():
        for name, p in engine.named_parameters():
            p.fill_(1.0) if name.endswith("norm.weight") else p.normal_(0.0, 0.02, generator=g)
    engine.eval().requires_grad_(False)
    tok = tiny_tokenizer()
    return Model(shape, config, engine, tok, frozenset({tok.eos_token_id}), source=f"random weights, seed={seed}")


def step_times(model: Model, adapter: Adapter, max_draft: int = 8, options: GraphOptions = GraphOptions(),
               context: int = 512, reps: int = 30, shape: str | None = None) -> list[dict]:
    """Median ms of each captured greedy step, `context` tokens into the cache: the full step
    (AR, 1 token), the draft step (1 token) and verify(k) (k + 1 tokens) for k = 0..max_draft.

    On CUDA each replay is timed with CUDA events; elsewhere the same steps run eagerly under
    perf_counter (useful for tests, not as numbers)."""
    from .bench import environment

    size = -(-(context + max_draft + 2) // 256) * 256
    model.engine.setup_cache(size)
    adapter.setup_cache(size)
    with torch.inference_mode():
        ar = greedy_graphs(model, None, max_draft, options)
        kg = greedy_graphs(model, adapter, max_draft, options)
        steps = [("full", 1, ar, ar.ar_step), ("draft", 1, kg, kg.draft_step),
                 *[("verify", k + 1, kg, step) for k, step in enumerate(kg.verify)]]
        env = environment(model)
        rows = []
        for name, tokens, g, step in steps:
            ms = _median_ms(g, step, context, reps, model.device)
            rows.append({"model": model.name, "shape": shape or model.name, "step": name, "tokens": tokens,
                         "ms": ms, "device": env["device"], "versions": env["versions"]})
    return rows


def _median_ms(g, step, context: int, reps: int, device: torch.device) -> float:
    times = []
    for _ in range(reps + 3):  # the first 3 are warm-up
        g.pos.fill_(context), g.round_pos.fill_(context), g.slot.zero_()  # the step's position: `context`
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            step()
            times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times[3:])


def project(steps: Sequence[dict], rounds: Iterable[tuple[str, int, int]], source: str) -> list[dict]:
    """Projected tokens/s of AR and Kangaroo from step times and recorded rounds.

    steps: rows of `step_times` for one shape; rounds: (category, drafts proposed, tokens emitted)
    per verification round of a real run. One row per category, then "overall"."""
    full = _step_ms(steps, "full", 1)
    draft = _step_ms(steps, "draft", 1)
    by_category: dict[str, list[tuple[int, int]]] = {}
    for category, drafts, emitted in rounds:
        by_category.setdefault(category, []).append((drafts, emitted))
        by_category.setdefault("overall", []).append((drafts, emitted))
    if not by_category:
        raise ValueError("no rounds to project from: run kangaroo first (bench answers carry its rounds)")
    s = steps[0]
    rows = []
    for category in [c for c in by_category if c != "overall"] + ["overall"]:
        rs = by_category[category]
        verify = [_step_ms(steps, "verify", d + 1) for d, _ in rs]
        ms = sum(d * draft + v for (d, _), v in zip(rs, verify))
        tokens = sum(n for _, n in rs)
        ar_tps, kg_tps = 1e3 / full, 1e3 * tokens / ms
        rows.append({"category": category, "rounds": len(rs), "mean_accepted": tokens / len(rs),
                     "mean_drafts": sum(d for d, _ in rs) / len(rs), "draft_ms": draft,
                     "verify_ms": sum(verify) / len(verify), "full_ms": full,
                     "projected_ar_tokens_per_s": ar_tps, "projected_kangaroo_tokens_per_s": kg_tps,
                     "projected_speedup": kg_tps / ar_tps, "source": source,
                     "device": s["device"], "versions": s["versions"]})
    return rows


def _step_ms(steps: Sequence[dict], name: str, tokens: int) -> float:
    for row in steps:
        if row["step"] == name and row["tokens"] == tokens:
            return row["ms"]
    raise ValueError(f"no timing of the {name} step over {tokens} tokens: time max_draft >= {tokens - 1}")


def measure(model: Model, adapter: Adapter, rounds: Sequence[tuple[str, int, int]], out, source: str,
            shapes: Sequence[str] = tuple(SHAPES), max_draft: int = 8,
            options: GraphOptions = GraphOptions()) -> tuple[list[dict], list[dict]]:
    """Step times of `model` and of each shape in `shapes` -> out/step_times.csv; the projection of
    the first shape from `rounds` (described by `source`) -> out/projection_7b.csv. Returns (step
    rows, projection rows).

    Shapes need a GPU (a Vicuna-7B shape is ~13.5 GB of fp16 weights): off CUDA they are skipped
    and no projection is written."""
    from .bench import _warn, write_csv

    out = Path(out)
    model.engine.__dict__.pop("_graphs", None)  # captured over the run's caches; step_times sets its own
    with torch.inference_mode():
        rows = step_times(model, adapter, max_draft, options)
    projection = []
    if model.device.type != "cuda":
        _warn(f"skipping the step times of {list(shapes)}: random weights of that size need a GPU")
        shapes = ()
    for i, shape in enumerate(shapes):
        big = shaped_model(shape, model.device)
        with torch.inference_mode():
            big_rows = step_times(big, new_adapter(big, adapter.exit_layer), max_draft, options,
                                  shape=f"{shape} (random weights)")
        rows += big_rows
        if i == 0:
            projection = project(big_rows, rounds, source)
        del big
        torch.cuda.empty_cache()
    write_csv(out / "step_times.csv", rows, STEP_COLUMNS)
    if projection:
        write_csv(out / "projection_7b.csv", projection, PROJECTION_COLUMNS)
    return rows, projection
