"""Adapter training figures: held-out curves per run and the ablation table (figures/data/training_curves.csv,
adapter_ablation.csv)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter

from ..adapter import DEFAULT_EXIT_LAYER
from .style import finish, new_figure
from .tables import ABLATION_COLUMNS, ablation_table, provenance


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
    fig, axes = new_figure(3, size=(13.5, 4.4))
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
    return finish(fig, "Adapter training: held-out metrics per evaluation", provenance(curves))


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
    fig, axes = new_figure(size=(12.5, 1.5 + 0.3 * (len(table) + 2)))
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
    return finish(
        fig,
        "Adapter ablation: architecture, exit layer and training budget (held-out prompts)",
        provenance(ablation),
        _ablation_notes(ablation),
    )


def _ablation_notes(ablation: pd.DataFrame) -> list[str]:
    """The ablation figure's footer: what is highlighted; how runs on different prompts are scored; shared GPUs."""
    notes = [
        f"highlighted: the default adapter (shipped, exit layer {DEFAULT_EXIT_LAYER}, attention); "
        "accept@i = share of i-th drafts accepted with η = 0"
    ]
    if "data" in ablation:
        notes.append(
            "each run is scored on held-out answers of its own training prompts; on the same "
            "answers: figures/data/real_mix/heldout_eval.csv"
        )
    if "gpu_share" in ablation and (ablation["gpu_share"] > 1).any():
        notes.append(
            "train minutes: wall time of the run; a GPU shared by k trainings at once stretches it up to k-fold"
        )
    return notes
