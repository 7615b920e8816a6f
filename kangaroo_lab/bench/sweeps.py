"""Sweeps: one method over a grid of settings, between two runs of ar, one flushed CSV row per setting.

`sweep_exit_layer` (kangaroo at each exit layer), `sweep_threshold` (kangaroo over eta x gamma) and
`sweep_tree` (the trees and lookup over node budget x depth x top-k) write out/sweep_exit_layer.csv,
sweep_threshold.csv and sweep_tree.csv (`SWEEP_COLUMNS`); each row is `metrics.row` of the setting's
records against the first ar run's. The closing ar row's speedup_vs_ar measures the drift of the
machine over the sweep.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from ..adapter import DEFAULT_EXIT_LAYER
from ..decoding import DEFAULTS, METHOD_DEFAULTS, TREE_METHODS, DecodeOptions, method_layout
from ..metrics import TurnRecord, environment, row, warn
from ..models import Model
from ..proposers import BASELINE, DEFAULT_METHOD, METHOD_TABLE
from ..questions import Question
from .report import SWEEP_COLUMNS, CsvRows
from .runners import (
    DEFAULT_OUT,
    Runner,
    answer_all,
    engine_runner,
    fitting_questions,
    kangaroo_adapter,
    limit_per_category,
    questions_or_minibench,
    reserve_cache,
    warm_up,
)

SWEEPS = ("exit-layer", "threshold", "tree")
SWEEP_EXIT_LAYERS = (1, 2, 3, 4, 5, 6)
SWEEP_THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(10))  # eta: 0.0 .. 0.9
SWEEP_MAX_DRAFTS = tuple(range(2, 11))  # gamma: 2 .. 10
SWEEP_NODE_BUDGETS = (16, 32, 64, 128)  # trees: nodes verified per round
SWEEP_DEPTHS = (2, 3, 4, 6, 8)  # trees: adapter levels
SWEEP_TOP_KS = (1, 2, 4, 8)  # trees: children per node
SWEEP_LIMIT = 1  # questions per category in a sweep: 7 turns of the mini-bench per setting


def sweep_exit_layer(
    model: Model,
    questions: Sequence[Question] | None = None,
    out=DEFAULT_OUT,
    layers: Iterable[int] = SWEEP_EXIT_LAYERS,
    limit: int | None = SWEEP_LIMIT,
    threshold: float = DEFAULTS.threshold,
    max_draft: int = DEFAULTS.max_draft,
    max_new_tokens: int = DEFAULTS.max_new_tokens,
    progress: bool = True,
) -> list[dict]:
    """kangaroo at each exit layer (its shipped adapter, else an untrained one), between two ar runs.

    Writes out/sweep_exit_layer.csv; layers the model lacks are skipped with a warning."""
    opts = replace(DEFAULTS, threshold=threshold, max_draft=max_draft, max_new_tokens=max_new_tokens)
    n_layers = model.config.n_layers
    layers = list(layers)
    valid = [l for l in layers if 0 < l < n_layers]
    if len(valid) < len(layers):
        warn(f"skipping exit layers {[l for l in layers if l not in valid]}: this model has {n_layers} layers")
    if not valid:
        raise ValueError(f"no exit layer to sweep: choose layers between 1 and {n_layers - 1}")
    settings = []
    for l in valid:
        adapter, source = kangaroo_adapter(model, l)
        setting = {
            "method": DEFAULT_METHOD,
            "exit_layer": l,
            "adapter": source,
            "threshold": threshold,
            "max_draft": max_draft,
        }
        settings.append((setting, engine_runner(model, DEFAULT_METHOD, adapter, opts)))
    return run_sweep(model, questions, Path(out) / "sweep_exit_layer.csv", settings, opts, limit, progress)


def sweep_threshold(
    model: Model,
    questions: Sequence[Question] | None = None,
    out=DEFAULT_OUT,
    thresholds: Iterable[float] = SWEEP_THRESHOLDS,
    max_drafts: Iterable[int] = SWEEP_MAX_DRAFTS,
    exit_layer: int = DEFAULT_EXIT_LAYER,
    limit: int | None = SWEEP_LIMIT,
    max_new_tokens: int = DEFAULTS.max_new_tokens,
    progress: bool = True,
) -> list[dict]:
    """kangaroo over the grid eta x gamma with one adapter, between two ar runs -> out/sweep_threshold.csv."""
    opts = replace(DEFAULTS, max_new_tokens=max_new_tokens)
    adapter, source = kangaroo_adapter(model, exit_layer)
    settings = []
    for eta, gamma in itertools.product(thresholds, max_drafts):
        grid_opts = replace(opts, threshold=eta, max_draft=gamma)  # validates each point before any run
        setting = {
            "method": DEFAULT_METHOD,
            "exit_layer": exit_layer,
            "adapter": source,
            "threshold": eta,
            "max_draft": gamma,
        }
        settings.append((setting, engine_runner(model, DEFAULT_METHOD, adapter, grid_opts)))
    return run_sweep(model, questions, Path(out) / "sweep_threshold.csv", settings, opts, limit, progress)


def tree_grid(
    methods: Iterable[str] = TREE_METHODS,
    node_budgets: Iterable[int] = SWEEP_NODE_BUDGETS,
    depths: Iterable[int] = SWEEP_DEPTHS,
    top_ks: Iterable[int] = SWEEP_TOP_KS,
    **fixed,
) -> list[dict]:
    """Settings of `sweep_tree`: every (method, node budget, depth, top-k), each with `fixed` options."""
    return [
        {"method": m, "node_budget": b, "max_draft": d, "top_k": k, **fixed}
        for m, b, d, k in itertools.product(methods, node_budgets, depths, top_ks)
    ]


def sweep_tree(
    model: Model,
    questions: Sequence[Question] | None = None,
    out=DEFAULT_OUT,
    settings: Iterable[Mapping] | None = None,
    exit_layer: int = DEFAULT_EXIT_LAYER,
    limit: int | None = SWEEP_LIMIT,
    max_new_tokens: int = DEFAULTS.max_new_tokens,
    progress: bool = True,
) -> list[dict]:
    """Trees and lookup, one setting at a time, between two ar runs -> out/sweep_tree.csv.

    settings: dicts of a method (pld, kangaroo, kangaroo-tree or kangaroo+lookup) and any
    `DecodeOptions` fields over that method's defaults (default: `tree_grid()`, every node budget x
    depth x top-k of both tree methods)."""
    adapter, source = kangaroo_adapter(model, exit_layer)
    rows = []
    for setting in tree_grid() if settings is None else settings:
        setting = dict(setting)
        method = setting.pop("method")
        opts = replace(METHOD_DEFAULTS[method], **setting, max_new_tokens=max_new_tokens)  # validates each one
        size = method_layout(method, opts).size  # and its tree, before anything runs
        drafts = METHOD_TABLE[method].needs_adapter  # else no adapter, no exit layer (pld)
        described = {
            "method": method,
            "exit_layer": exit_layer if drafts else None,
            "adapter": source if drafts else None,
            **{
                k: getattr(opts, k)
                for k in ("threshold", "max_draft", "top_k", "node_budget", "lookup_tokens", "early_exit")
            },
        }
        rows.append((described, engine_runner(model, method, adapter if drafts else None, opts), size))
    if not rows:
        raise ValueError("no settings to sweep")
    scratch = max(size for _, _, size in rows)
    return run_sweep(
        model,
        questions,
        Path(out) / "sweep_tree.csv",
        [(d, r) for d, r, _ in rows],
        replace(DEFAULTS, max_new_tokens=max_new_tokens),
        limit,
        progress,
        scratch,
    )


def run_sweep(
    model: Model,
    questions: Sequence[Question] | None,
    path: Path,
    settings: list[tuple[dict, Runner]],
    opts: DecodeOptions,
    limit: int | None,
    progress: bool,
    tree_size: int = DEFAULTS.max_draft + 1,
) -> list[dict]:
    """ar as the baseline, then each (setting, runner), then ar again; each row is written and flushed when measured.

    The closing ar row's speedup_vs_ar is the drift of the machine over the sweep (1.0: none); far
    from 1, the sweep's speedups are not to be trusted (rerun it, or sweep fewer settings at a time)."""
    from tqdm.auto import tqdm  # heavy: loads only when a sweep starts

    qs, skipped = fitting_questions(
        model, limit_per_category(questions_or_minibench(questions), limit), opts.max_new_tokens
    )
    for note in skipped:
        warn(note)
    env = environment(model)
    ar_runner = engine_runner(model, BASELINE, None, opts)
    reserve_cache(model, qs, opts.max_new_tokens, max(tree_size, opts.max_draft + 1))
    for runner in (ar_runner, settings[0][1]):
        warm_up(model, runner, qs[0], opts.max_new_tokens)
    rows = []
    with CsvRows(path, SWEEP_COLUMNS) as sink:
        ar = answer_all(model, BASELINE, ar_runner, qs, opts.max_new_tokens, progress)
        rows.append(sink.write(sweep_row({"method": BASELINE}, ar, ar, env)))
        for setting, runner in tqdm(settings, desc=path.stem, unit="setting", file=sys.stderr, disable=not progress):
            warm_up(model, runner, qs[0], opts.max_new_tokens)  # a new adapter or gamma: new graphs to capture
            records = answer_all(model, setting["method"], runner, qs, opts.max_new_tokens, progress)
            rows.append(sink.write(sweep_row(setting, records, ar, env)))
        ar_again = answer_all(model, BASELINE, ar_runner, qs, opts.max_new_tokens, progress)
        rows.append(sink.write(sweep_row({"method": BASELINE}, ar_again, ar, env)))
    drift = rows[-1]["speedup_vs_ar"]
    if drift is not None and not 0.9 <= drift <= 1.1:
        warn(
            f"ar ran at {drift:.2f}x its first speed by the end of the sweep: the machine's speed drifted, "
            f"so the speedups in {path} are unreliable"
        )
    return rows


def sweep_row(setting: dict, records: Sequence[TurnRecord], ar: Sequence[TurnRecord], env: dict) -> dict:
    """One sweep row (`SWEEP_COLUMNS`): the setting, then its numbers (`metrics.row`) against ar on the same
    questions, then the machine."""
    numbers = row(records, ar)
    return (
        {c: None for c in SWEEP_COLUMNS}
        | setting
        | {c: numbers[c] for c in SWEEP_COLUMNS if c in numbers}
        | {"device": env["device"], "versions": env["versions"]}
    )
