"""The figure registry: which stored files each figure of `figures/` needs, what produces them, and
`build_figures`, which rebuilds every figure from `figures/data/` without a GPU."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from .acceptance import (
    acceptance_by_position,
    confidence_accepted_vs_rejected,
    confidence_by_category,
    ctar,
    eta_tradeoff,
)
from .speed import (
    eta_gamma_heatmap,
    methods_overview,
    projection_7b,
    speedup_by_category,
    speedup_vs_exit_ratio,
    step_times,
)
from .style import save_figure
from .training import adapter_ablation, training_curves
from .trees import tree_sweep

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
                f"({type(e).__name__}: {e}); check the file's columns against {spec.plot.__module__}.{spec.plot.__name__}"
            ) from e
        try:
            for path in save_figure(fig, out_dir, stem):
                written.append(path)
                log(f"wrote {path}")
        finally:
            plt.close(fig)
    return written


def _read(data_dir: Path, name: str) -> pd.DataFrame:
    """A stored file as a DataFrame; a ValueError naming the file and what produces it when it has no rows."""
    df = pd.read_csv(data_dir / name)
    if df.empty:
        raise ValueError(f"{data_dir / name} has no rows; rerun what produces it ({PRODUCERS.get(name, 'a GPU run')})")
    return df
