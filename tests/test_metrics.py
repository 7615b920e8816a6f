"""kangaroo_lab.metrics: the numbers every table shows, the one timer, the one description of the machine."""

import math
import time

import pytest
import torch

from kangaroo_lab import bench, explore, metrics
from kangaroo_lab.metrics import TurnRecord


def rec(method, qid, tokens, seconds, accept=(), nodes=(), steps=(), syncs=None, category="qa"):
    return TurnRecord(
        method, qid, category, 0, list(tokens), "", seconds, list(accept), list(nodes), list(steps), syncs
    )


def test_ctar_counts_rounds_above_each_window():
    assert metrics.ctar([1, 2, 3, 7], windows=(1, 2, 6, 7)) == {1: 0.75, 2: 0.5, 6: 0.25, 7: 0.0}
    assert metrics.ctar([], windows=(1, 2)) == {1: None, 2: None}  # an empty cell in a CSV
    assert math.isnan(explore.ctar([], windows=(1,))[1])  # a number for a notebook's table
    assert explore.ctar([1, 4], windows=(1, 3)) == metrics.ctar([1, 4], windows=(1, 3))


def test_row_by_hand():
    ar = [rec("ar", 1, range(10), 1.0, [1] * 9, syncs=9), rec("ar", 2, range(4), 1.0, [1] * 3, syncs=3)]
    mine = [
        rec("kangaroo-tree", 1, range(10), 0.5, [4, 5], nodes=[8, 12], steps=[2, 2], syncs=2),
        rec("kangaroo-tree", 2, [9] * 4, 0.5, [3], nodes=[10], steps=[3], syncs=1),
    ]
    row = metrics.row(mine, ar)
    assert list(row) == list(metrics.METRIC_COLUMNS)
    assert row["questions"] == 2 and row["tokens_per_s"] == pytest.approx(14 / 1.0)
    assert row["speedup_vs_ar"] == pytest.approx(14 / 7) and row["speedup_vs_hf"] is None
    assert row["mean_accepted"] == pytest.approx(12 / 3)
    assert row["nodes_per_round"] == pytest.approx(10) and row["draft_steps_per_round"] == pytest.approx(7 / 3)
    assert row["syncs_per_round"] == pytest.approx(1.0)
    assert (row["ctar_3"], row["ctar_4"], row["ctar_5"]) == pytest.approx((2 / 3, 1 / 3, 0.0))
    assert row["identical_to_ar"] == 0.5 and row["peak_memory_mb"] is None
    assert metrics.row(ar, ar)["identical_to_ar"] is None  # not meaningful for ar itself
    assert metrics.row(ar, ar)["syncs_per_round"] == 1.0  # ar: one read per token after the first


def test_speedup_only_over_the_questions_both_answered():
    ar = [rec("ar", 1, range(10), 1.0), rec("ar", 2, range(10), 5.0)]
    hf = [rec("hf", 1, range(10), 2.0)]
    assert metrics.speedup(hf, ar) == pytest.approx(0.5) and metrics.speedup(hf, None) is None


def test_the_summary_and_the_sweeps_share_one_row_builder():
    ar = [rec("ar", 1, range(8), 1.0, [1] * 7, syncs=7)]
    mine = [rec("kangaroo", 1, range(8), 0.5, [3, 4], nodes=[4, 6], steps=[4, 6], syncs=10)]
    summary = {r["method"]: r for r in bench.summarize(ar + mine) if r["category"] == "overall"}["kangaroo"]
    sweep = bench.sweep_row({"method": "kangaroo", "threshold": 0.6}, mine, ar, {"device": "d", "versions": "v"})
    assert list(sweep) == list(bench.SWEEP_COLUMNS) and sweep["threshold"] == 0.6
    shared = [c for c in bench.SWEEP_COLUMNS if c in metrics.METRIC_COLUMNS]
    assert {"draft_steps_per_round", "nodes_per_round", "speedup_vs_ar"} <= set(shared)
    assert {c: sweep[c] for c in shared} == {c: summary[c] for c in shared}
    assert list(bench.SUMMARY_COLUMNS[2:-2]) == list(metrics.METRIC_COLUMNS)


def test_timed_returns_the_result_and_its_seconds():
    out, seconds = metrics.timed(lambda: time.sleep(0.02) or 7, torch.device("cpu"))
    assert out == 7 and 0.02 <= seconds < 1


def test_median_ms_warms_up_then_takes_the_median():
    calls, waits = [], iter([0.0, 0.0, 0.2, 0.001, 0.002])

    def fn():
        calls.append(1)
        time.sleep(next(waits))

    ms = metrics.median_ms(fn, torch.device("cpu"), repeats=3, warmup=2)
    assert len(calls) == 5 and 2 <= ms < 200  # the median of ~200, ~1 and ~2 ms: the 2 ms call


def test_environment_has_the_stored_columns(tiny):
    env = metrics.environment(tiny)
    assert set(env) == {"device", "versions"} and env["device"].startswith("cpu (")
    assert "torch" in env["versions"] and "transformers" in env["versions"]
    assert bench.environment is metrics.environment and explore.environment is metrics.environment


def test_warn_prefixes_the_command(capsys):
    metrics.warn("careful")
    assert capsys.readouterr().err == "kangaroo-lab bench: careful\n"
