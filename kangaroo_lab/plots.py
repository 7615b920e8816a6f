"""Figures as functions of stored data: each plotting function takes the DataFrame(s) of a stored
file (columns as in `figures/data/`) and returns a `matplotlib.figure.Figure`; nothing is shown.

    from kangaroo_lab import plots
    fig = plots.speedup_by_category(pd.read_csv("figures/data/bench/summary.csv"))
    plots.build_figures()        # every figure in figures/ (PNG + PDF) from figures/data/, no GPU

Data-prep helpers sit next to the figure that uses them and are public, because the notebooks print
those tables too: `position_acceptance`, `ctar_from_trace`, `threshold_tradeoff`, `tradeoff_curve`,
`tree_sweep_grid`, `step_time_ratios`, `provenance`, `split_notes`. `round_tree` draws one round of a
generation (a `decoding.Round`) live in a notebook; it is not one of the stored figures.

Every figure carries where its numbers come from ("device · versions", from the table's own
`device` and `versions` columns, or `torch`/`transformers`) in a small footer; projection figures
say "PROJECTION" in their title. Colours are fixed per method (`METHOD_COLORS`) across figures, and
methods appear in one order (`METHOD_ORDER`, the benchmark's).
"""

from __future__ import annotations

import functools
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter

from .adapter import DEFAULT_EXIT_LAYER
from .bench import METHODS as BENCH_METHODS
from .questions import CATEGORIES
from .decoding import DEFAULTS, TREE_METHODS  # TREE_METHODS: the methods `tree_sweep` draws as heatmaps

METHOD_ORDER = BENCH_METHODS  # ar, our speculative methods, then transformers' methods (bench.METHODS)
METHOD_COLORS = {
    "ar": "#7f7f7f",  # grey: the baseline
    "kangaroo": "#1f77b4",  # blue: the paper's chain
    "pld": "#ff7f0e",  # orange: prompt lookup on our engine
    "kangaroo-tree": "#2ca02c",  # green: the adapter drafts a token tree
    "kangaroo+lookup": "#9467bd",  # purple: the adapter's tree + the lookup branch, one verification
    "kangaroo-noadapter": "#9ecae1",  # light blue: the chain without the adapter
    "hf": "#3f3f3f",  # dark grey: transformers' own baseline
    "hf-pld": "#fdae6b",  # light orange: transformers' prompt lookup
    "hf-earlyexit": "#8c564b",  # brown
}
METHOD_LABELS = {
    "ar": "autoregressive (ar)",
    "kangaroo": "Kangaroo (chain)",
    "pld": "prompt lookup (pld)",
    "kangaroo-tree": "Kangaroo tree",
    "kangaroo+lookup": "Kangaroo tree + lookup",
    "kangaroo-noadapter": "Kangaroo, no adapter",
    "hf": "transformers (hf)",
    "hf-pld": "transformers prompt lookup (hf-pld)",
    "hf-earlyexit": "early-exit assisted (hf-earlyexit)",
}
CATEGORY_LABELS = {
    "mt_bench": "MT-Bench",
    "translation": "Translation",
    "summarization": "Summarization",
    "qa": "QA",
    "math_reasoning": "Math",
    "rag": "RAG",
    "overall": "Overall",
}
CATEGORY_COLORS = dict(zip(CATEGORIES, ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02")))
ACCEPTED_COLOR, REJECTED_COLOR = "#2ca02c", "#d62728"
DPI = 150
WIDE, TALL = 11.0, 4.2  # inches: a two-panel figure
N_LAYERS = 30  # SmolLM2-135M-Instruct, the model the stored sweeps ran on (exit ratio = l / N)
ROUND_KEY = ["category", "question_id", "turn", "round"]  # one draft round of a trace
NOTE = "note"  # the `method` of summary rows that carry a free-text note in `category` (bench.NOTE)


# ------------------------------------------------------------------------------------ shared
def provenance(*frames: pd.DataFrame) -> str:
    """ "device · versions" from the tables' `device` and `versions` (or `torch`, `transformers`) columns;
    "" when none of them has such columns (a frame computed in a notebook may add them)."""
    devices, versions = [], []
    for df in frames:
        if df is None:
            continue
        devices += _unique(df, "device")
        versions += _unique(df, "versions") if "versions" in df else _library_versions(df)
    devices, versions = list(dict.fromkeys(devices)), list(dict.fromkeys(versions))
    return " · ".join(p for p in (" / ".join(devices), " / ".join(versions)) if p)


def _unique(df: pd.DataFrame, column: str) -> list[str]:
    return [str(v) for v in df[column].dropna().unique()] if column in df else []


def _library_versions(df: pd.DataFrame) -> list[str]:
    """The training tables' `torch` and `transformers` columns as "torch X, transformers Y", once each."""
    libs = [c for c in ("torch", "transformers") if c in df]
    if not libs:
        return []
    pairs = df[libs].dropna().drop_duplicates().astype(str).itertuples(index=False)
    return [", ".join(f"{lib} {v}" for lib, v in zip(libs, pair)) for pair in pairs]


def split_notes(summary: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """summary.csv -> (its metric rows, the free-text notes carried by rows whose method is "note")."""
    is_note = summary["method"] == NOTE
    return summary[~is_note].copy(), [str(n) for n in summary.loc[is_note, "category"].dropna()]


def _new_figure(ncols: int = 1, nrows: int = 1, size=(WIDE, TALL), **kw):
    """fig, axes with constrained layout (the footer and the title get their own room)."""
    return plt.subplots(nrows, ncols, figsize=size, layout="constrained", squeeze=False, **kw)


def _two_panels(size=(WIDE, TALL)):
    """fig, left axes, right axes."""
    fig, axes = _new_figure(2, size=size)
    return fig, axes[0, 0], axes[0, 1]


def _finish(fig: Figure, title: str, source: str, notes: Iterable[str] = ()) -> Figure:
    """Bold title on top; "device · versions" and any notes in a small grey footer."""
    fig.suptitle("\n".join(textwrap.wrap(title, int(fig.get_figwidth() * 8.5))), fontsize=12, fontweight="bold")
    width = max(60, int(fig.get_figwidth() * 17))  # characters per footer line at 7 pt
    lines = textwrap.wrap(source, width) + [line for n in notes for line in textwrap.wrap(f"note: {n}", width)]
    if lines:
        fig.supxlabel("\n".join(lines), x=0.005, ha="left", fontsize=7, color="0.35")
    return fig


def _method_order(methods: Iterable[str]) -> list[str]:
    """The methods present, in `METHOD_ORDER`; unknown ones after, in their order of appearance."""
    seen = list(dict.fromkeys(methods))
    return [m for m in METHOD_ORDER if m in seen] + [m for m in seen if m not in METHOD_ORDER]


def _method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def _category_order(categories: Iterable[str]) -> list[str]:
    seen = list(dict.fromkeys(categories))
    ordered = [c for c in CATEGORIES if c in seen] + [c for c in seen if c not in CATEGORIES and c != "overall"]
    return ordered + (["overall"] if "overall" in seen else [])


def _color(method: str) -> str:
    return METHOD_COLORS.get(method, "black")


def _label_bars(ax, bars, fmt: str = "{:.2f}", fontsize: float = 6.5):
    for bar in bars:
        h = bar.get_height()
        if np.isfinite(h):
            ax.annotate(
                fmt.format(h),
                (bar.get_x() + bar.get_width() / 2, h),
                xytext=(0, 1.5),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=fontsize,
            )


def save_figure(fig: Figure, out_dir, stem: str) -> list[Path]:
    """fig -> out_dir/stem.png (150 dpi) and out_dir/stem.pdf; returns both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    for path in paths:  # no creation date in the PDF: an unchanged figure rebuilds to the same bytes
        fig.savefig(path, dpi=DPI, metadata={"CreationDate": None} if path.suffix == ".pdf" else None)
    return paths


# ------------------------------------------------------------------------------------ training
def _run_label(run: dict) -> str:
    steps = int(run["steps_total"])
    label = f"l={int(run['exit_layer'])} {run['variant']}, {steps} steps, lr {run['lr_max']:g}"
    if "data" in run:
        label += f", {run['data']}" + (f", unroll {int(run['unroll'])}" if int(run.get("unroll", 1)) > 1 else "")
    return label


def training_curves(curves: pd.DataFrame) -> Figure:
    """training_curves.csv: held-out expected acceptance, top-1 and loss against training tokens, one line per run.

    Each run is scored on the held-out part of its own corpus (the templates' or the real mix's)."""
    runs = ["exit_layer", "variant", "steps_total", "lr_max"] + [c for c in ("data", "unroll") if c in curves]
    fig, axes = _new_figure(3, size=(13.5, 4.4))
    panels = [
        ("expected_accept", "held-out expected acceptance\nE[Σ min(p, q)]"),
        ("top1", "held-out top-1 agreement\nwith the full model"),
        ("loss", "held-out loss (soft CE, nats)"),
    ]
    colors = plt.get_cmap("tab20")
    for i, (key, group) in enumerate(curves.sort_values("step").groupby(runs, sort=True)):
        tokens = group["tokens"].fillna(0) / 1e6  # the step-0 evaluation precedes any training token
        run = dict(zip(runs, key))
        label = _run_label(run)
        for ax, (column, _) in zip(axes[0], panels):
            ax.plot(
                tokens,
                group[column],
                marker="o" if len(group) == 1 else None,
                ms=4,
                lw=1.4,
                ls="--" if str(run.get("data", "")).startswith("templates") else "-",  # the earlier data: dashed
                color=colors(i % 20),
                label=label,
            )
    for ax, (column, ylabel) in zip(axes[0], panels):
        ax.set(xlabel="training tokens (millions)", ylabel=ylabel)
        ax.grid(alpha=0.3)
    axes[0, 2].set_yscale("log")  # the untrained step-0 loss is ~6x the trained one
    axes[0, 2].set_yticks([2, 3, 4, 6, 10, 16])
    axes[0, 2].yaxis.set_major_formatter(ScalarFormatter())
    axes[0, 2].yaxis.set_minor_formatter(NullFormatter())
    axes[0, 0].set_ylim(bottom=0)
    axes[0, 1].set_ylim(bottom=0)
    axes[0, 2].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), title="run", title_fontsize=8)
    return _finish(fig, "Adapter training: held-out metrics per evaluation", provenance(curves))


ABLATION_COLUMNS = {  # column -> (header, format)
    "exit_layer": ("exit\nlayer l", "{:d}"),
    "variant": ("adapter", "{}"),
    "data": ("training\nprompts", "{}"),
    "unroll": ("unroll", "{:d}"),
    "parameters": ("parameters", "{:,d}"),
    "steps": ("steps", "{:d}"),
    "lr": ("lr", "{:g}"),
    "top1": ("held-out\ntop-1", "{:.3f}"),
    "expected_accept": ("expected\nacceptance", "{:.3f}"),
    "heldout_loss": ("held-out\nloss", "{:.2f}"),
    "accept_pos1": ("accept\n@1", "{:.2f}"),
    "accept_pos2": ("accept\n@2", "{:.2f}"),
    "accept_pos3": ("accept\n@3", "{:.2f}"),
    "mean_accepted_eta0": ("mean accepted\n(η=0, γ=6)", "{:.2f}"),
    "minutes": ("train\nminutes", "{:.1f}"),
    "gpu_share": ("GPU shared\nby (up to)", "{:d}"),
    "shipped": ("shipped", "{}"),
}
VARIANT_ORDER = ("none", "linear", "attention", "attention+ffn")


def ablation_table(ablation: pd.DataFrame) -> pd.DataFrame:
    """adapter_ablation.csv -> the rows of the ablation table (sorted by exit layer, adapter size, steps, lr)."""
    order = {v: i for i, v in enumerate(VARIANT_ORDER)}
    df = ablation.assign(_variant=ablation["variant"].map(order).fillna(len(order)))
    keys = ["exit_layer", "_variant", *[c for c in ("data", "unroll") if c in df], "steps", "lr"]
    df = df.sort_values(keys).drop(columns="_variant")
    return df[[c for c in ABLATION_COLUMNS if c in df]].reset_index(drop=True)


def _cell(value, fmt: str) -> str:
    """One table cell: "–" for a missing value, "yes" / "" for a flag, else `fmt`."""
    if pd.isna(value):
        return "–"
    if isinstance(value, (bool, np.bool_)) or fmt == "{}" and str(value) in ("True", "False"):
        return "yes" if str(value) == "True" else ""
    return fmt.format(int(value) if "d" in fmt else value)


def adapter_ablation(ablation: pd.DataFrame) -> Figure:
    """adapter_ablation.csv as a table (the paper's adapter ablation); the default adapter's row highlighted."""
    table = ablation_table(ablation)
    cells = [[_cell(v, ABLATION_COLUMNS[c][1]) for c, v in row.items()] for _, row in table.iterrows()]
    headers = [ABLATION_COLUMNS[c][0] for c in table.columns]
    fig, axes = _new_figure(size=(12.5, 1.5 + 0.3 * (len(table) + 2)))
    ax = axes[0, 0]
    ax.axis("off")
    widths = np.array(
        [max(len(h) for h in [*headers[i].split("\n"), *(r[i] for r in cells)]) + 3 for i in range(len(headers))], float
    )
    t = ax.table(
        cellText=cells, colLabels=headers, cellLoc="center", bbox=[0, 0, 1, 1], colWidths=list(widths / widths.sum())
    )
    t.auto_set_font_size(False)
    t.set_fontsize(8.5)
    for (r, _), cell in t.get_celld().items():
        cell.set_edgecolor("0.8")
        if r == 0:
            cell.set_facecolor("0.92")
            cell.set_height(cell.get_height() * 2)
    shipped = table["shipped"].astype(str).eq("True") if "shipped" in table else True
    default = table.index[(table["exit_layer"] == DEFAULT_EXIT_LAYER) & (table["variant"] == "attention") & shipped]
    for r in default:
        for c in range(len(table.columns)):
            t[r + 1, c].set_facecolor("#fff3c4")
    return _finish(
        fig,
        "Adapter ablation: architecture, exit layer and training budget (held-out prompts)",
        provenance(ablation),
        [
            (
                "highlighted: the default adapter (shipped, exit layer "
                f"{DEFAULT_EXIT_LAYER}, attention); accept@i = share of i-th drafts "
                "accepted with η = 0"
            )
        ]
        + (
            [
                (
                    "each run is scored on held-out answers of its own training prompts; on the same "
                    "answers: figures/data/real_mix/heldout_eval.csv"
                )
            ]
            if "data" in ablation
            else []
        )
        + (
            ["train minutes: wall time of the run; a GPU shared by k trainings at once stretches it up to k-fold"]
            if "gpu_share" in ablation and (ablation["gpu_share"] > 1).any()
            else []
        ),
    )


# ------------------------------------------------------------------------------------ draft traces
def _rounds(trace: pd.DataFrame) -> pd.DataFrame:
    """The trace sorted by round and position, with `leading` (1 while every draft so far in the round
    was accepted) and `prior_min` (the lowest confidence among the earlier drafts of the round; +inf at
    position 1)."""
    df = trace.sort_values(ROUND_KEY + ["position"]).reset_index(drop=True)
    rounds = df.groupby(ROUND_KEY, sort=False)
    df["leading"] = rounds["accepted"].cumprod().astype(int)
    running_min = rounds["confidence"].cummin()
    df["prior_min"] = running_min.groupby([df[k] for k in ROUND_KEY], sort=False).shift(1).fillna(np.inf)
    return df


def position_acceptance(trace: pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    """Acceptance by draft position (the paper's per-position acceptance), from bench/draft_trace.csv.

    acceptance = share of i-th drafts accepted (= share of rounds whose first i drafts were all
    accepted, since a draft after a rejected one is not accepted); conditional = share of i-th drafts
    accepted among those whose earlier drafts were all accepted. `by="category"` splits by category."""
    df = _rounds(trace)
    df["reached"] = df.groupby(ROUND_KEY, sort=False)["leading"].shift(1).fillna(1).astype(int)
    keys = ([by] if by else []) + ["position"]
    out = (
        df.groupby(keys)
        .agg(
            drafts=("accepted", "size"),
            accepted=("accepted", "sum"),
            reached=("reached", "sum"),
            accepted_reached=("leading", "sum"),
        )
        .reset_index()
    )
    out["acceptance"] = out["accepted"] / out["drafts"]
    out["conditional"] = out["accepted_reached"] / out["reached"].where(out["reached"] > 0)
    return out.drop(columns="accepted_reached")


def ctar_from_trace(trace: pd.DataFrame, windows: Iterable[int] = range(1, 7), by: str | None = None) -> pd.DataFrame:
    """CTAR(w) from a trace: share of rounds whose first w drafts were all accepted (= rounds that emitted
    more than w tokens). Columns: [by,] window, rounds, ctar."""
    df = _rounds(trace)
    per_round = df.groupby(ROUND_KEY + ([by] if by and by not in ROUND_KEY else []), sort=False)["leading"].sum()
    per_round = per_round.rename("leading").reset_index()
    rows = []
    for key, group in per_round.groupby(by) if by else [(None, per_round)]:
        for w in windows:
            rows.append(
                ({by: key} if by else {})
                | {"window": w, "rounds": len(group), "ctar": float((group["leading"] >= w).mean())}
            )
    return pd.DataFrame(rows)


def acceptance_by_position(trace: pd.DataFrame) -> Figure:
    """bench/draft_trace.csv: share of i-th drafts accepted, overall (with the conditional rate) and per category."""
    overall, per_cat = position_acceptance(trace), position_acceptance(trace, by="category")
    fig, ax, bx = _two_panels()
    bars = ax.bar(
        overall["position"], overall["acceptance"], color=_color("kangaroo"), label="share of i-th drafts accepted"
    )
    ax.plot(
        overall["position"],
        overall["conditional"],
        "o--",
        color="black",
        ms=4,
        label="accepted given drafts 1..i-1 accepted",
    )
    for bar, value, conditional in zip(bars, overall["acceptance"], overall["conditional"]):
        # inside a tall bar (white), above a short one; never on the conditional line's marker just above it
        inside = value > 0.12 or (pd.notna(conditional) and abs(conditional - value) < 0.06)
        ax.annotate(
            f"{value:.2f}",
            (bar.get_x() + bar.get_width() / 2, value if not inside else value / 2),
            xytext=(0, 0 if inside else 1.5),
            textcoords="offset points",
            ha="center",
            va="center" if inside else "bottom",
            fontsize=8,
            color="white" if inside and value > 0.04 else "black",
        )
    ax.set(xlabel="draft position i in its round", ylabel="acceptance", ylim=(0, 1.05), title="all categories")
    for category in _category_order(per_cat["category"]):
        d = per_cat[per_cat["category"] == category]
        bx.plot(
            d["position"],
            d["acceptance"],
            "o-",
            ms=4,
            color=CATEGORY_COLORS.get(category),
            label=CATEGORY_LABELS.get(category, category),
        )
    bx.set(
        xlabel="draft position i in its round",
        ylabel="share of i-th drafts accepted",
        ylim=(0, 1.05),
        title="per category",
    )
    for a in (ax, bx):
        a.set_xticks(sorted(overall["position"].unique()))
        a.grid(alpha=0.3, axis="y")
        a.legend(fontsize=8)
    max_draft = int(trace["position"].max())
    return _finish(
        fig,
        f"Acceptance by draft position (trace at η = 0, γ = {max_draft})",
        provenance(trace),
        [f"{_n_rounds(trace):,} rounds, {len(trace):,} drafts"],
    )


def _n_rounds(trace: pd.DataFrame) -> int:
    return len(trace.drop_duplicates(ROUND_KEY))


BINS = np.linspace(0, 1, 21)


def _confidence_hist(ax, trace: pd.DataFrame, threshold: float | None, legend: bool = True):
    """Accepted vs rejected drafts' confidence, each normalised to its own count (bars sum to 1)."""
    for flag, name, color in ((1, "accepted", ACCEPTED_COLOR), (0, "rejected", REJECTED_COLOR)):
        conf = trace.loc[trace["accepted"] == flag, "confidence"]
        if len(conf):
            ax.hist(
                conf,
                bins=BINS,
                weights=np.full(len(conf), 1 / len(conf)),
                color=color,
                alpha=0.55,
                edgecolor=color,
                label=f"{name} ({len(conf):,})",
            )
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", lw=1, label=f"η = {threshold:g}")
    ax.set_xlim(0, 1)
    if legend:
        ax.legend(fontsize=8)


def confidence_accepted_vs_rejected(trace: pd.DataFrame, threshold: float = DEFAULTS.threshold) -> Figure:
    """bench/draft_trace.csv: histograms of the draft's top-1 probability for accepted and rejected drafts."""
    fig, ax, bx = _two_panels()
    _confidence_hist(ax, trace, threshold)
    ax.set(
        xlabel="draft confidence (top-1 probability of the draft head)",
        ylabel="share of the group's drafts",
        title="all positions",
    )
    _confidence_hist(bx, trace[trace["position"] == 1], threshold)
    bx.set(
        xlabel="draft confidence (top-1 probability of the draft head)",
        ylabel="share of the group's drafts",
        title="first draft of each round only",
    )
    return _finish(
        fig,
        "Draft confidence: accepted vs rejected drafts",
        provenance(trace),
        ["rejected = not accepted, including drafts after the first rejection in their round"],
    )


def confidence_by_category(trace: pd.DataFrame, threshold: float = DEFAULTS.threshold) -> Figure:
    """bench/draft_trace.csv: the accepted / rejected confidence histograms, one small panel per category."""
    categories = _category_order(trace["category"])
    ncols = min(3, len(categories))
    nrows = -(-len(categories) // ncols)
    fig, axes = _new_figure(ncols, nrows, size=(WIDE, 1.2 + 2.7 * nrows), sharex=True, sharey=True)
    for ax, category in zip(axes.flat, categories):
        d = trace[trace["category"] == category]
        _confidence_hist(ax, d, threshold, legend=False)
        share = d["accepted"].mean()
        ax.set_title(
            f"{CATEGORY_LABELS.get(category, category)}: {share:.0%} of {len(d):,} drafts accepted", fontsize=9
        )
    for ax in axes.flat[len(categories) :]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("draft confidence")
    for ax in axes[:, 0]:
        ax.set_ylabel("share of group")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(
        [h for h in handles], [lb.split(" (")[0] for lb in labels], loc="outside upper right", fontsize=8, ncols=3
    )
    return _finish(fig, "Draft confidence by category: accepted vs rejected", provenance(trace))


def tradeoff_curve(trace: pd.DataFrame, thresholds: Iterable[float] | None = None) -> pd.DataFrame:
    """`threshold_tradeoff` at each threshold (default 0, 0.01, ..., 1): one row per threshold."""
    df = _rounds(trace)
    thresholds = np.round(np.linspace(0, 1, 101), 2) if thresholds is None else thresholds
    return pd.DataFrame([_tradeoff(df, t) for t in thresholds])


def threshold_tradeoff(trace: pd.DataFrame, threshold: float) -> dict:
    """What a confidence threshold η would have done to a trace recorded at η = 0.

    With early exit, a round drafts until (and including) its first draft whose confidence is below
    the threshold: that draft is still verified, the drafts after it are never made. So a draft is
    proposed iff every earlier draft of its round has confidence >= threshold. Returns the threshold,
    the shares of accepted drafts kept (`accepted_kept`) and of rejected drafts avoided
    (`rejected_avoided`), with the drafts per round. An estimate per round: a real run at this
    threshold would also start its later rounds elsewhere."""
    return _tradeoff(_rounds(trace), threshold)


def _tradeoff(df: pd.DataFrame, threshold: float) -> dict:
    proposed = df["prior_min"] >= threshold
    accepted = df["accepted"] == 1
    n_acc, n_rej, n_rounds = int(accepted.sum()), int((~accepted).sum()), _n_rounds(df)
    kept, made_rejected = int((proposed & accepted).sum()), int((proposed & ~accepted).sum())
    return {
        "threshold": float(threshold),
        "accepted_kept": kept / n_acc if n_acc else float("nan"),
        "rejected_avoided": (n_rej - made_rejected) / n_rej if n_rej else float("nan"),
        "drafts_per_round": int(proposed.sum()) / n_rounds if n_rounds else float("nan"),
        "accepted_per_round": kept / n_rounds if n_rounds else float("nan"),
    }


def eta_tradeoff(trace: pd.DataFrame, threshold: float = DEFAULTS.threshold) -> Figure:
    """bench/draft_trace.csv: for each threshold η, the rejected drafts it saves against the accepted drafts it
    loses."""
    curve, here = tradeoff_curve(trace), threshold_tradeoff(trace, threshold)
    fig, ax, bx = _two_panels()
    ax.plot(curve["threshold"], curve["rejected_avoided"], color=REJECTED_COLOR, label="rejected drafts avoided")
    ax.plot(curve["threshold"], 1 - curve["accepted_kept"], color=ACCEPTED_COLOR, label="accepted drafts lost")
    ax.axvline(threshold, color="black", ls="--", lw=1, label=f"η = {threshold:g}")
    ax.set(
        xlabel="threshold η (stop drafting after a draft with confidence < η)",
        ylabel="share of drafts",
        ylim=(0, 1.02),
        xlim=(0, 1),
    )
    ax2 = ax.twinx()
    ax2.plot(
        curve["threshold"], curve["drafts_per_round"], color="0.5", ls=":", label="drafts proposed per round (right)"
    )
    ax2.set_ylabel("drafts proposed per round", color="0.4")
    ax2.set_ylim(bottom=0)
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=8, loc="lower left", bbox_to_anchor=(0, 1.01), ncols=2, frameon=False)
    bx.plot(curve["rejected_avoided"], 1 - curve["accepted_kept"], color="black")
    for e in (0.2, 0.4, 0.6, 0.8):
        p = curve.iloc[(curve["threshold"] - e).abs().argmin()]
        bx.plot(p["rejected_avoided"], 1 - p["accepted_kept"], ".", color="0.4")
        bx.annotate(
            f"η={e:g}",
            (p["rejected_avoided"], 1 - p["accepted_kept"]),
            fontsize=7,
            color="0.4",
            xytext=(-4, 4),
            textcoords="offset points",
            ha="right",
        )
    bx.plot(
        here["rejected_avoided"],
        1 - here["accepted_kept"],
        "o",
        ms=8,
        color=_color("kangaroo"),
        label=f"η = {threshold:g}: {here['rejected_avoided']:.0%} of rejected drafts avoided, "
        f"{1 - here['accepted_kept']:.0%} of accepted lost",
    )
    bx.set(
        xlabel="share of rejected drafts avoided",
        ylabel="share of accepted drafts lost",
        xlim=(0, 1.02),
        ylim=(0, 1.02),
    )
    bx.legend(fontsize=8, loc="upper left")
    for a in (ax, bx):
        a.grid(alpha=0.3)
    return _finish(
        fig,
        "The confidence threshold η: wasted drafts saved vs accepted drafts lost",
        provenance(trace),
        [
            (
                "replayed on a trace recorded at η = 0: a round's drafts up to and including its first "
                "draft with confidence < η count as proposed"
            )
        ],
    )


def ctar(summary: pd.DataFrame, trace: pd.DataFrame | None = None) -> Figure:
    """bench/summary.csv (+ bench/draft_trace.csv): CTAR(w), the share of rounds emitting more than w tokens."""
    rows, notes = split_notes(summary)
    windows = sorted(int(c.split("_")[1]) for c in rows if c.startswith("ctar_"))
    columns = [f"ctar_{w}" for w in windows]
    rows = rows.dropna(subset=columns, how="all")
    fig, ax, bx = _two_panels()
    overall, capped = rows[rows["category"] == "overall"], []
    for method in _method_order(overall["method"]):
        values = overall.loc[overall["method"] == method, columns].iloc[0].astype(float)
        ax.plot(windows, values, "o-", color=_color(method), label=_method_label(method))
        zero = np.flatnonzero(values.to_numpy() == 0)
        if len(zero) and zero[0] > 0 and (values.iloc[zero[0] :] == 0).all():  # CTAR(w) = 0 from some w on
            capped.append(f"{_method_label(method)}: no round emitted more than {windows[zero[0]]} tokens")
    if capped:
        notes = ["; ".join(capped)] + notes
    if trace is not None:
        t = ctar_from_trace(trace, windows)
        ax.plot(t["window"], t["ctar"], "s--", color="black", ms=4, label="Kangaroo draft trace, η = 0")
    ax.set(title="overall", xlabel="window w (tokens)", ylabel="CTAR(w): share of rounds emitting > w tokens")
    main = rows[(rows["method"] == "kangaroo") & (rows["category"] != "overall")]
    for category in _category_order(main["category"]):
        values = main.loc[main["category"] == category, columns].iloc[0].astype(float)
        bx.plot(
            windows,
            values,
            "o-",
            ms=4,
            color=CATEGORY_COLORS.get(category),
            label=CATEGORY_LABELS.get(category, category),
        )
    bx.set(title="Kangaroo per category", xlabel="window w (tokens)", ylabel="CTAR(w)")
    if main.empty:
        bx.text(0.5, 0.5, "no per-category Kangaroo rows", transform=bx.transAxes, ha="center", color="0.4")
    for a in (ax, bx):
        a.set(ylim=(-0.02, 1.02), xticks=windows)  # a line at 0 (ar) stays visible
        a.grid(alpha=0.3)
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=8)
    return _finish(fig, "Consistent token acceptance rate CTAR(w)", provenance(summary, trace), notes)


# ------------------------------------------------------------------------------------ benchmark
def speedup_by_category(summary: pd.DataFrame) -> Figure:
    """bench/summary.csv: speedup over ar (top) and tokens per round (bottom) per category, every method
    (Spec-Bench style), one bar per method in `METHOD_ORDER`."""
    rows, notes = split_notes(summary)
    categories = _category_order(rows["category"])
    methods = [m for m in _method_order(rows["method"]) if m != "ar"]
    fig, axes = _new_figure(1, 2, size=(13.5, 8.2))
    ax, bx = axes[:, 0]
    _grouped_bars(ax, rows, "speedup_vs_ar", categories, methods)
    ax.axhline(1, color=_color("ar"), lw=1.2, ls="--", label=_method_label("ar"))
    ax.set(ylabel="speedup over ar\n(tokens/s ÷ ar tokens/s)", title="speedup")
    accepting = [m for m in methods if rows.loc[rows["method"] == m, "mean_accepted"].notna().any()]
    _grouped_bars(bx, rows, "mean_accepted", categories, accepting)
    bx.axhline(1, color=_color("ar"), lw=1.2, ls="--")
    bx.set(ylabel="tokens per round\n(accepted drafts + the target's token)", title="tokens per verification round")
    for a in (ax, bx):
        a.set_ylim(0, a.get_ylim()[1] * 1.1)  # room for the bar labels
        a.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0, 1.08), ncols=6, frameon=False)
    same = rows[(rows["category"] == "overall") & rows["identical_to_ar"].notna() & (rows["method"] != "ar")]
    if len(same):
        same = same.set_index("method")["identical_to_ar"].astype(float)
        notes = [
            "questions answered exactly as ar did (greedy, token for token): "
            + ", ".join(f"{m} {same[m]:.0%}" for m in _method_order(same.index))
        ] + notes
    return _finish(fig, "Speedup and tokens per round per Spec-Bench category", provenance(summary), notes)


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
            color=_color(method),
            label=_method_label(method),
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
            _label_bars(ax, bars, fmt, 6.5 if len(methods) > 3 else 7.5)
    ax.set_xticks(x, [CATEGORY_LABELS.get(c, c) for c in categories])
    ax.set_xlabel("Spec-Bench category")


def methods_overview(summary: pd.DataFrame) -> Figure:
    """bench/summary.csv, overall rows: per method its speedup over ar, its tokens per round (of the
    candidates it verified), its draft steps and host syncs per round, and whether it answered as ar did."""
    rows, notes = split_notes(summary)
    overall = rows[rows["category"] == "overall"].drop_duplicates("method").set_index("method")
    methods = _method_order(overall.index)
    o = overall.reindex(methods)
    y = np.arange(len(methods))
    fig, axes = _new_figure(
        3, size=(13.5, 1.9 + 0.5 * len(methods)), sharey=True, gridspec_kw={"width_ratios": [1.0, 1.3, 0.9]}
    )
    ax, bx, cx = axes[0]
    colors = [_color(m) for m in methods]
    for a, column, fmt, xlabel in (
        (ax, "speedup_vs_ar", "{:.2f}×", "speedup over ar (overall tokens/s ÷ ar's)"),
        (bx, "mean_accepted", "{:.2f}", "tokens per round (accepted + the target's)"),
    ):
        values = o[column].astype(float).to_numpy()
        bars = a.barh(y, values, height=0.6, color=colors)
        for bar, v, m in zip(bars, values, methods):
            if np.isfinite(v):
                extra = ""
                if column == "mean_accepted" and pd.notna(o.loc[m, "nodes_per_round"]) and m != "ar":
                    extra = f"   ({o.loc[m, 'nodes_per_round']:.3g} candidates verified)"
                a.annotate(
                    fmt.format(v) + extra,
                    (v, bar.get_y() + bar.get_height() / 2),
                    xytext=(3, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=8,
                )
        a.axvline(1, color=_color("ar"), ls="--", lw=1)
        top = np.nanmax(values) if np.isfinite(values).any() else 1.0
        a.set(xlabel=xlabel, xlim=(0, top * (1.9 if column == "mean_accepted" else 1.25)))
        a.grid(alpha=0.3, axis="x")
    ax.set_yticks(y, [_method_label(m) for m in methods])
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
    return _finish(fig, title, provenance(summary), notes)


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


def _sweep_parts(sweep: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """A sweep CSV -> (its kangaroo rows, a note on the ar drift measured by the closing ar row)."""
    ar = sweep[sweep["method"] == "ar"]
    notes = []
    if len(ar) >= 2 and pd.notna(ar["speedup_vs_ar"].iloc[-1]):
        drift = float(ar["speedup_vs_ar"].iloc[-1])
        notes.append(
            f"ar ran at {drift:.2f}x its first speed by the end of the sweep"
            + ("" if 0.9 <= drift <= 1.1 else ": the machine drifted, treat these speedups with care")
        )
    if len(ar):
        notes.append(
            f"ar baseline {float(ar['tokens_per_s'].iloc[0]):.1f} tokens/s; "
            f"{int(ar['questions'].iloc[0])} questions per setting"
        )
    return sweep[sweep["method"] != "ar"].copy(), notes


def speedup_vs_exit_ratio(sweep: pd.DataFrame, n_layers: int = N_LAYERS) -> Figure:
    """bench/sweep_exit_layer.csv: speedup and mean accepted tokens against the exit ratio l / N."""
    rows, notes = _sweep_parts(sweep)
    rows = rows.sort_values("exit_layer")
    ratio = rows["exit_layer"] / n_layers
    shipped = rows["adapter"].astype(str).eq("shipped")
    fig, ax, bx = _two_panels()
    for a, column, ylabel in (
        (ax, "speedup_vs_ar", "speedup over ar"),
        (bx, "mean_accepted", "mean accepted tokens per round"),
    ):
        a.plot(
            ratio[shipped],
            rows.loc[shipped, column],
            "o-",
            ms=7,
            color=_color("kangaroo"),
            label="trained adapter (shipped)",
        )  # the line joins trained adapters only
        if (~shipped).any():
            a.plot(
                ratio[~shipped],
                rows.loc[~shipped, column],
                "o",
                ms=7,
                mfc="white",
                color=_color("kangaroo"),
                label="untrained adapter",
            )
        for r, layer, v in zip(ratio, rows["exit_layer"], rows[column]):
            a.annotate(f"l={int(layer)}", (r, v), xytext=(0, 7), textcoords="offset points", ha="center", fontsize=8)
        a.axhline(1, color=_color("ar"), ls="--", lw=1, label="ar" if column == "speedup_vs_ar" else "1 token")
        a.set(xlabel=f"exit ratio l / N (N = {n_layers} layers)", ylabel=ylabel)
        a.set_ylim(0, max(1.0, float(rows[column].max())) * 1.12)
        a.grid(alpha=0.3)
        a.legend(fontsize=8, loc="lower right")
    threshold, max_draft = rows["threshold"].iloc[0], rows["max_draft"].iloc[0]
    title = f"Where to exit: speedup and accepted tokens vs exit ratio (η = {threshold:g}, γ = {int(max_draft)})"
    return _finish(fig, title, provenance(sweep), notes)


def _heatmap(
    fig,
    ax,
    grid: pd.DataFrame,
    label: str,
    fmt: str,
    cmap: str,
    mark_best: bool,
    sub: pd.DataFrame | None = None,
    sub_fmt: str = "{:.2f}",
):
    """grid (rows x columns) as coloured cells, each annotated with fmt (and a smaller line from `sub`, same
    shape); "not run" where a value is missing; a red box on the highest cell if mark_best."""
    im = ax.imshow(grid.to_numpy(float), origin="lower", aspect="auto", cmap=cmap)
    ax.set_xticks(range(grid.shape[1]), [f"{int(c)}" for c in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [f"{r:g}" for r in grid.index])
    values = grid.to_numpy(float)
    lo, hi = np.nanmin(values), np.nanmax(values)
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            dark = (v - lo) / (hi - lo or 1) < 0.6
            text = fmt.format(v) if sub is None else f"{fmt.format(v)}\n{sub_fmt.format(sub.iat[i, j])}"
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=7 if sub is None else 8,
                color="white" if dark else "black",
            )
        elif sub is not None:
            ax.text(j, i, "not run", ha="center", va="center", fontsize=7, color="0.5")
    if mark_best and np.isfinite(values).any():
        i, j = np.unravel_index(np.nanargmax(values), values.shape)
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=2))
    fig.colorbar(im, ax=ax, label=label, shrink=0.9)


def eta_gamma_heatmap(sweep: pd.DataFrame) -> Figure:
    """bench/sweep_threshold.csv: speedup over ar and mean accepted tokens over the grid η x γ (threshold x
    most drafts)."""
    rows, notes = _sweep_parts(sweep)
    fig, ax, bx = _two_panels(size=(WIDE, 4.8))
    for a, column, label, cmap, best in (
        (ax, "speedup_vs_ar", "speedup over ar", "viridis", True),
        (bx, "mean_accepted", "mean accepted tokens per round", "magma", False),
    ):
        grid = rows.pivot_table(index="threshold", columns="max_draft", values=column, aggfunc="mean")
        _heatmap(fig, a, grid, label, "{:.2f}", cmap, best)
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
    return _finish(fig, f"Threshold η × most drafts γ at exit layer l = {layer}", provenance(sweep), notes)


EXIT_LABELS = {"host": "host exit", "device": "device mask"}  # where η stops a round: a host read per draft, or a mask


def tree_sweep_grid(sweep: pd.DataFrame, method: str) -> pd.DataFrame:
    """sweep_tree.csv -> the rows of `method`'s main grid (node budget x depth): η = 0, drafting stopped on the
    device, and the most common top-k and lookup length of those rows; the other rows of the method are variants."""
    rows = sweep[
        (sweep["method"] == method)
        & (sweep["threshold"].astype(float) == 0)
        & (sweep["early_exit"].astype(str) == "device")
    ]
    for column in ("top_k", "lookup_tokens"):
        if len(rows):
            rows = rows[rows[column] == rows[column].mode().iloc[0]]
    return rows


def _setting(row: pd.Series) -> str:
    """A sweep row's settings in words: "top-k 4, depth 3, budget 32, lookup 16, η 0.1 host exit"."""
    method, parts = row["method"], []
    if method == "pld":
        return f"lookup {int(row['lookup_tokens'])} tokens"
    if method in TREE_METHODS:
        depth = (
            f"depth ≤ {int(row['max_draft'])}"
            if row["threshold"] > 0 and row["early_exit"] == "host"
            else f"depth {int(row['max_draft'])}"
        )
        parts += [f"top-k {int(row['top_k'])}", depth, f"budget {int(row['node_budget'])}"]
        if method == "kangaroo+lookup":
            parts.append(f"lookup {int(row['lookup_tokens'])}")
    else:
        parts.append(f"γ {int(row['max_draft'])}")
    if row["threshold"] > 0:
        parts.append(f"η {row['threshold']:g} {EXIT_LABELS.get(str(row['early_exit']), row['early_exit'])}")
    return ", ".join(parts)


def tree_sweep(sweep: pd.DataFrame) -> Figure:
    """bench/sweep_tree.csv: speedup over node budget x depth for the trees (heatmaps, η = 0, top-k and lookup
    fixed) and every other setting as a bar (top-k, η with host exit or device mask, lookup lengths, the chain)."""
    rows, notes = _sweep_parts(sweep)
    rows = rows.assign(
        threshold=rows["threshold"].astype(float).fillna(0), speedup_vs_ar=rows["speedup_vs_ar"].astype(float)
    )
    grids = {m: tree_sweep_grid(rows, m) for m in TREE_METHODS}
    bests = [g.loc[g["speedup_vs_ar"].idxmax()] for g in grids.values() if g["speedup_vs_ar"].notna().any()]
    variants = pd.concat([rows.drop(index=pd.concat(grids.values()).index), pd.DataFrame(bests)])
    place = {m: i for i, m in enumerate(_method_order(rows["method"]))}
    variants = variants.iloc[np.argsort(variants["method"].map(place).to_numpy(), kind="stable")]  # file order within
    fig = plt.figure(figsize=(13.5, 6.2 + 0.3 * len(variants)), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[4.4, 1.4 + 0.3 * len(variants)])  # laid out apart
    for ax, (method, grid) in zip(top.subplots(1, 2), grids.items()):
        _tree_heatmap(top, ax, grid, method)
    best = rows.loc[rows["speedup_vs_ar"].idxmax()] if rows["speedup_vs_ar"].notna().any() else None
    _variant_bars(bottom.subplots(), variants, {b.name for b in bests}, None if best is None else best.name)
    if best is not None:
        notes = [
            (
                f"best setting of the sweep (★): {_method_label(best['method'])}, {_setting(best)}: "
                f"{best['speedup_vs_ar']:.2f}× ar, {best['mean_accepted']:.2f} tokens per round"
            )
        ] + notes
    notes.append(
        "device mask: η only masks nodes on the device (no host read, no work saved); host exit: drafting "
        "stops after the first draft below η, one host read per draft step"
    )
    return _finish(
        fig, "Trees and lookup: speedup over ar for each setting of the tree sweep", provenance(sweep), notes
    )


def _tree_heatmap(fig, ax, grid: pd.DataFrame, method: str):
    """Speedup over node budget (x) x depth (y), each cell also giving tokens per round; red box: the best cell."""
    if grid.empty:
        ax.set_title(_method_label(method), color=_color(method), fontweight="bold")
        ax.text(0.5, 0.5, f"no {method} rows in this sweep", transform=ax.transAxes, ha="center", color="0.4")
        ax.axis("off")
        return
    speed = grid.pivot_table(index="max_draft", columns="node_budget", values="speedup_vs_ar", aggfunc="mean")
    tokens = grid.pivot_table(index="max_draft", columns="node_budget", values="mean_accepted", aggfunc="mean")
    _heatmap(
        fig,
        ax,
        speed,
        "speedup over ar",
        "{:.2f}×",
        "viridis",
        True,
        sub=tokens.reindex_like(speed),
        sub_fmt="{:.2f} tok/round",
    )
    k, lookup = int(grid["top_k"].iloc[0]), int(grid["lookup_tokens"].iloc[0])
    fixed = f"η = 0, top-k {k}" + (f", lookup {lookup} tokens" if method == "kangaroo+lookup" else "")
    ax.set_title(_method_label(method), color=_color(method), fontweight="bold", pad=16)
    ax.text(0.5, 1.015, fixed, transform=ax.transAxes, ha="center", va="bottom", fontsize=8, color="0.3")
    ax.set(xlabel="node budget (nodes verified per round, at most)", ylabel="depth (adapter draft steps)")


def _variant_bars(ax, variants: pd.DataFrame, grid_bests: set, best):
    """One horizontal bar per setting (index: the sweep's row), coloured by method; hatched: the rows in
    `grid_bests` (the best cell of a heatmap); ★ and bold: the row `best`, the best of the whole sweep."""
    y = np.arange(len(variants))
    values = variants["speedup_vs_ar"].to_numpy(float)
    is_grid_best = [i in grid_bests for i in variants.index]
    bars = ax.barh(
        y,
        values,
        height=0.65,
        color=[_color(m) for m in variants["method"]],
        hatch=["//" if g else None for g in is_grid_best],
        edgecolor="white",
    )
    labels = []
    for (_, row), bar, grid_best in zip(variants.iterrows(), bars, is_grid_best):
        starred = row.name == best
        labels.append(
            f"{_method_label(row['method'])}: {_setting(row)}" + (" (best of the heatmap)" if grid_best else "")
        )
        syncs = row.get("syncs_per_round")  # one per round unless η stops drafting on the host
        syncs = f" · {syncs:.2f} host syncs/round" if pd.notna(syncs) and abs(syncs - 1) > 0.01 else ""
        value = f"{row['speedup_vs_ar']:.2f}× · {row['mean_accepted']:.2f} tok/round{syncs}"
        ax.annotate(
            ("★ " if starred else "") + value,
            (bar.get_width(), bar.get_y() + bar.get_height() / 2),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
            fontweight="bold" if starred else "normal",
        )
    ax.set_yticks(y, labels, fontsize=8)
    for tick, i in zip(ax.get_yticklabels(), variants.index):
        tick.set_fontweight("bold" if i == best else "normal")
    ax.invert_yaxis()
    ax.axvline(1, color=_color("ar"), ls="--", lw=1)
    top = np.nanmax(values) if np.isfinite(values).any() else 1.0
    ax.set(
        xlabel="speedup over ar (the sweep's first ar row)",
        xlim=(0, top * 1.45),
        title="the other settings, beside the best cell of each heatmap",
    )
    ax.grid(alpha=0.3, axis="x")
    if variants.empty:
        ax.text(0.5, 0.5, "no settings but ar in this sweep", transform=ax.transAxes, ha="center", color="0.4")


# ------------------------------------------------------------------------------------ step costs
STEP_STYLES = {  # step -> (what it computes over R rows, colour, marker)
    "full": ("full(R): every layer + LM head", "black", "o"),
    "verify": ("verify(R): layers ≥ l + LM head", "#08519c", "s"),
    "draft": ("draft(R): shallow layers + adapter + LM head + top-k", "#d95f02", "^"),
    "shallow": ("shallow(R): layers < l", "#7570b3", "v"),
}


def step_time_ratios(times: pd.DataFrame) -> pd.DataFrame:
    """bench/step_times.csv -> per (model, shape, step, tokens): ms, the shape's full step over the fewest rows
    (`full_ms`, normally full(1)) and `ratio` = ms / full_ms."""
    ms = times.groupby(["model", "shape", "step", "tokens"], as_index=False)["ms"].mean()
    full = ms[ms["step"] == "full"].sort_values("tokens").groupby(["model", "shape"])["ms"].first().rename("full_ms")
    out = ms.join(full, on=["model", "shape"])
    out["ratio"] = out["ms"] / out["full_ms"]
    return out


def step_times(times: pd.DataFrame) -> Figure:
    """bench/step_times.csv: each step's time against the rows R it runs over (log2 axis), in multiples of the
    shape's full(1) step (left axis) and in ms (right axis), one panel per shape: width is almost free."""
    table = step_time_ratios(times)
    shapes = list(dict.fromkeys(table["shape"]))
    fig, axes = _new_figure(len(shapes), size=(6.2 * len(shapes) + 0.8, 5.0), sharey=True)
    steps = [s for s in STEP_STYLES if s in set(table["step"])] + sorted(set(table["step"]) - set(STEP_STYLES))
    top = max(1.2, float(table["ratio"].max()) * 1.12)
    for ax, shape in zip(axes[0], shapes):
        d = table[table["shape"] == shape]
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
    return _finish(
        fig, "Width is almost free: a step over many rows costs little more than over one", provenance(times), notes
    )


def _spread(values: list[float], gap: float) -> list[float]:
    """Sorted label heights, each pushed up to at least `gap` above the one below it."""
    out: list[float] = []
    for v in values:
        out.append(max(v, out[-1] + gap) if out else v)
    return out


# ------------------------------------------------------------------------------------ projection
def projection_7b(projection: pd.DataFrame) -> Figure:
    """bench/projection_7b.csv: the PROJECTED speedup of every method per category on a Vicuna-7B-shaped model
    (grouped bars), and per method its tokens per round against its round cost in full steps."""
    if "method" not in projection:  # files from before the trees: Kangaroo's rows only
        projection = projection.assign(method="kangaroo")
    categories = _category_order(projection["category"])
    methods = _method_order(projection["method"])
    fig, axes = _new_figure(2, size=(14.5, 5.4), gridspec_kw={"width_ratios": [2.3, 1]})
    ax, bx = axes[0]
    _grouped_bars(ax, projection, "projected_speedup", categories, methods, hatch="//")
    ax.axhline(1, color=_color("ar"), ls="--", lw=1, label=_method_label("ar"))
    ax.set(ylabel="PROJECTED speedup over ar")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.08)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0, 1.01), ncols=3, frameon=False)
    _projection_costs(bx, projection[projection["category"] == "overall"], methods)
    notes = [f"source: {s}" for s in _unique(projection, "source")]
    notes.append(
        "projected speedup = tokens per round × full(1) ms ÷ round ms; round ms = the round's layer steps "
        "timed on the 7B shape (random weights; host time left out, for ar too), tokens per round = measured "
        "on SmolLM2-135M: an estimate, not a run"
    )
    if "projected_ar_tokens_per_s" in projection and projection["projected_ar_tokens_per_s"].notna().any():
        notes.append(f"projected ar: {projection['projected_ar_tokens_per_s'].dropna().iloc[0]:.0f} tokens/s")
    return _finish(
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
        ax.plot(xs, speedup * xs, color="0.6" if speedup > 1 else _color("ar"), ls="--", lw=0.8)
        x_label = min(x_top * 0.95, y_top * 0.95 / speedup)
        ax.annotate(f"{speedup}×", (x_label, speedup * x_label), fontsize=8, color="0.4", ha="right", va="bottom")
    for m in methods:
        if m in d.index and np.isfinite(cost[m]) and np.isfinite(tokens[m]):
            ax.plot(cost[m], tokens[m], "o", ms=8, color=_color(m))
            ax.annotate(
                f"{_method_label(m)}\n{d.loc[m, 'projected_speedup']:.2f}×",
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


# ------------------------------------------------------------------------------------ notebooks
def _token_label(token: str) -> str:
    """A token's text for a tick or a node: visible whitespace, other control characters escaped (\\x17), at most
    12 characters, "∅" when empty. A character the figure's font has no glyph for (it would show as an empty
    box) is escaped too: a control picture such as ␅ as the control character it stands for (\\x05), others as
    \\uXXXX."""
    text = str(token).replace("\n", "⏎").replace("\t", "⇥").replace(" ", "␣")
    return "".join(c if c.isprintable() and _drawable(c) else _escape(c) for c in text)[:12] or "∅"


def _escape(c: str) -> str:
    if 0x2400 <= ord(c) < 0x2420:  # a control picture (token_text shows control characters so)
        return f"\\x{ord(c) - 0x2400:02x}"
    return ascii(c)[1:-1]


@functools.lru_cache(maxsize=4096)
def _drawable(c: str) -> bool:
    """Whether the default font has a glyph for `c` (matplotlib draws an empty box otherwise)."""
    return ord(c) < 0x80 or ord(c) in _font_charmap()


@functools.lru_cache(maxsize=1)
def _font_charmap() -> frozenset:
    from matplotlib import font_manager

    return frozenset(font_manager.get_font(font_manager.findfont(font_manager.FontProperties())).get_charmap())


NODE_COLORS = {"adapter": "#c6dbef", "lookup": "#fdd0a2"}  # light Kangaroo blue, light prompt-lookup orange
TARGET_NODE_COLOR = "#fff3c4"  # the target's own token closing the round


def _tree_layout(parents: list[int], target_parent: int) -> tuple[np.ndarray, np.ndarray]:
    """Node -> (depth, row) for a tidy left-to-right drawing: nodes 0..n-1 are the drafts (parent -1: the root),
    node n the target's token (a child of `target_parent`, drawn first among its siblings), node n + 1 the root.
    Leaves take consecutive rows in depth-first order; a parent sits midway between its first and last child."""
    n = len(parents)
    root, children = n + 1, {i: [] for i in range(n + 2)}
    for i, p in enumerate(parents):
        children[root if p < 0 else p].append(i)
    children[root if target_parent < 0 else target_parent].insert(0, n)
    depth, row = np.zeros(n + 2), np.zeros(n + 2)
    next_row = 0
    stack = [(root, 0, False)]  # iterative post-order: a lookup branch can be deep
    while stack:
        node, d, done = stack.pop()
        depth[node] = d
        if not children[node]:
            row[node], next_row = next_row, next_row + 1
        elif done:
            row[node] = (row[children[node][0]] + row[children[node][-1]]) / 2
        else:
            stack.append((node, d, True))
            stack += [(c, d + 1, False) for c in reversed(children[node])]
    return depth, row


def round_tree(rnd, label: Callable[[int], str] = str) -> Figure:
    """One speculative round (`decoding.Round`) as a tree: the root (the newest committed token) on the left,
    depth to the right; adapter drafts and lookup tokens in their own colours with their draft confidence
    below; the accepted path in thick green, then the target's own token that closes the round.
    A chain (parents None) is a tree with one branch. label: token id -> text (e.g. a tokenizer's decode)."""
    n = len(rnd.drafts)
    parents = list(range(-1, n - 1)) if rnd.parents is None else list(rnd.parents)
    accepted = list(rnd.accepted_indices)
    confidences = [float(c) for c in rnd.confidences]
    sources = (
        list(rnd.sources)
        if rnd.sources is not None
        else ["lookup" if not np.isfinite(c) else "adapter" for c in confidences]
    )  # no model drafted a lookup token
    depth, row = _tree_layout(parents, accepted[-1] if accepted else -1)
    target, root = n, n + 1
    fig, axes = _new_figure(size=(max(7.0, 1.05 * (depth.max() + 1) + 1.2), max(2.6, 0.36 * (row.max() + 1) + 1.7)))
    ax = axes[0, 0]
    on_path = set(accepted)
    for i, p in enumerate(parents):  # edges: parent -> child
        a = root if p < 0 else p
        thick = i in on_path
        ax.plot(
            [depth[a], depth[i]],
            [row[a], row[i]],
            color=ACCEPTED_COLOR if thick else "0.7",
            lw=3.2 if thick else 0.9,
            zorder=1,
            solid_capstyle="round",
        )
    last = accepted[-1] if accepted else root
    ax.plot(
        [depth[last], depth[target]], [row[last], row[target]], color=ACCEPTED_COLOR, lw=3.2, ls=(0, (1.5, 1)), zorder=1
    )
    box = dict(boxstyle="round,pad=0.25", lw=0.6, ec="0.45")
    for i in range(n):
        ax.text(
            depth[i],
            row[i],
            _token_label(label(rnd.drafts[i])),
            ha="center",
            va="center",
            fontsize=8,
            zorder=3,
            bbox=box
            | {
                "fc": NODE_COLORS.get(sources[i], "white"),
                **({"ec": ACCEPTED_COLOR, "lw": 2.0} if i in on_path else {}),
            },
        )
        if np.isfinite(confidences[i]):
            ax.annotate(
                f"{confidences[i]:.2f}",
                (depth[i], row[i]),
                xytext=(0, -8.5),
                textcoords="offset points",
                ha="center",
                va="top",
                fontsize=6,
                color="0.3",
                zorder=2,
                bbox={"boxstyle": "square,pad=0.05", "fc": "white", "ec": "none", "alpha": 0.8},
            )
    ax.text(depth[root], row[root], "root", ha="center", va="center", fontsize=8, zorder=3, bbox=box | {"fc": "0.9"})
    ax.text(
        depth[target],
        row[target],
        _token_label(label(rnd.token)),
        ha="center",
        va="center",
        fontsize=8,
        fontweight="bold",
        zorder=3,
        bbox=box | {"fc": TARGET_NODE_COLOR, "ec": "black", "lw": 1.4},
    )
    ax.set_xlim(-0.6, depth.max() + 0.6)
    ax.set_ylim(row.max() + 0.7, -0.7)  # first child on top
    ax.set_xticks(range(int(depth.max()) + 1), ["root"] + [str(d) for d in range(1, int(depth.max()) + 1)])
    ax.set_xlabel("depth (tokens after the root)")
    ax.tick_params(left=False, labelleft=False)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    counts = {kind: sum(s == kind for s in sources) for kind in NODE_COLORS}
    kinds = [kind for kind, c in counts.items() if c]
    what = {"adapter": "adapter draft (its confidence below)", "lookup": "lookup token"}
    handles = [plt.Rectangle((0, 0), 1, 1, fc=NODE_COLORS[k], ec="0.45", label=what[k]) for k in kinds]
    handles += [
        plt.Line2D([], [], color=ACCEPTED_COLOR, lw=3, label="accepted path"),
        plt.Rectangle((0, 0), 1, 1, fc=TARGET_NODE_COLOR, ec="black", label="the target's own token"),
    ]
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=len(handles) if fig.get_figwidth() >= 9 else 2,
        fontsize=8,
        frameon=False,
    )
    made = "".join(f"{counts[k]} {k}, " for k in kinds)
    emitted = len(accepted) + 1
    return _finish(
        fig,
        (
            f"One round: {n} candidates ({made}{rnd.draft_steps} draft steps); {len(accepted)} accepted "
            f"+ the target's token = {emitted} token{'s' if emitted > 1 else ''}"
        ),
        "",
    )


def layer_predictions_heatmap(df: pd.DataFrame) -> Figure:
    """Exit-at-layer heads (final norm + LM head on each layer's state): the probability they give the final
    model's top-1 token, layers (y) x positions (x, labelled by that token); dots where the layer's top-1 agrees."""
    grid = df.pivot_table(index="layer", columns="position", values="probability", aggfunc="mean")
    tokens = df.drop_duplicates("position").set_index("position")["token"].reindex(grid.columns)
    fig, axes = _new_figure(size=(max(7.0, 0.38 * grid.shape[1] + 2.5), max(3.5, 0.16 * grid.shape[0] + 2.2)))
    ax = axes[0, 0]
    im = ax.imshow(grid.to_numpy(float), origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=1)
    match = df[df["top1_matches"].astype(bool)]
    rows, cols = {v: i for i, v in enumerate(grid.index)}, {v: j for j, v in enumerate(grid.columns)}
    ax.scatter([cols[p] for p in match["position"]], [rows[lay] for lay in match["layer"]], s=6, c="white", marker="o")
    ax.set_xticks(range(grid.shape[1]), [_token_label(t) for t in tokens], rotation=90, fontsize=7)
    ax.set_yticks(range(grid.shape[0]), [str(int(v)) for v in grid.index], fontsize=7)
    ax.set(xlabel="position (the final model's top-1 token there)", ylabel="exit layer")
    fig.colorbar(im, ax=ax, label="p(final top-1) at this layer")
    return _finish(
        fig,
        "What each layer would predict: early-exit heads vs the final model",
        provenance(df),
        ["white dot: that layer's own top-1 token is the final model's top-1"],
    )


def _tied_head(df: pd.DataFrame) -> int | None:
    """The row of the LM head when it holds (nearly) the embedding's own parameters (a tied head), else None."""
    parts = df["part"].astype(str).reset_index(drop=True)
    emb = [i for i, p in enumerate(parts) if p.startswith("embedding")]
    head = [i for i, p in enumerate(parts) if "LM head" in p]
    if not emb or not head:
        return None
    e, h = float(df["params"].iloc[emb[0]]), float(df["params"].iloc[head[0]])
    return head[0] if e > 0 and 0 <= h - e < 0.001 * e else None


def cost_breakdown(df: pd.DataFrame, tied_head: bool | None = None) -> Figure:
    """Time (ms) and parameters of each part of the model, as horizontal bars (columns part, ms, params).

    A tied LM head (the embedding's weights; detected when `tied_head` is None) is drawn hollow in the size
    panel and not counted again: the note gives the total with each weight once."""
    fig, ax, bx = _two_panels(size=(WIDE, 1.6 + 0.45 * len(df)))
    y = np.arange(len(df))
    tied = _tied_head(df) if tied_head is None or tied_head else None
    notes = []
    for a, column, scale, unit in ((ax, "ms", 1, "ms per step"), (bx, "params", 1e6, "parameters (millions)")):
        values = df[column].astype(float) / scale
        bars = a.barh(y, values, color=_color("kangaroo"))
        for i, (bar, v) in enumerate(zip(bars, values)):
            text = f"{v:.2f}" if v < 100 else f"{v:.0f}"
            if column == "params" and i == tied:
                bar.set(facecolor="white", edgecolor=_color("kangaroo"), hatch="//")
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
            total = float(
                df["params"].sum()
                - df["params"].iloc[tied]
                + (
                    df["params"].iloc[tied]
                    - df.loc[df["part"].astype(str).str.startswith("embedding"), "params"].iloc[0]
                )
            )
            adapters = df["part"].astype(str).str.contains("adapter")
            model_total = total - float(df.loc[adapters, "params"].sum())
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
    return _finish(fig, "Where a decoding step's time and parameters go", provenance(df), notes)


def distribution_check(df: pd.DataFrame, top: int = 15) -> Figure:
    """Target vs empirical token probabilities (columns token, target_p, empirical_p, n), 95% binomial bars."""
    d = df.sort_values("target_p", ascending=False).head(top)
    x = np.arange(len(d))
    p, n = d["empirical_p"].astype(float), d["n"].astype(float)
    err = 1.96 * np.sqrt(p * (1 - p) / n)
    fig, axes = _new_figure(size=(max(8.0, 0.5 * len(d) + 2), TALL))
    ax = axes[0, 0]
    ax.bar(x - 0.2, d["target_p"], 0.4, color="0.4", label="target distribution p")
    ax.bar(
        x + 0.2,
        p,
        0.4,
        yerr=err,
        capsize=2,
        color=_color("kangaroo"),
        label=f"speculative sampling, empirical (n = {int(n.max()):,}; 95% binomial interval)",
    )
    ids = d["token_id"] if "token_id" in d else [None] * len(d)
    ax.set_xticks(
        x,
        [_token_label(t) + ("" if i is None else f" #{int(i)}") for t, i in zip(d["token"], ids)],
        rotation=45,
        ha="right",
    )
    ax.set(xlabel="token (text, then #id)", ylabel="probability", ylim=(0, None))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return _finish(fig, "Lossless sampling: empirical token frequencies vs the target distribution", provenance(df))


def acceptance_vs_temperature(df: pd.DataFrame) -> Figure:
    """Mean accepted tokens and acceptance rate against sampling temperature (one line per method if given)."""
    fig, ax, bx = _two_panels()
    groups = df.groupby("method", sort=False) if "method" in df else [("kangaroo", df)]
    for method, g in groups:
        g = g.sort_values("temperature")
        for a, column in ((ax, "mean_accepted"), (bx, "acceptance_rate")):
            a.plot(g["temperature"], g[column], "o-", color=_color(method), label=_method_label(method))
    top = float(df["mean_accepted"].max()) if len(df) else 1.0
    ax.set(
        xlabel="temperature (0 = greedy)",
        ylabel="mean accepted tokens per round",
        ylim=(0, max(1.0, top if np.isfinite(top) else 1.0) * 1.15),
    )  # room above the highest marker
    bx.set(xlabel="temperature (0 = greedy)", ylabel="share of drafts accepted", ylim=(0, 1.05))
    for a in (ax, bx):
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    return _finish(fig, "Acceptance against sampling temperature", provenance(df))


# ------------------------------------------------------------------------------------ build
TRAINING_RUN = "scripts/gpu_adapters.py train (or fleet) on a GPU, then scripts/collect_training.py"
PRODUCERS = {  # stored file (relative to the data folder) -> what produces it
    "training_curves.csv": TRAINING_RUN,
    "adapter_ablation.csv": TRAINING_RUN,
    "bench/draft_trace.csv": "`kangaroo-lab bench --trace` on a GPU (greedy Kangaroo at η = 0, every draft recorded)",
    "bench/summary.csv": "`kangaroo-lab bench` on a GPU",
    "bench/sweep_exit_layer.csv": "`kangaroo-lab bench --sweep exit-layer` on a GPU",
    "bench/sweep_threshold.csv": "`kangaroo-lab bench --sweep threshold` on a GPU",
    "bench/step_times.csv": "`kangaroo-lab bench --costs` on a GPU",
    "bench/rows_identity.csv": "`scripts/gpu_speed.py --stages extras` on a GPU (ar and the chain over natural and fixed rows)",
    "bench/projection_7b.csv": (
        "`kangaroo-lab bench --costs` on a GPU (from the run's rounds of every method and step times)"
    ),
    "bench/sweep_tree.csv": "`kangaroo-lab bench --sweep tree` on a GPU (or the GPU script scripts/gpu_trees.py)",
}


@dataclass(frozen=True)
class FigureSpec:
    """A figure of `build_figures`: its function, the stored files it needs and those it uses when present."""

    plot: Callable[..., Figure]
    inputs: tuple[str, ...]
    optional: tuple[str, ...] = ()


FIGURES = {
    "fig_training_curves": FigureSpec(training_curves, ("training_curves.csv",)),
    "fig_adapter_ablation": FigureSpec(adapter_ablation, ("adapter_ablation.csv",)),
    "fig_acceptance_by_position": FigureSpec(acceptance_by_position, ("bench/draft_trace.csv",)),
    "fig_confidence_accepted_vs_rejected": FigureSpec(confidence_accepted_vs_rejected, ("bench/draft_trace.csv",)),
    "fig_confidence_by_category": FigureSpec(confidence_by_category, ("bench/draft_trace.csv",)),
    "fig_eta_tradeoff": FigureSpec(eta_tradeoff, ("bench/draft_trace.csv",)),
    "fig_ctar": FigureSpec(ctar, ("bench/summary.csv",), ("bench/draft_trace.csv",)),
    "fig_speedup_by_category": FigureSpec(speedup_by_category, ("bench/summary.csv",)),
    "fig_methods": FigureSpec(methods_overview, ("bench/summary.csv",)),
    "fig_speedup_vs_exit_ratio": FigureSpec(speedup_vs_exit_ratio, ("bench/sweep_exit_layer.csv",)),
    "fig_eta_gamma_heatmap": FigureSpec(eta_gamma_heatmap, ("bench/sweep_threshold.csv",)),
    "fig_tree_sweep": FigureSpec(tree_sweep, ("bench/sweep_tree.csv",)),
    "fig_step_times": FigureSpec(step_times, ("bench/step_times.csv",)),
    "fig_projection_7b": FigureSpec(projection_7b, ("bench/projection_7b.csv",)),
}


def missing_inputs(data_dir="figures/data") -> dict[str, str]:
    """Figure stem -> why `build_figures` skips it (the missing file and the command that produces it)."""
    data_dir, why = Path(data_dir), {}
    for stem, spec in FIGURES.items():
        missing = [name for name in spec.inputs if not (data_dir / name).is_file()]
        if missing:
            why[stem] = "; ".join(
                f"{data_dir / name} is missing; it comes from {PRODUCERS.get(name, 'a GPU run')}" for name in missing
            )
    return why


def build_figures(data_dir="figures/data", out_dir="figures", log: Callable[[str], None] | None = print) -> list[Path]:
    """Rebuild every figure in `out_dir` (PNG + PDF) from the stored files in `data_dir`; no GPU needed.

    A figure whose input file is missing is skipped, with a line saying which file and what produces it.
    `log` gets one line per file written and per figure skipped (None: silent). Returns the files written."""
    data_dir, log = Path(data_dir), log or (lambda line: None)
    skipped, written, cache = missing_inputs(data_dir), [], {}
    for stem, spec in FIGURES.items():
        if stem in skipped:
            log(f"skipped {stem}: {skipped[stem]}")
            continue
        names = spec.inputs + tuple(n for n in spec.optional if (data_dir / n).is_file())
        frames = [cache[n] if n in cache else cache.setdefault(n, _read(data_dir, n)) for n in names]
        try:
            fig = spec.plot(*frames)
        except (KeyError, ValueError, IndexError, TypeError) as e:
            raise ValueError(
                f"{stem}: could not draw it from {', '.join(str(data_dir / n) for n in names)} "
                f"({type(e).__name__}: {e}); check the file's columns against plots.py"
            ) from e
        try:
            for path in save_figure(fig, out_dir, stem):
                written.append(path)
                log(f"wrote {path}")
        finally:
            plt.close(fig)
    return written


def _read(data_dir: Path, name: str) -> pd.DataFrame:
    df = pd.read_csv(data_dir / name)
    if df.empty:
        raise ValueError(f"{data_dir / name} has no rows; rerun what produces it ({PRODUCERS.get(name, 'a GPU run')})")
    return df
