"""The tables behind the figures, pandas only (no matplotlib): the notebooks print them, the drawing
modules plot them. Each takes the DataFrame of a stored file (columns as in `figures/data/`).

* every table: `provenance` (its "device · versions"), `split_notes` (summary.csv's note rows);
* training: `ablation_table`;
* draft traces (bench/draft_trace.csv, greedy Kangaroo at η = 0, one row per draft): `position_acceptance`,
  `ctar_from_trace`, `threshold_tradeoff` and `tradeoff_curve` (η replayed with `options.below_eta`);
* sweeps and step costs: `sweep_parts`, `tree_sweep_grid`, `step_time_ratios`, `tied_head_row`, `model_params_once`.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from ..metrics import ctar
from ..options import below_eta
from ..proposers import BASELINE

ROUND_KEY = ["category", "question_id", "turn", "round"]  # one draft round of a trace
NOTE = "note"  # the `method` of summary rows that carry a free-text note in `category` (bench.NOTE)


def provenance(*frames: pd.DataFrame) -> str:
    """ "device · versions" from the tables' `device` and `versions` (or `torch`, `transformers`) columns;
    "" when none of them has such columns (a frame computed in a notebook may add them)."""
    devices, versions = [], []
    for df in frames:
        if df is None:
            continue
        devices += unique_values(df, "device")
        versions += unique_values(df, "versions") if "versions" in df else _library_versions(df)
    devices, versions = list(dict.fromkeys(devices)), list(dict.fromkeys(versions))
    return " · ".join(p for p in (" / ".join(devices), " / ".join(versions)) if p)


def unique_values(df: pd.DataFrame, column: str) -> list[str]:
    """The distinct values of `column` as text, in order of appearance ([] without the column)."""
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


def n_rounds(trace: pd.DataFrame) -> int:
    """How many draft rounds a trace holds."""
    return len(trace.drop_duplicates(ROUND_KEY))


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


def ctar_from_trace(trace: pd.DataFrame, windows: Iterable[int] | None = None, by: str | None = None) -> pd.DataFrame:
    """CTAR(w) from a trace: share of rounds whose first w drafts were all accepted (= rounds that emitted
    more than w tokens). Columns: [by,] window, rounds, ctar. windows: default 1 up to the most drafts any
    round of the trace made (beyond it CTAR is 0)."""
    df = _rounds(trace)
    if windows is None:
        windows = range(1, int(df["position"].max()) + 1 if len(df) else 1)
    per_round = df.groupby(ROUND_KEY + ([by] if by and by not in ROUND_KEY else []), sort=False)["leading"].sum()
    per_round = per_round.rename("leading").reset_index()
    rows = []
    for key, group in per_round.groupby(by) if by else [(None, per_round)]:
        shares = ctar((group["leading"] + 1).tolist(), windows)  # a round emits its leading drafts + 1
        rows += [({by: key} if by else {}) | {"window": w, "rounds": len(group), "ctar": c} for w, c in shares.items()]
    return pd.DataFrame(rows)


def tradeoff_curve(trace: pd.DataFrame, thresholds: Iterable[float] | None = None) -> pd.DataFrame:
    """`threshold_tradeoff` at each threshold (default 0, 0.01, ..., 1): one row per threshold."""
    df = _rounds(trace)
    thresholds = np.round(np.linspace(0, 1, 101), 2) if thresholds is None else thresholds
    return pd.DataFrame([_tradeoff(df, t) for t in thresholds])


def threshold_tradeoff(trace: pd.DataFrame, threshold: float) -> dict:
    """What a confidence threshold η would have done to a trace recorded at η = 0.

    With early exit, a round drafts until (and including) its first draft whose confidence is below
    the threshold: that draft is still verified, the drafts after it are never made. So a draft is
    proposed iff no earlier draft of its round is below η (`options.below_eta`). Returns the threshold,
    the shares of accepted drafts kept (`accepted_kept`) and of rejected drafts avoided
    (`rejected_avoided`), with the drafts per round. An estimate per round: a real run at this
    threshold would also start its later rounds elsewhere."""
    return _tradeoff(_rounds(trace), threshold)


def _tradeoff(df: pd.DataFrame, threshold: float) -> dict:
    """`threshold_tradeoff` of a trace already through `_rounds`."""
    proposed = ~below_eta(df["prior_min"], threshold)  # no earlier draft of the round stopped it
    accepted = df["accepted"] == 1
    n_acc, n_rej, rounds = int(accepted.sum()), int((~accepted).sum()), n_rounds(df)
    kept, made_rejected = int((proposed & accepted).sum()), int((proposed & ~accepted).sum())
    return {
        "threshold": float(threshold),
        "accepted_kept": kept / n_acc if n_acc else float("nan"),
        "rejected_avoided": (n_rej - made_rejected) / n_rej if n_rej else float("nan"),
        "drafts_per_round": int(proposed.sum()) / rounds if rounds else float("nan"),
        "accepted_per_round": kept / rounds if rounds else float("nan"),
    }


def sweep_parts(sweep: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """A sweep CSV -> (its rows but the baseline's, notes on the baseline: its speed and its drift measured
    by the closing ar row)."""
    ar = sweep[sweep["method"] == BASELINE]
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
    return sweep[sweep["method"] != BASELINE].copy(), notes


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


def step_time_ratios(times: pd.DataFrame) -> pd.DataFrame:
    """bench/step_times.csv -> per (model, shape, step, tokens): ms, the shape's full step over the fewest rows
    (`full_ms`, normally full(1)) and `ratio` = ms / full_ms."""
    ms = times.groupby(["model", "shape", "step", "tokens"], as_index=False)["ms"].mean()
    full = ms[ms["step"] == "full"].sort_values("tokens").groupby(["model", "shape"])["ms"].first().rename("full_ms")
    out = ms.join(full, on=["model", "shape"])
    out["ratio"] = out["ms"] / out["full_ms"]
    return out


def tied_head_row(df: pd.DataFrame) -> int | None:
    """The row of the LM head when it holds (nearly) the embedding's own parameters (a tied head), else None."""
    parts = df["part"].astype(str).reset_index(drop=True)
    emb = [i for i, p in enumerate(parts) if p.startswith("embedding")]
    head = [i for i, p in enumerate(parts) if "LM head" in p]
    if not emb or not head:
        return None
    e, h = float(df["params"].iloc[emb[0]]), float(df["params"].iloc[head[0]])
    return head[0] if e > 0 and 0 <= h - e < 0.001 * e else None


def model_params_once(df: pd.DataFrame, tied: int) -> float:
    """The model's parameters with each weight counted once (the LM head in row `tied` shares the embedding's
    weights; adapters left out)."""
    total = float(
        df["params"].sum()
        - df["params"].iloc[tied]
        + (df["params"].iloc[tied] - df.loc[df["part"].astype(str).str.startswith("embedding"), "params"].iloc[0])
    )
    adapters = df["part"].astype(str).str.contains("adapter")
    return total - float(df.loc[adapters, "params"].sum())
