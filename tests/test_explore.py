"""explore.py: the computations the notebooks show, on tiny-random on the CPU."""

import math

import pandas as pd
import pytest
import torch

from kangaroo_lab import explore, generate, new_adapter
from kangaroo_lab.questions import Question
from kangaroo_lab.accept import Sampler


@pytest.fixture(scope="module")
def adapter(tiny):
    return new_adapter(tiny, 2, seed=7)


def test_layer_predictions(tiny):
    df = explore.layer_predictions(tiny, "Once upon a time", max_positions=5)
    assert list(df.columns[:5]) == ["layer", "position", "token", "probability", "top1_matches"]
    assert len(df) == tiny.config.n_layers * 5 and sorted(df["layer"].unique()) == [1, 2, 3, 4]
    assert df["probability"].between(0, 1).all()
    last = df[df["layer"] == tiny.config.n_layers]
    assert last["top1_matches"].all()  # the full model agrees with itself
    assert (last["token"] == last["layer_token"]).all()
    ar = generate(tiny, "Once upon a time", method="ar", max_new_tokens=5)
    assert list(last["token"]) == [explore.token_text(tiny, t) for t in ar.token_ids]  # its greedy answer
    some = explore.layer_predictions(tiny, "Once upon a time", layers=[0, 2], max_positions=3)
    assert sorted(some["layer"].unique()) == [0, 2] and len(some) == 6
    with pytest.raises(ValueError, match="out of range"):
        explore.layer_predictions(tiny, "hi", layers=[5])


def test_token_text_is_readable(tiny):
    assert explore.token_text(tiny, tiny.tokenizer.convert_tokens_to_ids("Ċ")) == "⏎"  # byte-level newline
    assert explore.token_text(tiny, tiny.encode("\x05", chat=False)[0]) == "\u2405"  # a control character, made visible
    assert explore.token_text(tiny, tiny.encode("A", chat=False)[0]) == "A"


def test_parameter_counts(tiny, adapter):
    df = explore.parameter_counts(tiny, adapter, medusa_heads=3).set_index("part")
    c = tiny.config
    total = sum(p.numel() for p in tiny.engine.parameters())
    assert df.loc["target model (total)", "params"] == total
    parts = ["embedding", "shallow layers 1-2", "deep layers 3-4", "final norm", "LM head"]
    assert df.loc[parts, "params"].sum() == total  # untied head: each part once
    assert df.loc["Kangaroo adapter (attention)", "params"] == adapter.num_parameters()
    assert df.loc["Medusa-style heads (k=3)", "params"] == 3 * (c.dim * c.dim + c.dim + c.dim * c.vocab_size)
    shared = explore.parameter_counts(tiny, adapter, medusa_heads=3, medusa_shared_head=True).set_index("part")
    assert shared.loc["Medusa-style heads (k=3)", "params"] == 3 * (c.dim * c.dim + c.dim)
    assert df["share"].loc["target model (total)"] == 1.0


def test_cost_breakdown(tiny, adapter):
    df = explore.cost_breakdown(tiny, adapter, repeats=2, context=16)
    assert list(df["part"]) == [
        "embedding",
        "shallow layers 1-2",
        "deep layers 3-4",
        "adapter (attention)",
        "final norm + LM head",
    ]
    assert (df["ms"] > 0).all() and df["device"].str.startswith("cpu").all()
    assert df["params"].iloc[3] == adapter.num_parameters()


def test_trace_frame_has_one_row_per_draft(tiny, adapter):
    results = [generate(tiny, p, adapter=adapter, threshold=0.0, max_draft=4, max_new_tokens=20) for p in ("ab", "cd")]
    meta = [{"category": "qa", "question_id": 1}, {"category": "rag", "question_id": 2, "turn": 1}]
    df = explore.trace_frame(results, meta, model=tiny)
    assert list(df.columns) == list(explore.TRACE_COLUMNS)
    assert len(df) == sum(len(r.draft_confidences) for r in results)
    assert list(df["confidence"]) == [c for r in results for c in r.draft_confidences]
    assert list(df["accepted"]) == [a for r in results for a in r.draft_accepted]
    assert list(df["position"]) == [p for r in results for p in r.draft_positions]
    assert set(df.loc[df["category"] == "rag", "turn"]) == {1} and set(df.loc[df["category"] == "qa", "turn"]) == {0}
    assert df["device"].iloc[0].startswith("cpu") and "torch" in df["versions"].iloc[0]
    first = df[(df["category"] == "qa") & (df["round"] == 0)]
    assert list(first["position"]) == [1, 2, 3, 4]  # eta = 0: every round drafts gamma tokens
    with pytest.raises(ValueError, match="one per result"):
        explore.trace_frame(results, meta[:1])


def test_record_trace_answers_every_turn(tiny, adapter, tmp_path):
    q = Question(7, "mt_bench", ("Say hi.", "Say bye."))
    df = explore.record_trace(tiny, adapter, [q], tmp_path / "trace.csv", max_new_tokens=12)
    assert list(df.columns) == list(explore.TRACE_COLUMNS) and (tmp_path / "trace.csv").is_file()
    assert set(df["turn"]) == {0, 1} and set(df["question_id"]) == {7}
    assert df.groupby(["turn", "round"]).size().max() == 6  # threshold 0: gamma drafts per round
    first = generate(tiny, "Say hi.", adapter=adapter, threshold=0.0, max_new_tokens=12)
    assert list(df.loc[df["turn"] == 0, "accepted"]) == [int(a) for a in first.draft_accepted]  # == trace_frame


def test_chi_square_p_value():
    p = torch.tensor([0.5, 0.3, 0.2])
    stat, dof, pv = explore.chi_square(torch.tensor([500, 300, 200]), p)
    assert stat == pytest.approx(0.0) and dof == 2 and pv == pytest.approx(1.0)
    stat, dof, pv = explore.chi_square(torch.tensor([520, 270, 210]), p)
    assert pv == pytest.approx(math.exp(-stat / 2))  # the chi-square tail with 2 degrees of freedom
    assert explore.chi_square(torch.tensor([300, 300, 400]), p)[2] < 1e-6


def test_exact_token_distribution(tiny):
    ids = tiny.encode("Once upon a time")
    p0 = explore.exact_token_distribution(tiny, ids, 0, temperature=0.7, top_p=0.95)
    logits = tiny.engine.head(tiny.engine.hidden_states(torch.tensor([ids]))[-1])[0, -1]
    assert torch.allclose(p0, Sampler(0.7, 0.95, 0, tiny.device).probs(logits), atol=1e-6)
    p1 = explore.exact_token_distribution(tiny, ids, 1, temperature=0.7, top_p=0.95)
    assert p1.shape == (tiny.config.vocab_size,) and p1.sum().item() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError):
        explore.exact_token_distribution(tiny, ids, 3)


def test_sampling_check_accepts_kangaroo_sampling(tiny, adapter):
    check = explore.sampling_check(tiny, adapter, "Once upon a time", n=300, position=1, top=10)
    assert check.p_value > 1e-3 and check.n == 300 and check.dof > 3
    assert list(check.frame.columns) == ["token", "token_id", "target_p", "empirical_p", "count", "n"]
    assert len(check.frame) == 10 and check.frame["target_p"].is_monotonic_decreasing
    assert check.frame["empirical_p"].sum() <= 1.0


def test_acceptance_vs_temperature(tiny, adapter):
    df = explore.acceptance_vs_temperature(tiny, adapter, ["ab", "cd"], temperatures=(0.0, 1.0), max_new_tokens=12)
    assert list(df["temperature"]) == [0.0, 1.0] and (df["method"] == "kangaroo").all()
    assert df["acceptance_rate"].between(0, 1).all() and (df["mean_accepted"] >= 1).all()
    assert (df["tokens"] == 24).all()


def test_ctar():
    assert explore.ctar([1, 2, 3, 7], windows=(1, 2, 6)) == {1: 0.75, 2: 0.5, 6: 0.25}
    assert math.isnan(explore.ctar([], windows=(1,))[1])


def test_step_through(tiny, adapter):
    run = explore.step_through(tiny, adapter, "hello there", threshold=0.2, max_draft=4, max_new_tokens=24)
    assert run.identical and run.kangaroo.token_ids == run.ar.token_ids
    assert 1 + sum(r.emitted for r in run.rounds) == len(run.kangaroo.token_ids)
    assert run.rounds[-1].text == run.kangaroo.text
    assert run.ctar == explore.ctar(run.kangaroo.accept_lengths)
    for r in run.rounds:
        k = len(r.drafts)
        assert r.rolled_back == k - r.accepted and len(r.confidences) == k
        assert r.kind == ("plain" if k == 0 else "bonus" if r.accepted == k else "correction")
        if r.stop == "threshold":
            assert r.confidences[-1] < 0.2
        elif r.stop == "gamma":
            assert k == 4 and r.confidences[-1] >= 0.2
    frame = run.frame()
    assert list(frame["round"]) == list(range(1, len(run.rounds) + 1))
    with pytest.raises(ValueError, match="exits after layer 2"):
        explore.step_through(tiny, adapter, "hi", exit_layer=3)


def test_draft_agreement(tiny, adapter):
    heads = {"attention": adapter, "none": new_adapter(tiny, 2, variant="none")}
    df = explore.draft_agreement(tiny, heads, ["ab", "cd"], max_new_tokens=6).set_index("adapter")
    assert (df["positions"] == 12).all() and df["top1"].between(0, 1).all()
    assert df.loc["none", "parameters"] == tiny.config.dim
    assert df["expected_accept"].between(0, 1).all() and list(df["exit_layer"]) == [2, 2]


def test_read_stored(tmp_path, capsys):
    assert explore.read_stored(tmp_path, "bench/summary.csv") is None
    assert "kangaroo-lab bench" in capsys.readouterr().out
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    assert isinstance(explore.read_stored(tmp_path, "x.csv"), pd.DataFrame)


def test_read_stored_outside_the_repository(tmp_path, monkeypatch, capsys):
    """A notebook started elsewhere computes DATA_DIR from its working directory: a folder that does not
    exist. The stored file is then found through $KANGAROO_LAB_DATA, else the package's own checkout."""
    elsewhere = tmp_path / "not-a-checkout" / "figures" / "data"
    monkeypatch.delenv("KANGAROO_LAB_DATA", raising=False)
    monkeypatch.setattr(explore, "_REDIRECTED", set())
    assert explore.REPO_DATA.is_dir()  # the tests run from a checkout
    summary = explore.read_stored(elsewhere, "bench/summary.csv")
    assert summary is not None and str(explore.REPO_DATA) in capsys.readouterr().out
    assert explore.read_stored(elsewhere, "bench/step_times.csv") is not None
    assert capsys.readouterr().out == ""  # the redirection is said once per folder
    mine = tmp_path / "mine"
    (mine / "bench").mkdir(parents=True)
    (mine / "bench" / "summary.csv").write_text("a,b\n1,2\n")
    monkeypatch.setenv("KANGAROO_LAB_DATA", str(mine))
    assert list(explore.read_stored(elsewhere, "bench/summary.csv").columns) == ["a", "b"]
    monkeypatch.setattr(explore, "REPO_DATA", tmp_path / "gone")
    out = explore.read_stored(elsewhere, "bench/nothing.csv")
    message = capsys.readouterr().out
    assert out is None and "KANGAROO_LAB_DATA" in message and str(mine) in message
