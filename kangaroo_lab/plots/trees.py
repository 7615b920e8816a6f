"""Trees and tokens: the tree sweep (heatmaps of node budget x depth, every other setting as a bar), one round of
a generation drawn as a tree (`round_tree`, live in a notebook), and what each layer would predict."""

from __future__ import annotations

from collections.abc import Callable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..proposers import BASELINE, METHOD_TABLE, TREE_METHODS, Method
from .style import ACCEPTED_COLOR, finish, heatmap, method_color, method_label, method_order, new_figure, token_label
from .tables import provenance, sweep_parts, tree_sweep_grid

EXIT_LABELS = {"host": "host exit", "device": "device mask"}  # where η stops a round: a host read per draft, or a mask
_CHAIN_LIKE = Method("?", "?", "black")  # how `_setting` reads a method missing from the table: by its γ


def _setting(row: pd.Series) -> str:
    """A sweep row's settings in words: "top-k 4, depth 3, budget 32, lookup 16, η 0.1 host exit"; what a method
    has (a lookup branch, adapter levels, a tree) is read from its row of the method table."""
    method, parts = METHOD_TABLE.get(row["method"], _CHAIN_LIKE), []
    if method.branch and not method.levels:  # the lookup branch alone (pld)
        return f"lookup {int(row['lookup_tokens'])} tokens"
    if method.tree:
        depth = (
            f"depth ≤ {int(row['max_draft'])}"
            if row["threshold"] > 0 and row["early_exit"] == "host"
            else f"depth {int(row['max_draft'])}"
        )
        parts += [f"top-k {int(row['top_k'])}", depth, f"budget {int(row['node_budget'])}"]
        if method.branch:
            parts.append(f"lookup {int(row['lookup_tokens'])}")
    else:
        parts.append(f"γ {int(row['max_draft'])}")
    if row["threshold"] > 0:
        parts.append(f"η {row['threshold']:g} {EXIT_LABELS.get(str(row['early_exit']), row['early_exit'])}")
    return ", ".join(parts)


def tree_sweep(sweep: pd.DataFrame) -> Figure:
    """bench/sweep_tree.csv: speedup over node budget x depth for the trees (heatmaps, η = 0, top-k and lookup
    fixed) and every other setting as a bar (top-k, η with host exit or device mask, lookup lengths, the chain)."""
    rows, notes = sweep_parts(sweep)
    rows = rows.assign(
        threshold=rows["threshold"].astype(float).fillna(0), speedup_vs_ar=rows["speedup_vs_ar"].astype(float)
    )
    grids = {m: tree_sweep_grid(rows, m) for m in TREE_METHODS}
    bests = [g.loc[g["speedup_vs_ar"].idxmax()] for g in grids.values() if g["speedup_vs_ar"].notna().any()]
    variants = pd.concat([rows.drop(index=pd.concat(grids.values()).index), pd.DataFrame(bests)])
    place = {m: i for i, m in enumerate(method_order(rows["method"]))}
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
                f"best setting of the sweep (★): {method_label(best['method'])}, {_setting(best)}: "
                f"{best['speedup_vs_ar']:.2f}× ar, {best['mean_accepted']:.2f} tokens per round"
            )
        ] + notes
    notes.append(
        "device mask: η only masks nodes on the device (no host read, no work saved); host exit: drafting "
        "stops after the first draft below η, one host read per draft step"
    )
    return finish(fig, "Trees and lookup: speedup over ar for each setting of the tree sweep", provenance(sweep), notes)


def _tree_heatmap(fig, ax, grid: pd.DataFrame, method: str):
    """Speedup over node budget (x) x depth (y), each cell also giving tokens per round; red box: the best cell."""
    if grid.empty:
        ax.set_title(method_label(method), color=method_color(method), fontweight="bold")
        ax.text(0.5, 0.5, f"no {method} rows in this sweep", transform=ax.transAxes, ha="center", color="0.4")
        ax.axis("off")
        return
    speed = grid.pivot_table(index="max_draft", columns="node_budget", values="speedup_vs_ar", aggfunc="mean")
    tokens = grid.pivot_table(index="max_draft", columns="node_budget", values="mean_accepted", aggfunc="mean")
    heatmap(
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
    fixed = f"η = 0, top-k {k}" + (f", lookup {lookup} tokens" if METHOD_TABLE[method].branch else "")
    ax.set_title(method_label(method), color=method_color(method), fontweight="bold", pad=16)
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
        color=[method_color(m) for m in variants["method"]],
        hatch=["//" if g else None for g in is_grid_best],
        edgecolor="white",
    )
    labels = []
    for (_, row), bar, grid_best in zip(variants.iterrows(), bars, is_grid_best):
        starred = row.name == best
        labels.append(
            f"{method_label(row['method'])}: {_setting(row)}" + (" (best of the heatmap)" if grid_best else "")
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
    ax.axvline(1, color=method_color(BASELINE), ls="--", lw=1)
    top = np.nanmax(values) if np.isfinite(values).any() else 1.0
    ax.set(
        xlabel="speedup over ar (the sweep's first ar row)",
        xlim=(0, top * 1.45),
        title="the other settings, beside the best cell of each heatmap",
    )
    ax.grid(alpha=0.3, axis="x")
    if variants.empty:
        ax.text(0.5, 0.5, "no settings but ar in this sweep", transform=ax.transAxes, ha="center", color="0.4")


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
    fig, axes = new_figure(size=(max(7.0, 1.05 * (depth.max() + 1) + 1.2), max(2.6, 0.36 * (row.max() + 1) + 1.7)))
    ax = axes[0, 0]
    _tree_edges(ax, depth, row, parents, accepted)
    texts = [token_label(label(t)) for t in rnd.drafts] + [token_label(label(rnd.token))]  # the drafts, the target
    _tree_nodes(ax, depth, row, texts, confidences, sources, set(accepted))
    ax.set_xlim(-0.6, depth.max() + 0.6)
    ax.set_ylim(row.max() + 0.7, -0.7)  # first child on top
    ax.set_xticks(range(int(depth.max()) + 1), ["root"] + [str(d) for d in range(1, int(depth.max()) + 1)])
    ax.set_xlabel("depth (tokens after the root)")
    ax.tick_params(left=False, labelleft=False)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    counts = {kind: sum(s == kind for s in sources) for kind in NODE_COLORS}
    kinds = [kind for kind, c in counts.items() if c]
    _tree_legend(fig, kinds)
    made = "".join(f"{counts[k]} {k}, " for k in kinds)
    emitted = len(accepted) + 1
    return finish(
        fig,
        (
            f"One round: {n} candidates ({made}{rnd.draft_steps} draft steps); {len(accepted)} accepted "
            f"+ the target's token = {emitted} token{'s' if emitted > 1 else ''}"
        ),
        "",
    )


def _tree_edges(ax, depth: np.ndarray, row: np.ndarray, parents: list[int], accepted: list[int]):
    """Parent -> child edges (nodes as in `_tree_layout`), thick green on the accepted path; a dotted green edge
    from the last accepted node (or the root) to the target's token."""
    n = len(parents)
    target, root = n, n + 1
    on_path = set(accepted)
    for i, p in enumerate(parents):
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


def _tree_nodes(ax, depth, row, texts: list[str], confidences: list[float], sources: list[str], on_path: set):
    """The boxed nodes: drafts 0..n-1 coloured by source (green frame: accepted) with their confidence below,
    then the root, then the target's token (texts[n], bold)."""
    n = len(confidences)
    target, root = n, n + 1
    box = dict(boxstyle="round,pad=0.25", lw=0.6, ec="0.45")
    for i in range(n):
        ax.text(
            depth[i],
            row[i],
            texts[i],
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
        texts[target],
        ha="center",
        va="center",
        fontsize=8,
        fontweight="bold",
        zorder=3,
        bbox=box | {"fc": TARGET_NODE_COLOR, "ec": "black", "lw": 1.4},
    )


def _tree_legend(fig: Figure, kinds: list[str]):
    """Below the tree: the node kinds present ("adapter", "lookup"), the accepted path, the target's token."""
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


def layer_predictions_heatmap(df: pd.DataFrame) -> Figure:
    """Exit-at-layer heads (final norm + LM head on each layer's state): the probability they give the final
    model's top-1 token, layers (y) x positions (x, labelled by that token); dots where the layer's top-1 agrees."""
    grid = df.pivot_table(index="layer", columns="position", values="probability", aggfunc="mean")
    tokens = df.drop_duplicates("position").set_index("position")["token"].reindex(grid.columns)
    fig, axes = new_figure(size=(max(7.0, 0.38 * grid.shape[1] + 2.5), max(3.5, 0.16 * grid.shape[0] + 2.2)))
    ax = axes[0, 0]
    im = ax.imshow(grid.to_numpy(float), origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=1)
    match = df[df["top1_matches"].astype(bool)]
    rows, cols = {v: i for i, v in enumerate(grid.index)}, {v: j for j, v in enumerate(grid.columns)}
    ax.scatter([cols[p] for p in match["position"]], [rows[lay] for lay in match["layer"]], s=6, c="white", marker="o")
    ax.set_xticks(range(grid.shape[1]), [token_label(t) for t in tokens], rotation=90, fontsize=7)
    ax.set_yticks(range(grid.shape[0]), [str(int(v)) for v in grid.index], fontsize=7)
    ax.set(xlabel="position (the final model's top-1 token there)", ylabel="exit layer")
    fig.colorbar(im, ax=ax, label="p(final top-1) at this layer")
    return finish(
        fig,
        "What each layer would predict: early-exit heads vs the final model",
        provenance(df),
        ["white dot: that layer's own top-1 token is the final model's top-1"],
    )
