"""What each decoding step costs, and what that predicts for a bigger model.

A speculative method's speed is a ratio of two costs per generated token:

    AR:            full(1)                                    (one full step per token)
    speculative:   sum over rounds of the round's steps  /  tokens emitted

A round of a method with tree layout `tree.Layout` and d adapter levels drafted runs:

    draft(rows_0) + ... + draft(rows_{d-1})      level t through the shallow layers + adapter + LM head
    + shallow(rows_d) + verify(nodes_d)          the last level's shallow states, then the deep layers
                                                 over every node (`pld`: full(nodes), no exit layer)

rows_0 = 1 + lookup nodes, rows_t = the nodes of level t, nodes_d = `layout.nodes(d)`.

`step_times` measures full(R), draft(R), shallow(R) and verify(R) over R = 1 .. 128 rows by
replaying captured steps; `project` combines them with the rounds a real run recorded (draft steps,
tokens emitted) to predict tokens/s. With the step times of a Vicuna-7B-shaped engine on random
weights (`shaped_model`; no 7B weights are reachable here) and the rounds measured on SmolLM2, that
is a PROJECTION of the paper's setting: the acceptance of a real 7B model with its own adapter would
differ, and the host's work between steps is left out (on the H200 about 0.15 ms per host sync;
against a 7B model's 4.6 ms steps it weighs less). Row counts between the measured ones are
interpolated linearly.
"""

from __future__ import annotations

import bisect
import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from .adapter import Adapter, new_adapter
from .bench import engine_method, rounds_from_answers, write_csv
from .decoding import DecodeOptions, method_layout
from .engine import ModelConfig, Transformer, cache_slots
from .graphs import GraphOptions, capture, compiled_call
from .metrics import environment, median_ms, warn
from .models import Model, tiny_tokenizer
from .proposers import BASELINE, DEFAULT_METHOD, METHOD_TABLE
from .tree import Layout, pow2

# Shapes of real models, to time our engine on random weights of that size.
SHAPES = {
    "vicuna-7b-shaped": ModelConfig(
        vocab_size=32000,
        dim=4096,
        n_layers=32,
        n_heads=32,
        n_kv_heads=32,
        ffn_dim=11008,
        norm_eps=1e-6,
        max_seq_len=2048,
    ),
}
STEP_ROWS = (1, 2, 4, 8, 16, 32, 64, 128)
STEPS = ("full", "draft", "shallow", "verify")
STEP_COLUMNS = ("model", "shape", "step", "tokens", "ms", "device", "versions")
PROJECTION_COLUMNS = (
    "method",
    "category",
    "rounds",
    "mean_accepted",
    "mean_draft_steps",
    "round_ms",
    "full_ms",
    "projected_ar_tokens_per_s",
    "projected_tokens_per_s",
    "projected_speedup",
    "source",
    "device",
    "versions",
)


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


def step_functions(model: Model, adapter: Adapter, R: int, context: int, top_k: int = 4) -> dict:
    """The four steps over R rows at positions context .. context + R - 1, over static buffers:
    name -> function. The rows attend causally (a chain); a tree's mask costs the same."""
    e, l, dev = model.engine, adapter.exit_layer, model.device
    tokens = (torch.arange(R, device=dev) * 7 + 11).remainder(model.config.vocab_size)[None]  # (1, R)
    positions = context + torch.arange(R, device=dev)
    h = torch.zeros(1, R, model.config.dim, dtype=model.dtype, device=dev)
    out = torch.zeros(R, dtype=torch.long, device=dev)

    def full():
        out.copy_(e(tokens, positions)[0].argmax(-1))

    def draft():
        s = e.shallow(tokens, positions, l)
        a = adapter(s, positions) if e.call is None else e.call(adapter, s, positions)
        out.copy_(e.lm_head(a[0]).float().log_softmax(-1).topk(top_k, -1).indices[:, 0])

    def shallow():
        h.copy_(e.shallow(tokens, positions, l))

    def verify():
        out.copy_(e.deep(h, positions, l)[0].argmax(-1))

    return {"full": full, "draft": draft, "shallow": shallow, "verify": verify}


def step_times(
    model: Model,
    adapter: Adapter,
    rows: Iterable[int] = STEP_ROWS,
    options: GraphOptions = GraphOptions(),
    context: int = 512,
    reps: int = 30,
    shape: str | None = None,
    progress: bool = False,
) -> list[dict]:
    """Median ms of each step (`STEPS`) over each row count R, `context` tokens into the cache.

    On CUDA each step is captured as a graph (layers compiled as in decoding) and every replay is
    timed with CUDA events; elsewhere the same steps run eagerly under perf_counter (useful for
    tests, not as numbers)."""
    from tqdm.auto import tqdm  # heavy: loads only when steps are timed

    rows = sorted(set(rows))
    size = cache_slots(context + max(rows) + 1)
    model.engine.setup_cache(min(size, model.config.max_seq_len), scratch=max(0, size - model.config.max_seq_len))
    adapter.setup_cache(model.engine.cache_len)
    backend = options.backend(model.device)
    call = compiled_call(backend) if backend else None
    env = environment(model)
    out = []
    with torch.inference_mode():
        for R in tqdm(rows, desc=f"step times {shape or model.name}", unit="rows", disable=not progress):
            for name, fn in step_functions(model, adapter, R, context).items():
                step = capture(model, fn, call)
                out.append(
                    {
                        "model": model.name,
                        "shape": shape or model.name,
                        "step": name,
                        "tokens": R,
                        "ms": median_ms(step, model.device, reps),
                        **env,
                    }
                )
    return out


class StepCosts:
    """ms of a step over R rows, from `step_times` rows of one shape (linear between measured R)."""

    def __init__(self, steps: Sequence[dict]):
        self.table: dict[str, list[tuple[int, float]]] = {}
        for row in steps:
            self.table.setdefault(row["step"], []).append((int(row["tokens"]), float(row["ms"])))
        for points in self.table.values():
            points.sort()

    def __call__(self, step: str, rows: int) -> float:
        points = self.table.get(step)
        if not points:
            raise ValueError(f"no timing of the {step} step: measure it with step_times")
        xs = [x for x, _ in points]
        if not xs[0] <= rows <= xs[-1]:
            raise ValueError(
                f"the {step} step was timed over {xs[0]}..{xs[-1]} rows, not {rows}: "
                "measure more row counts with step_times(rows=...)"
            )
        i = bisect.bisect_left(xs, rows)
        if xs[i] == rows:
            return points[i][1]
        (x0, y0), (x1, y1) = points[i - 1], points[i]
        return y0 + (y1 - y0) * (rows - x0) / (x1 - x0)


def round_ms(
    costs: StepCosts, layout: Layout, levels_drafted: int, draft_model: bool = True, bucket: bool = False
) -> float:
    """The device time of one round that drafted `levels_drafted` adapter levels (module docstring).
    bucket: steps padded to a power of two rows, as the captured steps run by default."""
    return sum(round_parts(costs, layout, levels_drafted, draft_model, bucket).values())


def round_parts(
    costs: StepCosts, layout: Layout, levels_drafted: int, draft_model: bool = True, bucket: bool = False
) -> dict[str, float]:
    """`round_ms` split into draft, shallow and verify ms."""
    rows = pow2 if bucket else (lambda n: n)
    if not draft_model:  # prompt lookup: the whole model over the root and the lookup branch
        return {"draft": 0.0, "shallow": 0.0, "verify": costs("full", rows(layout.nodes(0)))}
    widths = [1 + layout.branch, *layout.levels]
    return {
        "draft": sum(costs("draft", rows(widths[t])) for t in range(levels_drafted)),
        "shallow": costs("shallow", rows(widths[levels_drafted])),
        "verify": costs("verify", rows(layout.nodes(levels_drafted))),
    }


def project(
    steps: Sequence[dict],
    rounds: Iterable[tuple[str, int, int]],
    layout: Layout,
    source: str,
    method: str = DEFAULT_METHOD,
) -> list[dict]:
    """Projected tokens/s of AR and of `method` from step times and recorded rounds.

    steps: rows of `step_times` for one shape; rounds: (category, draft steps, tokens emitted) per
    verification round of a real run of `method`, whose rounds propose trees of `layout`. One row
    per category, then "overall"."""
    costs = StepCosts(steps)
    full = costs("full", 1)
    by_category: dict[str, list[tuple[int, int]]] = {}
    for category, drafted, emitted in rounds:
        by_category.setdefault(category, []).append((drafted, emitted))
        by_category.setdefault("overall", []).append((drafted, emitted))
    if not by_category:
        raise ValueError(f"no rounds to project from: run {method} first (bench answers carry its rounds)")
    s = steps[0]
    rows = []
    for category in [c for c in by_category if c != "overall"] + ["overall"]:
        rs = by_category[category]
        ms = sum(round_ms(costs, layout, d, METHOD_TABLE[method].needs_adapter) for d, _ in rs)
        tokens = sum(n for _, n in rs)
        ar_tps, tps = 1e3 / full, 1e3 * tokens / ms
        rows.append(
            {
                "method": method,
                "category": category,
                "rounds": len(rs),
                "mean_accepted": tokens / len(rs),
                "mean_draft_steps": sum(d for d, _ in rs) / len(rs),
                "round_ms": ms / len(rs),
                "full_ms": full,
                "projected_ar_tokens_per_s": ar_tps,
                "projected_tokens_per_s": tps,
                "projected_speedup": tps / ar_tps,
                "source": source,
                "device": s["device"],
                "versions": s["versions"],
            }
        )
    return rows


def measure(
    model: Model,
    adapter: Adapter,
    runs: dict[str, tuple[Layout, Sequence[tuple[str, int, int]]]],
    out,
    source: str,
    shapes: Sequence[str] = tuple(SHAPES),
    rows: Iterable[int] = STEP_ROWS,
    options: GraphOptions = GraphOptions(),
    progress: bool = True,
) -> tuple[list[dict], list[dict]]:
    """Step times of `model` and of each shape in `shapes` -> out/step_times.csv; the projection of the
    first shape for every method in `runs` (method -> (its tree layout, its recorded rounds)), the
    rounds described by `source` -> out/projection_7b.csv. Returns (step rows, projection rows).

    Shapes need a GPU (a Vicuna-7B shape is ~13.5 GB of fp16 weights): off CUDA they are skipped
    and no projection is written."""
    out = Path(out)
    for owner in (model.engine, adapter):  # graphs captured over the run's caches; step_times sets its own
        if owner is not None:
            owner.__dict__.pop("_graphs", None)
    rows = tuple(rows)
    steps = step_times(model, adapter, rows, options, progress=progress)
    projection = []
    if model.device.type != "cuda":
        warn(f"skipping the step times of {list(shapes)}: random weights of that size need a GPU")
        shapes = ()
    for i, shape in enumerate(shapes):
        big = shaped_model(shape, model.device)
        big_steps = step_times(
            big,
            new_adapter(big, adapter.exit_layer),
            rows,
            options,
            shape=f"{shape} (random weights)",
            progress=progress,
        )
        steps += big_steps
        if i == 0:
            for method, (layout, rounds) in runs.items():
                projection += project(big_steps, rounds, layout, source, method)
        del big
        torch.cuda.empty_cache()
    write_csv(out / "step_times.csv", steps, STEP_COLUMNS)
    if projection:
        write_csv(out / "projection_7b.csv", projection, PROJECTION_COLUMNS)
    return steps, projection


def project_stored(bench_dir, shape: str = "vicuna-7b-shaped (random weights)", source: str | None = None) -> Path:
    """The projection from stored files alone (no GPU): the step times of `shape` in
    bench_dir/step_times.csv and the rounds of every speculative method in bench_dir/answers/, with
    the trees of bench_dir/run.json -> bench_dir/projection_7b.csv."""
    bench_dir = Path(bench_dir)
    with open(bench_dir / "step_times.csv", encoding="utf-8") as f:
        steps = [
            {**r, "tokens": int(r["tokens"]), "ms": float(r["ms"])} for r in csv.DictReader(f) if r["shape"] == shape
        ]
    if not steps:
        raise ValueError(f"{bench_dir / 'step_times.csv'} holds no step times of {shape!r}")
    run = json.loads((bench_dir / "run.json").read_text())
    rows = []
    for method, options in run["options"].items():
        answers = bench_dir / "answers" / f"{method}.jsonl"
        if method == BASELINE or not answers.is_file():
            continue
        layout = method_layout(engine_method(method), DecodeOptions(**options))
        rows += project(
            steps,
            rounds_from_answers(answers),
            layout,
            source
            or f"rounds: {bench_dir / 'answers'} ({run['model']}, {run['device']}); step times: "
            f"{shape} in {bench_dir / 'step_times.csv'}",
            method,
        )
    return write_csv(bench_dir / "projection_7b.csv", rows, PROJECTION_COLUMNS)


BREAKDOWN_COLUMNS = (
    "method",
    "tokens_per_round",
    "measured_round_ms",
    "draft_ms",
    "shallow_ms",
    "verify_ms",
    "modelled_device_ms",
    "other_ms",
    "ar_measured_ms_per_token",
    "full_step_ms",
    "device",
    "versions",
)


def breakdown_stored(bench_dir, shape: str | None = None) -> Path:
    """Where a round's time goes, per method, from stored files: the measured time of a round
    (tokens per round / tokens per s, summary.csv), the device time of its layer steps modelled from
    step_times.csv (the power-of-two rows the captured steps run; draft levels, the last level's
    shallow layers, the verification; averaged over the recorded rounds), and the rest: the host's
    work and the round's glue kernels (mask, tree growth, acceptance, compaction), which no step time
    covers -> bench_dir/round_breakdown.csv."""
    bench_dir = Path(bench_dir)
    run = json.loads((bench_dir / "run.json").read_text())
    shape = shape or run["model"]
    with open(bench_dir / "step_times.csv", encoding="utf-8") as f:
        steps = [
            {**r, "tokens": int(r["tokens"]), "ms": float(r["ms"])} for r in csv.DictReader(f) if r["shape"] == shape
        ]
    with open(bench_dir / "summary.csv", encoding="utf-8") as f:
        overall = {r["method"]: r for r in csv.DictReader(f) if r["category"] == "overall"}
    step_costs = StepCosts(steps)
    ar_ms = 1e3 / float(overall[BASELINE]["tokens_per_s"])
    rows = []
    for method, options in run["options"].items():
        answers = bench_dir / "answers" / f"{method}.jsonl"
        if method == BASELINE or method not in overall or not answers.is_file():
            continue
        layout = method_layout(engine_method(method), DecodeOptions(**options))
        rounds = rounds_from_answers(answers)
        drafts = METHOD_TABLE[method].needs_adapter  # else the whole model verifies (pld)
        parts = [round_parts(step_costs, layout, d, drafts, bucket=True) for _, d, _ in rounds]
        mean = {k: sum(p[k] for p in parts) / len(parts) for k in ("draft", "shallow", "verify")}
        tokens = float(overall[method]["mean_accepted"])
        measured = tokens * 1e3 / float(overall[method]["tokens_per_s"])
        device = sum(mean.values())
        rows.append(
            {
                "method": method,
                "tokens_per_round": tokens,
                "measured_round_ms": measured,
                "draft_ms": mean["draft"],
                "shallow_ms": mean["shallow"],
                "verify_ms": mean["verify"],
                "modelled_device_ms": device,
                "other_ms": measured - device,
                "ar_measured_ms_per_token": ar_ms,
                "full_step_ms": step_costs("full", 1),
                "device": run["device"],
                "versions": run["versions"],
            }
        )
    return write_csv(bench_dir / "round_breakdown.csv", rows, BREAKDOWN_COLUMNS)
