"""What every figure shares: method and category colours, labels and order, figure and footer layout,
bar labels, heatmaps, token labels, saving.

Method labels, colours and order come from the method table (`proposers.METHOD_TABLE`: one row per
method, in the benchmark's order), so a new method gets its colour where it is declared.
"""

from __future__ import annotations

import functools
import textwrap
from collections.abc import Iterable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import font_manager
from matplotlib.figure import Figure

from ..proposers import METHOD_TABLE
from ..questions import CATEGORIES

METHOD_ORDER = tuple(METHOD_TABLE)  # ar, our speculative methods, then the benchmark's comparison rows (transformers')
METHOD_COLORS = {name: m.colour for name, m in METHOD_TABLE.items()}  # fixed per method across figures
METHOD_LABELS = {name: m.label for name, m in METHOD_TABLE.items()}
CHAIN = "kangaroo"  # the paper's chain: the method of the draft trace and the colour of one-method figures
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


def new_figure(ncols: int = 1, nrows: int = 1, size=(WIDE, TALL), **kw):
    """fig, axes with constrained layout (the footer and the title get their own room)."""
    return plt.subplots(nrows, ncols, figsize=size, layout="constrained", squeeze=False, **kw)


def two_panels(size=(WIDE, TALL)):
    """fig, left axes, right axes."""
    fig, axes = new_figure(2, size=size)
    return fig, axes[0, 0], axes[0, 1]


def finish(fig: Figure, title: str, source: str, notes: Iterable[str] = ()) -> Figure:
    """Bold title on top; "device · versions" and any notes in a small grey footer."""
    fig.suptitle("\n".join(textwrap.wrap(title, int(fig.get_figwidth() * 8.5))), fontsize=12, fontweight="bold")
    width = max(60, int(fig.get_figwidth() * 17))  # characters per footer line at 7 pt
    lines = textwrap.wrap(source, width) + [line for n in notes for line in textwrap.wrap(f"note: {n}", width)]
    if lines:
        fig.supxlabel("\n".join(lines), x=0.005, ha="left", fontsize=7, color="0.35")
    return fig


def method_order(methods: Iterable[str]) -> list[str]:
    """The methods present, in `METHOD_ORDER`; unknown ones after, in their order of appearance."""
    seen = list(dict.fromkeys(methods))
    return [m for m in METHOD_ORDER if m in seen] + [m for m in seen if m not in METHOD_ORDER]


def method_label(method: str) -> str:
    """The method table's label; a method not in the table by its name."""
    return METHOD_LABELS.get(method, method)


def category_order(categories: Iterable[str]) -> list[str]:
    """The categories present, in Spec-Bench's order (`questions.CATEGORIES`); unknown ones after; "overall" last."""
    seen = list(dict.fromkeys(categories))
    ordered = [c for c in CATEGORIES if c in seen] + [c for c in seen if c not in CATEGORIES and c != "overall"]
    return ordered + (["overall"] if "overall" in seen else [])


def method_color(method: str) -> str:
    """The method table's colour; black for a method not in the table."""
    return METHOD_COLORS.get(method, "black")


def label_bars(ax, bars, fmt: str = "{:.2f}", fontsize: float = 6.5):
    """Each finite bar's height written just above it."""
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


def heatmap(
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


def token_label(token: str) -> str:
    """A token's text for a tick or a node: visible whitespace, other control characters escaped (\\x17), at most
    12 characters, "∅" when empty. A character the figure's font has no glyph for (it would show as an empty
    box) is escaped too: a control picture such as ␅ as the control character it stands for (\\x05), others as
    \\uXXXX."""
    text = str(token).replace("\n", "⏎").replace("\t", "⇥").replace(" ", "␣")
    return "".join(c if c.isprintable() and _drawable(c) else _escape(c) for c in text)[:12] or "∅"


def _escape(c: str) -> str:
    """A character escaped as text: a control picture as \\xNN, anything else as Python's ascii() writes it."""
    if 0x2400 <= ord(c) < 0x2420:  # a control picture (token_text shows control characters so)
        return f"\\x{ord(c) - 0x2400:02x}"
    return ascii(c)[1:-1]


@functools.lru_cache(maxsize=4096)
def _drawable(c: str) -> bool:
    """Whether the default font has a glyph for `c` (matplotlib draws an empty box otherwise)."""
    return ord(c) < 0x80 or ord(c) in _font_charmap()


@functools.lru_cache(maxsize=1)
def _font_charmap() -> frozenset:
    return frozenset(font_manager.get_font(font_manager.findfont(font_manager.FontProperties())).get_charmap())
