"""What a benchmark writes: the summary rows (one per method and category, built by `metrics.row`),
the columns of every CSV file, the files written a row at a time, and the Markdown tables."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..metrics import METRIC_COLUMNS, TurnRecord, row
from ..proposers import BASELINE
from ..questions import CATEGORIES
from .runners import HF_BASELINE

NOTE = "note"  # the `method` of summary rows that carry a note in their `category`
SUMMARY_COLUMNS = ("method", "category", *METRIC_COLUMNS, "device", "versions")
SWEEP_COLUMNS = (
    "method",
    "exit_layer",
    "adapter",
    "threshold",
    "max_draft",
    "top_k",
    "node_budget",
    "lookup_tokens",
    "early_exit",
    "questions",
    "tokens_per_s",
    "speedup_vs_ar",
    "mean_accepted",
    "draft_steps_per_round",
    "nodes_per_round",
    "syncs_per_round",
    "device",
    "versions",
)
MISMATCH_COLUMNS = (
    "method",
    "category",
    "question_id",
    "turn",
    "index",
    "ar_token",
    "method_token",
    "ar_top2_gap",
    "device",
    "versions",
)


# ------------------------------------------------------------------------------------ summary rows
def summarize(
    records: Sequence[TurnRecord], device: str = "", versions: str = "", notes: Iterable[str] = ()
) -> list[dict]:
    """One row per method and category, then per method `overall`, then one row per note."""
    by_method: dict[str, list[TurnRecord]] = {}
    for r in records:
        by_method.setdefault(r.method, []).append(r)
    rows = []
    for method, mine in by_method.items():
        for category in [*categories(records), "overall"]:
            subset = [r for r in mine if category in ("overall", r.category)]
            if subset:
                rows.append(
                    {
                        "method": method,
                        "category": category,
                        **row(subset, by_method.get(BASELINE), by_method.get(HF_BASELINE)),
                        "device": device,
                        "versions": versions,
                    }
                )
    return rows + [note_row(n) for n in notes]


def note_row(note: str) -> dict:
    return {c: None for c in SUMMARY_COLUMNS} | {"method": NOTE, "category": note}


def categories(records: Iterable[TurnRecord]) -> list[str]:
    """Spec-Bench's categories in their order, then any others in the order first seen."""
    seen = list(dict.fromkeys(r.category for r in records))
    return [c for c in CATEGORIES if c in seen] + [c for c in seen if c not in CATEGORIES]


# ------------------------------------------------------------------------------------ files
class CsvRows:
    """A CSV file written one row at a time, flushed after each, so a killed run keeps what it measured."""

    def __init__(self, path, columns: Sequence[str]):
        self.path, self.columns = Path(path), list(columns)

    def __enter__(self) -> CsvRows:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = self.path.open("w", newline="", encoding="utf-8")
        self.writer = csv.DictWriter(self.file, self.columns)
        self.writer.writeheader()
        return self

    def write(self, row: dict) -> dict:
        self.writer.writerow(row)
        self.file.flush()
        return row

    def __exit__(self, *exc):
        self.file.close()


def write_csv(path, rows: Iterable[dict], columns: Sequence[str]) -> Path:
    """`rows` (dicts with exactly `columns`) -> the CSV file `path`; returns the path."""
    with CsvRows(path, columns) as sink:
        for r in rows:
            sink.write(r)
    return Path(path)


# ------------------------------------------------------------------------------------ Markdown
def _fmt(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def summary_markdown(rows: Sequence[dict]) -> str:
    """Methods x (questions, tokens/s, overall and per-category speedup vs ar, tokens / nodes / syncs per
    round, identical to ar)."""
    data = [r for r in rows if r["method"] != NOTE]
    cats = list(dict.fromkeys(r["category"] for r in data if r["category"] != "overall"))
    cell = {(r["method"], r["category"]): r for r in data}
    head = [
        "method",
        "questions",
        "tokens/s",
        "speedup vs ar",
        *cats,
        "tokens per round",
        "nodes per round",
        "syncs per round",
        "identical to ar",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in dict.fromkeys(r["method"] for r in data):
        o = cell[(method, "overall")]
        per_cat = [_fmt(cell[(method, c)]["speedup_vs_ar"]) if (method, c) in cell else "" for c in cats]
        values = [
            method,
            str(o["questions"]),
            _fmt(o["tokens_per_s"], 1),
            _fmt(o["speedup_vs_ar"]),
            *per_cat,
            _fmt(o["mean_accepted"]),
            _fmt(o.get("nodes_per_round"), 1),
            _fmt(o.get("syncs_per_round")),
            _fmt(o["identical_to_ar"]),
        ]
        lines.append("| " + " | ".join(values) + " |")
    notes = [f"Note: {r['category']}" for r in rows if r["method"] == NOTE]
    return "\n".join(lines + ([""] + notes if notes else []))


def sweep_markdown(rows: Sequence[dict]) -> str:
    """The sweep's rows as a Markdown table: SWEEP_COLUMNS that hold a value, minus the bookkeeping ones."""
    head = [
        c
        for c in SWEEP_COLUMNS
        if c not in ("questions", "device", "versions") and any(r.get(c) is not None for r in rows)
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) if r.get(c) is not None else "" for c in head) + " |" for r in rows]
    return "\n".join(lines)
