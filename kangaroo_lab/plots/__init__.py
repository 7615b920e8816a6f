"""Figures as functions of stored data: each plotting function takes the DataFrame(s) of a stored
file (columns as in `figures/data/`) and returns a `matplotlib.figure.Figure`; nothing is shown.

    from kangaroo_lab import plots
    fig = plots.speedup_by_category(pd.read_csv("figures/data/bench/summary.csv"))
    plots.build_figures()        # every figure in figures/ (PNG + PDF) from figures/data/, no GPU

The package, from the ground up:

* `tables`: the pandas tables behind the figures (no matplotlib), public because the notebooks print
  them too: `position_acceptance`, `ctar_from_trace`, `threshold_tradeoff`, `tradeoff_curve`,
  `ablation_table`, `tree_sweep_grid`, `step_time_ratios`, `provenance`, `split_notes`;
* `style`: what every figure shares (method colours, labels and order from the method table
  `proposers.METHOD_TABLE`, category colours, the title and footer, heatmaps, token labels, saving);
* the drawing, by subject: `training` (adapter training), `acceptance` (draft traces, confidence, η,
  CTAR, sampling), `speed` (speedups, sweeps, step times, the 7B projection, cost breakdown), `trees`
  (the tree sweep, `round_tree`, layer predictions);
* `registry`: which figure needs which stored file and what produces it; `build_figures`.

`round_tree` draws one round of a generation (a `decoding.Round`) live in a notebook; it is not one of
the stored figures. Every figure carries where its numbers come from ("device · versions", from the
table's own `device` and `versions` columns, or `torch`/`transformers`) in a small footer; projection
figures say "PROJECTION" in their title. Colours are fixed per method (`METHOD_COLORS`) across figures,
and methods appear in one order (`METHOD_ORDER`, the method table's).
"""

from .acceptance import (
    BINS,
    acceptance_by_position,
    acceptance_vs_temperature,
    confidence_accepted_vs_rejected,
    confidence_by_category,
    ctar,
    distribution_check,
    eta_tradeoff,
)
from .registry import FIGURES, PRODUCERS, TRAINING_RUN, FigureSpec, build_figures, missing_inputs
from .speed import (
    N_LAYERS,
    OVERVIEW_COLUMNS,
    STEP_STYLES,
    cost_breakdown,
    eta_gamma_heatmap,
    methods_overview,
    projection_7b,
    speedup_by_category,
    speedup_vs_exit_ratio,
    step_times,
)
from .style import (
    ACCEPTED_COLOR,
    CATEGORY_COLORS,
    CATEGORY_LABELS,
    DPI,
    METHOD_COLORS,
    METHOD_LABELS,
    METHOD_ORDER,
    REJECTED_COLOR,
    TALL,
    WIDE,
    save_figure,
)
from .tables import (
    ABLATION_COLUMNS,
    NOTE,
    ROUND_KEY,
    VARIANT_ORDER,
    ablation_table,
    ctar_from_trace,
    position_acceptance,
    provenance,
    split_notes,
    step_time_ratios,
    threshold_tradeoff,
    tradeoff_curve,
    tree_sweep_grid,
)
from .training import adapter_ablation, training_curves
from .trees import EXIT_LABELS, NODE_COLORS, TARGET_NODE_COLOR, layer_predictions_heatmap, round_tree, tree_sweep

__all__ = [
    # tables (pandas only)
    "ABLATION_COLUMNS",
    "NOTE",
    "ROUND_KEY",
    "VARIANT_ORDER",
    "ablation_table",
    "ctar_from_trace",
    "position_acceptance",
    "provenance",
    "split_notes",
    "step_time_ratios",
    "threshold_tradeoff",
    "tradeoff_curve",
    "tree_sweep_grid",
    # style
    "ACCEPTED_COLOR",
    "CATEGORY_COLORS",
    "CATEGORY_LABELS",
    "DPI",
    "METHOD_COLORS",
    "METHOD_LABELS",
    "METHOD_ORDER",
    "REJECTED_COLOR",
    "TALL",
    "WIDE",
    "save_figure",
    # figures
    "BINS",
    "EXIT_LABELS",
    "N_LAYERS",
    "NODE_COLORS",
    "OVERVIEW_COLUMNS",
    "STEP_STYLES",
    "TARGET_NODE_COLOR",
    "acceptance_by_position",
    "acceptance_vs_temperature",
    "adapter_ablation",
    "confidence_accepted_vs_rejected",
    "confidence_by_category",
    "cost_breakdown",
    "ctar",
    "distribution_check",
    "eta_gamma_heatmap",
    "eta_tradeoff",
    "layer_predictions_heatmap",
    "methods_overview",
    "projection_7b",
    "round_tree",
    "speedup_by_category",
    "speedup_vs_exit_ratio",
    "step_times",
    "training_curves",
    "tree_sweep",
    # registry
    "FIGURES",
    "PRODUCERS",
    "TRAINING_RUN",
    "FigureSpec",
    "build_figures",
    "missing_inputs",
]
