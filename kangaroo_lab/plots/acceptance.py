"""Acceptance and confidence figures: from the draft trace (bench/draft_trace.csv: greedy Kangaroo at η = 0,
one row per draft) acceptance by position, confidence histograms, the η trade-off; CTAR from the summary;
and the sampling figures (empirical vs target distribution, acceptance against temperature)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..options import DEFAULTS
from .style import (
    ACCEPTED_COLOR,
    CATEGORY_COLORS,
    CATEGORY_LABELS,
    CHAIN,
    REJECTED_COLOR,
    TALL,
    WIDE,
    category_order,
    finish,
    method_color,
    method_label,
    method_order,
    new_figure,
    token_label,
    two_panels,
)
from .tables import (
    ctar_from_trace,
    n_rounds,
    position_acceptance,
    provenance,
    split_notes,
    threshold_tradeoff,
    tradeoff_curve,
)


def acceptance_by_position(trace: pd.DataFrame) -> Figure:
    """bench/draft_trace.csv: share of i-th drafts accepted, overall (with the conditional rate) and per category."""
    overall, per_cat = position_acceptance(trace), position_acceptance(trace, by="category")
    fig, ax, bx = two_panels()
    _position_bars(ax, overall)
    for category in category_order(per_cat["category"]):
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
    return finish(
        fig,
        f"Acceptance by draft position (trace at η = 0, γ = {max_draft})",
        provenance(trace),
        [f"{n_rounds(trace):,} rounds, {len(trace):,} drafts"],
    )


def _position_bars(ax, overall: pd.DataFrame):
    """`position_acceptance` overall: a bar per position (its value written in or above it) and the conditional
    rate as a dashed line."""
    bars = ax.bar(
        overall["position"], overall["acceptance"], color=method_color(CHAIN), label="share of i-th drafts accepted"
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
    fig, ax, bx = two_panels()
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
    return finish(
        fig,
        "Draft confidence: accepted vs rejected drafts",
        provenance(trace),
        ["rejected = not accepted, including drafts after the first rejection in their round"],
    )


def confidence_by_category(trace: pd.DataFrame, threshold: float = DEFAULTS.threshold) -> Figure:
    """bench/draft_trace.csv: the accepted / rejected confidence histograms, one small panel per category."""
    categories = category_order(trace["category"])
    ncols = min(3, len(categories))
    nrows = -(-len(categories) // ncols)
    fig, axes = new_figure(ncols, nrows, size=(WIDE, 1.2 + 2.7 * nrows), sharex=True, sharey=True)
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
    return finish(fig, "Draft confidence by category: accepted vs rejected", provenance(trace))


def eta_tradeoff(trace: pd.DataFrame, threshold: float = DEFAULTS.threshold) -> Figure:
    """bench/draft_trace.csv: for each threshold η, the rejected drafts it saves against the accepted drafts it
    loses."""
    curve, here = tradeoff_curve(trace), threshold_tradeoff(trace, threshold)
    fig, ax, bx = two_panels()
    _eta_shares(ax, curve, threshold)
    _eta_frontier(bx, curve, here, threshold)
    for a in (ax, bx):
        a.grid(alpha=0.3)
    return finish(
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


def _eta_shares(ax, curve: pd.DataFrame, threshold: float):
    """`tradeoff_curve` against η: rejected drafts avoided, accepted drafts lost, drafts per round (right axis)."""
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


def _eta_frontier(bx, curve: pd.DataFrame, here: dict, threshold: float):
    """`tradeoff_curve` as a frontier (rejected avoided vs accepted lost), a few η marked, `threshold` as a dot."""
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
        color=method_color(CHAIN),
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


def ctar(summary: pd.DataFrame, trace: pd.DataFrame | None = None) -> Figure:
    """bench/summary.csv (+ bench/draft_trace.csv): CTAR(w), the share of rounds emitting more than w tokens."""
    rows, notes = split_notes(summary)
    windows = sorted(int(c.split("_")[1]) for c in rows if c.startswith("ctar_"))
    columns = [f"ctar_{w}" for w in windows]
    rows = rows.dropna(subset=columns, how="all")
    fig, ax, bx = two_panels()
    overall, capped = rows[rows["category"] == "overall"], []
    for method in method_order(overall["method"]):
        values = overall.loc[overall["method"] == method, columns].iloc[0].astype(float)
        ax.plot(windows, values, "o-", color=method_color(method), label=method_label(method))
        zero = np.flatnonzero(values.to_numpy() == 0)
        if len(zero) and zero[0] > 0 and (values.iloc[zero[0] :] == 0).all():  # CTAR(w) = 0 from some w on
            capped.append(f"{method_label(method)}: no round emitted more than {windows[zero[0]]} tokens")
    if capped:
        notes = ["; ".join(capped)] + notes
    if trace is not None:
        t = ctar_from_trace(trace, windows)
        ax.plot(t["window"], t["ctar"], "s--", color="black", ms=4, label="Kangaroo draft trace, η = 0")
    ax.set(title="overall", xlabel="window w (tokens)", ylabel="CTAR(w): share of rounds emitting > w tokens")
    main = rows[(rows["method"] == CHAIN) & (rows["category"] != "overall")]
    for category in category_order(main["category"]):
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
    return finish(fig, "Consistent token acceptance rate CTAR(w)", provenance(summary, trace), notes)


def distribution_check(df: pd.DataFrame, top: int = 15) -> Figure:
    """Target vs empirical token probabilities (columns token, target_p, empirical_p, n), 95% binomial bars."""
    d = df.sort_values("target_p", ascending=False).head(top)
    x = np.arange(len(d))
    p, n = d["empirical_p"].astype(float), d["n"].astype(float)
    err = 1.96 * np.sqrt(p * (1 - p) / n)
    fig, axes = new_figure(size=(max(8.0, 0.5 * len(d) + 2), TALL))
    ax = axes[0, 0]
    ax.bar(x - 0.2, d["target_p"], 0.4, color="0.4", label="target distribution p")
    ax.bar(
        x + 0.2,
        p,
        0.4,
        yerr=err,
        capsize=2,
        color=method_color(CHAIN),
        label=f"speculative sampling, empirical (n = {int(n.max()):,}; 95% binomial interval)",
    )
    ids = d["token_id"] if "token_id" in d else [None] * len(d)
    ax.set_xticks(
        x,
        [token_label(t) + ("" if i is None else f" #{int(i)}") for t, i in zip(d["token"], ids)],
        rotation=45,
        ha="right",
    )
    ax.set(xlabel="token (text, then #id)", ylabel="probability", ylim=(0, None))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return finish(fig, "Lossless sampling: empirical token frequencies vs the target distribution", provenance(df))


def acceptance_vs_temperature(df: pd.DataFrame) -> Figure:
    """Mean accepted tokens and acceptance rate against sampling temperature (one line per method if given)."""
    fig, ax, bx = two_panels()
    groups = df.groupby("method", sort=False) if "method" in df else [(CHAIN, df)]
    for method, g in groups:
        g = g.sort_values("temperature")
        for a, column in ((ax, "mean_accepted"), (bx, "acceptance_rate")):
            a.plot(g["temperature"], g[column], "o-", color=method_color(method), label=method_label(method))
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
    return finish(fig, "Acceptance against sampling temperature", provenance(df))
