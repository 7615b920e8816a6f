"""What every table shows, computed in one place: tokens per round, CTAR, rates, speedups, and the one
row builder that the benchmark's summary and the sweeps both use; the one timer and the one
description of the machine that every stored file carries.

The numbers (Spec-Bench's definitions, over the per-turn records of one method):

* tokens_per_s = total new tokens / total wall seconds;
* speedup = tokens_per_s of a method / tokens_per_s of a baseline, both over the questions both answered;
* mean_accepted = tokens per round: mean over verification rounds of the tokens each emitted (bonus
  token included);
* nodes_per_round = candidate tokens verified per round (the nodes of the round's tree, root excluded);
* draft_steps_per_round = batched draft steps run per round (a tree's levels, a chain's drafts);
* syncs_per_round = host reads of device values per round (ar: per token, each step being a round);
* CTAR(w) = share of rounds that emitted more than w tokens;
* identical_to_ar = share of questions whose token ids, every turn, equal the baseline's.

This module sits below `bench`, `explore` and `plots`: it imports none of them.
"""

from __future__ import annotations

import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import torch

from .engine import sync
from .models import Model
from .proposers import BASELINE

CTAR_WINDOWS = (1, 2, 3, 4, 5, 6)
# The numbers of one row, in the order of the benchmark's summary.csv (`row` returns them so).
METRIC_COLUMNS = (
    "questions",
    "tokens_per_s",
    "speedup_vs_ar",
    "speedup_vs_hf",
    "mean_accepted",
    "nodes_per_round",
    "draft_steps_per_round",
    "syncs_per_round",
    *(f"ctar_{w}" for w in CTAR_WINDOWS),
    "identical_to_ar",
    "peak_memory_mb",
)
T = TypeVar("T")


# ------------------------------------------------------------------------------------ records
@dataclass
class Generated:
    """What a benchmark runner returns for one turn."""

    token_ids: list[int]  # new tokens, cut after the first EOS (included)
    accept_lengths: list[int] = field(default_factory=list)  # per round: tokens emitted (empty: no rounds)
    nodes: list[int] = field(default_factory=list)  # per round: candidates verified (the tree's nodes)
    draft_steps: list[int] = field(default_factory=list)  # per round: batched draft steps run
    syncs: int | None = None  # host reads of device values after the prefill (None: not counted)


@dataclass
class TurnRecord:
    """One timed turn of one question under one method."""

    method: str
    question_id: int | str
    category: str
    turn: int  # 0-based
    token_ids: list[int]
    text: str
    seconds: float
    accept_lengths: list[int]  # per round: tokens emitted
    nodes: list[int]  # per round: candidates verified
    draft_steps: list[int] = field(default_factory=list)  # per round: draft steps run
    syncs: int | None = None
    peak_memory_mb: float | None = None
    prompt_ids: list[int] = field(default_factory=list, repr=False)

    @property
    def key(self) -> tuple[str, int | str]:
        return self.category, self.question_id


# ------------------------------------------------------------------------------------ the numbers
def mean(values: Sequence[float]) -> float | None:
    """The mean, or None for no values."""
    return sum(values) / len(values) if values else None


def ctar(accept_lengths: Sequence[int], windows: Iterable[int] = CTAR_WINDOWS) -> dict[int, float | None]:
    """CTAR(w) for each window w: the share of rounds (tokens emitted, one per round) that emitted more
    than w tokens; None for every window when there are no rounds."""
    n = len(accept_lengths)
    return {w: sum(a > w for a in accept_lengths) / n if n else None for w in windows}


def tokens_per_s(records: Iterable[TurnRecord], keys=None) -> float | None:
    """Total new tokens / total seconds over `records` (only questions in `keys`, when given)."""
    chosen = [r for r in records if keys is None or r.key in keys]
    seconds = sum(r.seconds for r in chosen)
    return sum(len(r.token_ids) for r in chosen) / seconds if seconds > 0 else None


def speedup(mine: Sequence[TurnRecord], base: Sequence[TurnRecord] | None) -> float | None:
    """Tokens/s of `mine` over tokens/s of `base`, both on the questions both answered."""
    common = {r.key for r in mine} & {r.key for r in base or []}
    ours, theirs = tokens_per_s(mine, common), tokens_per_s(base or [], common)
    return ours / theirs if common and ours is not None and theirs else None


def syncs_per_round(records: Sequence[TurnRecord]) -> float | None:
    """Host syncs per verification round (per token for ar, whose every step is a round), or None if not counted."""
    counted = [r for r in records if r.syncs is not None]
    rounds = sum(len(r.accept_lengths) if r.accept_lengths else max(0, len(r.token_ids) - 1) for r in counted)
    return sum(r.syncs for r in counted) / rounds if counted and rounds else None


def answers(records: Iterable[TurnRecord]) -> dict:
    """question key -> the token ids of every turn, in turn order."""
    turns: dict = {}
    for r in sorted(records, key=lambda r: r.turn):
        turns.setdefault(r.key, []).append(r.token_ids)
    return turns


def identical_share(mine: Sequence[TurnRecord], base: Sequence[TurnRecord] | None) -> float | None:
    """The share of the questions both answered whose token ids, every turn, are the same."""
    ours, theirs = answers(mine), answers(base or [])
    common = ours.keys() & theirs.keys()
    return sum(ours[k] == theirs[k] for k in common) / len(common) if common else None


def row(mine: Sequence[TurnRecord], ar: Sequence[TurnRecord] | None, hf: Sequence[TurnRecord] | None = None) -> dict:
    """The numbers of one table row (`METRIC_COLUMNS`, in that order) from one method's records `mine`
    (not empty), against the baselines' records `ar` and `hf` (None: no such baseline ran)."""
    rounds = [n for r in mine for n in r.accept_lengths]
    peaks = [r.peak_memory_mb for r in mine if r.peak_memory_mb is not None]
    return {
        "questions": len({r.key for r in mine}),
        "tokens_per_s": tokens_per_s(mine),
        "speedup_vs_ar": speedup(mine, ar),
        "speedup_vs_hf": speedup(mine, hf),
        "mean_accepted": mean(rounds),
        "nodes_per_round": mean([n for r in mine for n in r.nodes]),
        "draft_steps_per_round": mean([n for r in mine for n in r.draft_steps]),
        "syncs_per_round": syncs_per_round(mine),
        **{f"ctar_{w}": share for w, share in ctar(rounds).items()},
        "identical_to_ar": None if mine[0].method == BASELINE else identical_share(mine, ar),
        "peak_memory_mb": max(peaks) if peaks else None,
    }


# ------------------------------------------------------------------------------------ timing
def timed(fn: Callable[[], T], device: torch.device) -> tuple[T, float]:
    """(fn(), its wall seconds): the device is synchronised before the clock starts and before it stops,
    so the time covers the work fn queued, not only its launch."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0


def median_ms(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 3) -> float:
    """Median milliseconds of fn() over `repeats` calls, after `warmup` untimed ones.

    On CUDA each call is timed with CUDA events recorded around it (the device time from its first
    queued work to its last, gaps the host leaves included); elsewhere with `timed`."""
    for _ in range(warmup):
        fn()
    return statistics.median(_call_ms(fn, device) for _ in range(repeats))


def _call_ms(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    return 1e3 * timed(fn, device)[1]


# ------------------------------------------------------------------------------------ the machine
def environment(model: Model) -> dict[str, str]:
    """The two columns every stored result carries: device (the GPU's name, or "cpu (N threads)") and
    versions (torch, transformers and python)."""
    import transformers  # heavy (~1 s): only when a result is written

    d = model.device
    device = (
        torch.cuda.get_device_name(d)
        if d.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)"
        if d.type == "cpu"
        else str(d)
    )
    versions = f"torch {torch.__version__}, transformers {transformers.__version__}, python {platform.python_version()}"
    return {"device": device, "versions": versions}


def warn(message: str, source: str | None = "bench"):
    """A warning on stderr, prefixed with the command it comes from: `kangaroo-lab bench: ...`
    (`kangaroo-lab: ...` without one)."""
    print(f"kangaroo-lab{f' {source}' if source else ''}: {message}", file=sys.stderr)
