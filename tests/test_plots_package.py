"""The plots package's seams: tables without matplotlib, method styles from the method table, the eta rule
from `options.below_eta`, CTAR windows from the data. CPU, seconds."""

import ast
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest

from kangaroo_lab import plots
from kangaroo_lab.options import below_eta
from kangaroo_lab.plots import tables, trees
from kangaroo_lab.proposers import METHOD_TABLE, TREE_METHODS, Method

PACKAGE = Path(plots.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every module a source file imports ("matplotlib.pyplot", "..options", ".style"), at any depth."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


def test_tables_import_neither_matplotlib_nor_a_drawing_module():
    imports = imported_modules(PACKAGE / "tables.py")
    assert not any(name.split(".")[0] == "matplotlib" for name in imports), imports
    assert not any(name.startswith(".") and not name.startswith("..") for name in imports), imports  # no .style


def test_method_labels_colours_and_order_come_from_the_method_table():
    assert plots.METHOD_ORDER == tuple(METHOD_TABLE)
    for name, row in METHOD_TABLE.items():
        assert plots.METHOD_COLORS[name] == row.colour and plots.METHOD_LABELS[name] == row.label


def trace(rounds: list[list[float]]) -> pd.DataFrame:
    """One row per draft: rounds of confidences, every draft accepted."""
    return pd.DataFrame(
        {"category": "qa", "question_id": 0, "turn": 0, "round": r, "position": i + 1, "confidence": c, "accepted": 1}
        for r, confs in enumerate(rounds)
        for i, c in enumerate(confs)
    )


@pytest.mark.parametrize("eta, drafts", [(0.5, 3.0), (0.5000001, 1.0), (0.25, 3.0)])
def test_threshold_tradeoff_follows_below_eta_at_equality(eta, drafts):
    # a draft at exactly eta goes on (== eta is not below it); just above its confidence, drafting stops after it
    t = tables.threshold_tradeoff(trace([[0.5, 0.5, 0.9]]), eta)
    assert t["drafts_per_round"] == drafts
    assert bool(below_eta(0.5, eta)) == (drafts == 1.0)


def test_tradeoff_curve_counts_the_first_draft_below_eta_and_none_after():
    curve = tables.tradeoff_curve(trace([[0.9, 0.3, 0.8, 0.7]]), thresholds=[0.0, 0.3, 0.31, 0.95])
    assert curve["drafts_per_round"].tolist() == [4.0, 4.0, 2.0, 1.0]


def test_ctar_windows_default_to_the_longest_round_of_the_trace():
    t = tables.ctar_from_trace(trace([[0.9, 0.9, 0.9, 0.9], [0.9]]))
    assert t["window"].tolist() == [1, 2, 3, 4]  # not a fixed 1..6
    assert t["ctar"].tolist() == [1.0, 0.5, 0.5, 0.5]
    assert tables.ctar_from_trace(trace([[0.9]] * 3).iloc[:0]).empty


def test_sweep_settings_read_what_a_method_has_from_the_table(monkeypatch):
    row = {"max_draft": 3, "top_k": 4, "node_budget": 32, "lookup_tokens": 16, "threshold": 0.0, "early_exit": "device"}
    for name in TREE_METHODS:
        setting = trees._setting(pd.Series(row | {"method": name}))
        assert setting.startswith("top-k 4, depth 3, budget 32") and ("lookup 16" in setting) == bool(
            METHOD_TABLE[name].branch
        )
    # a new row of the table, with a branch and a tree, is described as such without any name in plots
    monkeypatch.setitem(METHOD_TABLE, "index-tree", Method("index-tree", "x", "#000000", "lookup", True, True))
    assert trees._setting(pd.Series(row | {"method": "index-tree"})).endswith("budget 32, lookup 16")
    assert trees._setting(pd.Series(row | {"method": "pld"})) == "lookup 16 tokens"
    assert trees._setting(pd.Series(row | {"method": "unknown"})) == "γ 3"
