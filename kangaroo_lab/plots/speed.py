"""Speed figures: speedup and tokens per round per category and per method (bench/summary.csv), the exit-layer
and η x γ sweeps, step times against width, the 7B projection, and where a step's time and parameters go."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from ..adapter import DEFAULT_EXIT_LAYER
from ..proposers import BASELINE
from .style import (
    CATEGORY_LABELS,
    CHAIN,
    REJECTED_COLOR,
    WIDE,
    category_order,
    finish,
    heatmap,
    label_bars,
    method_color,
    method_label,
    method_order,
    new_figure,
    two_panels,
)
from .tables import (
    model_params_once,
    provenance,
    split_notes,
    step_time_ratios,
    sweep_parts,
    tied_head_row,
    unique_values,
)


def speedup_by_category(summary: pd.DataFrame) -> Figure:
    """bench/summary.csv: speedup over ar (top) and tokens per round (bottom) per category, every method
    (Spec-Bench style), one bar per method in `METHOD_ORDER`."""
    rows, notes = split_notes(summary)
    categories = category_order(rows["category"])
    methods = [m for m in method_order(rows["method"]) if m != BASELINE]
    fig, axes = new_figure(1, 2, size=(13.5, 8.2))
    ax, bx = axes[:, 0]
    _grouped_bars(ax, rows, "speedup_vs_ar", categories, methods)
    ax.axhline(1, color=method_color(BASELINE), lw=1.2, ls="--", label=method_label(BASELINE))
    ax.set(ylabel="speedup over ar\n(tokens/s ÷ ar tokens/s)", title="speedup")
    accepting = [m for m in methods if rows.loc[rows["method"] == m, "mean_accepted"].notna().any()]
    _grouped_bars(bx, rows, "mean_accepted", categories, accepting)
    bx.axhline(1, color=method_color(BASELINE), lw=1.2, ls="--")
    bx.set(ylabel="tokens per round\n(accepted drafts + the target's token)", title="tokens per verification round")
    for a in (ax, bx):
        a.set_ylim(0, a.get_ylim()[1] * 1.1)  # room for the bar labels
        a.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0, 1.08), ncols=6, frameon=False)
    same = rows[(rows["category"] == "overall") & rows["identical_to_ar"].notna() & (rows["method"] != BASELINE)]
    if len(same):
        same = same.set_index("method")["identical_to_ar"].astype(float)
        notes = [
            "questions answered exactly as ar did (greedy, token for token): "
            + ", ".join(f"{m} {same[m]:.0%}" for m in method_order(same.index))
        ] + notes
    return finish(fig, "Speedup and tokens per round per Spec-Bench category", provenance(summary), notes)


def _grouped_bars(
    ax,
    rows: pd.DataFrame,
    column: str,
    categories: list[str],
    methods: list[str],
    hatch: str | None = None,
    fmt: str = "{:.2f}",
):
    """One group of bars per category, one bar per method (a missing value leaves a gap); labelled values."""
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(categories))
    for i, method in enumerate(methods):
        d = rows[rows["method"] == method].set_index("category")[column].astype(float)
        values = [d.get(c, np.nan) for c in categories]
        bars = ax.bar(
            x + (i - (len(methods) - 1) / 2) * width,
            values,
            width,
            color=method_color(method),
            label=method_label(method),
            hatch=hatch,
            edgecolor="white" if hatch else None,
        )
        if len(methods) > 6:  # narrow bars: the labels stand upright
            for bar in bars:
                if np.isfinite(bar.get_height()):
                    ax.annotate(
                        fmt.format(bar.get_height()),
                        (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        xytext=(0, 2),
                        textcoords="offset points",
                        ha="center",
                        va="bottom",
                        fontsize=6,
                        rotation=90,
                    )
        else:
            label_bars(ax, bars, fmt, 6.5 if len(methods) > 3 else 7.5)
    ax.set_xticks(x, [CATEGORY_LABELS.get(c, c) for c in categories])
    ax.set_xlabel("Spec-Bench category")


def methods_overview(summary: pd.DataFrame) -> Figure:
    """bench/summary.csv, overall rows: per method its speedup over ar, its tokens per round (of the
    candidates it verified), its draft steps and host syncs per round, and whether it answered as ar did."""
    rows, notes = split_notes(summary)
    overall = rows[rows["category"] == "overall"].drop_duplicates("method").set_index("method")
    methods = method_order(overall.index)
    o = overall.reindex(methods)
    y = np.arange(len(methods))
    fig, axes = new_figure(
        3, size=(13.5, 1.9 + 0.5 * len(methods)), sharey=True, gridspec_kw={"width_ratios": [1.0, 1.3, 0.9]}
    )
    ax, bx, cx = axes[0]
    colors = [method_color(m) for m in methods]
    for a, column, fmt, xlabel in (
        (ax, "speedup_vs_ar", "{:.2f}×", "speedup over ar (overall tokens/s ÷ ar's)"),
        (bx, "mean_accepted", "{:.2f}", "tokens per round (accepted + the target's)"),
    ):
        values = o[column].astype(float).to_numpy()
        bars = a.barh(y, values, height=0.6, color=colors)
        for bar, v, m in zip(bars, values, methods):
            if np.isfinite(v):
                extra = ""
                if column == "mean_accepted" and pd.notna(o.loc[m, "nodes_per_round"]) and m != BASELINE:
                    extra = f"   ({o.loc[m, 'nodes_per_round']:.3g} candidates verified)"
                a.annotate(
                    fmt.format(v) + extra,
                    (v, bar.get_y() + bar.get_height() / 2),
                    xytext=(3, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=8,
                )
        a.axvline(1, color=method_color(BASELINE), ls="--", lw=1)
        top = np.nanmax(values) if np.isfinite(values).any() else 1.0
        a.set(xlabel=xlabel, xlim=(0, top * (1.9 if column == "mean_accepted" else 1.25)))
        a.grid(alpha=0.3, axis="x")
    ax.set_yticks(y, [method_label(m) for m in methods])
    ax.invert_yaxis()
    ax.set_title("speed")
    bx.set_title("tokens per verification round")
    _overview_table(cx, o, y)
    notes = [
        "identical: share of questions whose greedy answer equals ar's token for token (bench/mismatches.csv "
        "lists each first divergence with ar's top-2 logit gap); host syncs: reads of device values "
        "per round (ar: per token)"
    ] + notes
    questions = int(o["questions"].max()) if "questions" in o and o["questions"].notna().any() else None
    title = "Every method on the mini-bench, overall" + (f" ({questions} questions)" if questions else "")
    return finish(fig, title, provenance(summary), notes)


OVERVIEW_COLUMNS = (  # column -> (header, format) of the text table beside `methods_overview`'s bars
    ("draft_steps_per_round", "draft steps\nper round", "{:.2f}"),
    ("syncs_per_round", "host syncs\nper round", "{:.2f}"),
    ("identical_to_ar", "identical\nto ar", "{:.0%}"),
)


def _overview_table(ax, overall: pd.DataFrame, y: np.ndarray):
    """Columns of text on the rows of the bars (y): draft steps, syncs, identical to ar; "–" when absent."""
    ax.set_xlim(0, len(OVERVIEW_COLUMNS))
    for j, (column, header, fmt) in enumerate(OVERVIEW_COLUMNS):
        ax.text(j + 0.5, 1.01, header, transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=9)
        values = overall[column] if column in overall else pd.Series(np.nan, index=overall.index)
        for yi, v in zip(y, values):
            low = column == "identical_to_ar" and pd.notna(v) and float(v) < 1
            ax.text(
                j + 0.5,
                yi,
                "–" if pd.isna(v) else fmt.format(float(v)),
                ha="center",
                va="center",
                fontsize=9,
                color=REJECTED_COLOR if low else "black",
            )
    ax.tick_params(left=False, bottom=False, labelbottom=False)
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)


N_LAYERS = 30  # SmolLM2-135M-Instruct, the model the stored sweeps ran on (exit ratio = l / N)


def speedup_vs_exit_ratio(sweep: pd.DataFrame, n_layers: int = N_LAYERS) -> Figure:
    """bench/sweep_exit_layer.csv: speedup and mean accepted tokens against the exit ratio l / N."""
    rows, notes = sweep_parts(sweep)
    rows = rows.sort_values("exit_layer")
    ratio = rows["exit_layer"] / n_layers
    shipped = rows["adapter"].astype(str).eq("shipped")
    fig, ax, bx = two_panels()
    for a, column, ylabel in (
        (ax, "speedup_vs_ar", "speedup over ar"),
        (bx, "mean_accepted", "mean accepted tokens per round"),
    ):
        a.plot(
            ratio[shipped],
            rows.loc[shipped, column],
            "o-",
            ms=7,
            color=method_color(CHAIN),
            label="trained adapter (shipped)",
        )  # the line joins trained adapters only
        if (~shipped).any():
            a.plot(
                ratio[~shipped],
                rows.loc[~shipped, column],
                "o",
                ms=7,
                mfc="white",
                color=method_color(CHAIN),
                label="untrained adapter",
            )
        for r, layer, v in zip(ratio, rows["exit_layer"], rows[column]):
            a.annotate(f"l={int(layer)}", (r, v), xytext=(0, 7), textcoords="offset points", ha="center", fontsize=8)
        a.axhline(
            1, color=method_color(BASELINE), ls="--", lw=1, label="ar" if column == "speedup_vs_ar" else "1 token"
        )
        a.set(xlabel=f"exit ratio l / N (N = {n_layers} layers)", ylabel=ylabel)
        a.set_ylim(0, max(1.0, float(rows[column].max())) * 1.12)
        a.grid(alpha=0.3)
        a.legend(fontsize=8, loc="lower right")
    threshold, max_draft = rows["threshold"].iloc[0], rows["max_draft"].iloc[0]
    title = f"Where to exit: speedup and accepted tokens vs exit ratio (η = {threshold:g}, γ = {int(max_draft)})"
    return finish(fig, title, provenance(sweep), notes)


def eta_gamma_heatmap(sweep: pd.DataFrame) -> Figure:
    """bench/sweep_threshold.csv: speedup over ar and mean accepted tokens over the grid η x γ (threshold x
    most drafts)."""
    rows, notes = sweep_parts(sweep)
    fig, ax, bx = two_panels(size=(WIDE, 4.8))
    for a, column, label, cmap, best in (
        (ax, "speedup_vs_ar", "speedup over ar", "viridis", True),
        (bx, "mean_accepted", "mean accepted tokens per round", "magma", False),
    ):
        grid = rows.pivot_table(index="threshold", columns="max_draft", values=column, aggfunc="mean")
        heatmap(fig, a, grid, label, "{:.2f}", cmap, best)
        a.set(xlabel="γ: most drafts per round", ylabel="η: confidence threshold", title=label)
    best = rows.loc[rows["speedup_vs_ar"].astype(float).idxmax()] if rows["speedup_vs_ar"].notna().any() else None
    if best is not None:
        notes = [
            (
                f"best (red box): η = {best['threshold']:g}, γ = {int(best['max_draft'])}: "
                f"{best['speedup_vs_ar']:.2f}x, {best['mean_accepted']:.2f} tokens per round"
            )
        ] + notes
    layer = int(rows["exit_layer"].iloc[0]) if len(rows) else DEFAULT_EXIT_LAYER
    return finish(fig, f"Threshold η × most drafts γ at exit layer l = {layer}", provenance(sweep), notes)


STEP_STYLES = {  # step -> (what it computes over R rows, colour, marker)
    "full": ("full(R): every layer + LM head", "black", "o"),
    "verify": ("verify(R): layers ≥ l + LM head", "#08519c", "s"),
    "draft": ("draft(R): shallow layers + adapter + LM head + top-k", "#d95f02", "^"),
    "shallow": ("shallow(R): layers < l", "#7570b3", "v"),
}


def step_times(times: pd.DataFrame) -> Figure:
    """bench/step_times.csv: each step's time against the rows R it runs over (log2 axis), in multiples of the
    shape's full(1) step (left axis) and in ms (right axis), one panel per shape: width is almost free."""
    table = step_time_ratios(times)
    shapes = list(dict.fromkeys(table["shape"]))
    fig, axes = new_figure(len(shapes), size=(6.2 * len(shapes) + 0.8, 5.0), sharey=True)
    steps = [s for s in STEP_STYLES if s in set(table["step"])] + sorted(set(table["step"]) - set(STEP_STYLES))
    top = max(1.2, float(table["ratio"].max()) * 1.12)
    for ax, shape in zip(axes[0], shapes):
        _step_panel(ax, table[table["shape"] == shape], shape, steps, top)
    axes[0, 0].set_ylabel("time ÷ the full step over one row, full(1)")
    axes[0, 0].set_ylim(0, top)
    axes[0, 0].legend(
        loc="lower left",
        bbox_to_anchor=(0.0, 0.2),
        fontsize=8,
        title="step over R rows (l: the exit layer)",
        title_fontsize=8,
    )  # the middle of the panel is empty: full and verify ~1, draft and shallow ~0
    widest = int(table["tokens"].max())
    growth = table[(table["step"] == "full")].groupby("shape")["ratio"].max()
    notes = [f"{shape}: full({widest}) costs {g:.2f}× full(1)" for shape, g in growth.items()]
    notes.append("a round that verifies R candidate tokens pays verify(R), not R steps: widening a tree is nearly free")
    return finish(
        fig, "Width is almost free: a step over many rows costs little more than over one", provenance(times), notes
    )


def _step_panel(ax, d: pd.DataFrame, shape: str, steps: list[str], top: float):
    """One shape's `step_time_ratios` rows: a line per step against the rows R, its last ratio written at its end
    (pushed apart when close), full(1) dotted, ms on the right axis."""
    full_ms = float(d["full_ms"].iloc[0])
    ends = []  # (ratio, tokens, color) at each line's end, labelled after the lines
    for step in steps:
        s = d[d["step"] == step].sort_values("tokens")
        label, color, marker = STEP_STYLES.get(step, (step, "0.5", "x"))
        ax.plot(s["tokens"], s["ratio"], marker=marker, ms=4, color=color, label=label)
        if len(s):
            ends.append((float(s["ratio"].iloc[-1]), float(s["tokens"].iloc[-1]), color))
    for (ratio, tokens, color), y in zip(sorted(ends), _spread([r for r, _, _ in sorted(ends)], 0.055 * top)):
        ax.annotate(
            f"{ratio:.2f}×",
            (tokens, ratio),
            xytext=(tokens * 1.1, y),
            textcoords="data",
            va="center",
            fontsize=8,
            color=color,
        )  # labels near each other (near 0) are pushed apart
    ax.axhline(1, color="0.5", ls=":", lw=1, label="= full(1), one full step over one row")
    ax.set_xscale("log", base=2)
    ticks = sorted(d["tokens"].unique())
    ax.set_xticks(ticks, [str(int(t)) for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(min(ticks) / 1.25, max(ticks) * 1.9)  # room for the end labels
    ax.set(xlabel="rows R processed in one call (log scale)", title=f"{shape}\nfull(1) = {full_ms:.2f} ms")
    ax.grid(alpha=0.3)
    ms_axis = ax.secondary_yaxis("right", functions=(lambda r, f=full_ms: r * f, lambda m, f=full_ms: m / f))
    ms_axis.set_ylabel("ms", color="0.35")


def _spread(values: list[float], gap: float) -> list[float]:
    """Sorted label heights, each pushed up to at least `gap` above the one below it."""
    out: list[float] = []
    for v in values:
        out.append(max(v, out[-1] + gap) if out else v)
    return out


def projection_7b(projection: pd.DataFrame) -> Figure:
    """bench/projection_7b.csv: the PROJECTED speedup of every method per category on a Vicuna-7B-shaped model
    (grouped bars), and per method its tokens per round against its round cost in full steps."""
    if "method" not in projection:  # files from before the trees: Kangaroo's rows only
        projection = projection.assign(method=CHAIN)
    categories = category_order(projection["category"])
    methods = method_order(projection["method"])
    fig, axes = new_figure(2, size=(14.5, 5.4), gridspec_kw={"width_ratios": [2.3, 1]})
    ax, bx = axes[0]
    _grouped_bars(ax, projection, "projected_speedup", categories, methods, hatch="//")
    ax.axhline(1, color=method_color(BASELINE), ls="--", lw=1, label=method_label(BASELINE))
    ax.set(ylabel="PROJECTED speedup over ar")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.08)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0, 1.01), ncols=3, frameon=False)
    _projection_costs(bx, projection[projection["category"] == "overall"], methods)
    notes = [f"source: {s}" for s in unique_values(projection, "source")]
    notes.append(
        "projected speedup = tokens per round × full(1) ms ÷ round ms; round ms = the round's layer steps "
        "timed on the 7B shape (random weights; host time left out, for ar too), tokens per round = measured "
        "on SmolLM2-135M: an estimate, not a run"
    )
    if "projected_ar_tokens_per_s" in projection and projection["projected_ar_tokens_per_s"].notna().any():
        notes.append(f"projected ar: {projection['projected_ar_tokens_per_s'].dropna().iloc[0]:.0f} tokens/s")
    return finish(
        fig,
        "PROJECTION, not measured end to end: every method on a Vicuna-7B-shaped model",
        provenance(projection),
        notes,
    )


def _projection_costs(ax, overall: pd.DataFrame, methods: list[str]):
    """Overall rows: tokens per round (y) against round ms ÷ full(1) ms (x); the speedup is y / x (dashed lines)."""
    ax.set_title("overall: what a round costs and yields")
    if overall.empty or not {"round_ms", "full_ms", "mean_accepted"} <= set(overall):
        ax.text(0.5, 0.5, "no overall round costs in this file", transform=ax.transAxes, ha="center", color="0.4")
        return
    d = overall.set_index("method")
    cost = d["round_ms"].astype(float) / d["full_ms"].astype(float)
    tokens = d["mean_accepted"].astype(float)
    x_top = max(1.5, float(np.nanmax(cost)) * 1.2)
    y_top = max(1.5, float(np.nanmax(tokens)) * 1.15)
    for speedup in (1, 2, 3, 4):
        xs = np.array([0, x_top])
        ax.plot(xs, speedup * xs, color="0.6" if speedup > 1 else method_color(BASELINE), ls="--", lw=0.8)
        x_label = min(x_top * 0.95, y_top * 0.95 / speedup)
        ax.annotate(f"{speedup}×", (x_label, speedup * x_label), fontsize=8, color="0.4", ha="right", va="bottom")
    for m in methods:
        if m in d.index and np.isfinite(cost[m]) and np.isfinite(tokens[m]):
            ax.plot(cost[m], tokens[m], "o", ms=8, color=method_color(m))
            ax.annotate(
                f"{method_label(m)}\n{d.loc[m, 'projected_speedup']:.2f}×",
                (cost[m], tokens[m]),
                xytext=(6, 0),
                textcoords="offset points",
                va="center",
                fontsize=7.5,
            )
    ax.set(
        xlim=(0, x_top),
        ylim=(0, y_top),
        xlabel="round ms ÷ full(1) ms (7B shape)",
        ylabel="tokens per round (SmolLM2 rounds)",
    )
    ax.grid(alpha=0.3)


def cost_breakdown(df: pd.DataFrame, tied_head: bool | None = None) -> Figure:
    """Time (ms) and parameters of each part of the model, as horizontal bars (columns part, ms, params).

    A tied LM head (the embedding's weights; detected when `tied_head` is None) is drawn hollow in the size
    panel and not counted again: the note gives the total with each weight once."""
    fig, ax, bx = two_panels(size=(WIDE, 1.6 + 0.45 * len(df)))
    y = np.arange(len(df))
    tied = tied_head_row(df) if tied_head is None or tied_head else None
    notes = []
    for a, column, scale, unit in ((ax, "ms", 1, "ms per step"), (bx, "params", 1e6, "parameters (millions)")):
        values = df[column].astype(float) / scale
        bars = a.barh(y, values, color=method_color(CHAIN))
        for i, (bar, v) in enumerate(zip(bars, values)):
            text = f"{v:.2f}" if v < 100 else f"{v:.0f}"
            if column == "params" and i == tied:
                bar.set(facecolor="white", edgecolor=method_color(CHAIN), hatch="//")
                text += "  the embedding's weights (tied), counted once"
            a.annotate(
                text,
                (v, bar.get_y() + bar.get_height() / 2),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
            )
        if column == "params" and tied is not None:
            model_total = model_params_once(df, tied)
            notes.append(
                f"the LM head is tied to the embedding: its weights are drawn hollow and counted once "
                f"(model {model_total / 1e6:.1f} M parameters, each weight once)"
            )
        a.set_yticks(y, df["part"])
        a.invert_yaxis()
        a.set(xlabel=unit, xlim=(0, float(values.max()) * 1.2 if len(values) else 1))
        a.grid(alpha=0.3, axis="x")
    bx.set_yticklabels([])
    ax.set_title("time")
    bx.set_title("size")
    return finish(fig, "Where a decoding step's time and parameters go", provenance(df), notes)
