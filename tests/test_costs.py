"""Step costs, the projection arithmetic, the bench's cache reservation and `bench --trace/--costs`."""

import csv
import json

import pytest
import torch

from kangaroo_lab import bench, costs, generate, graphs, new_adapter
from kangaroo_lab.cli import main
from kangaroo_lab.questions import Question
from kangaroo_lab.graphs import GraphOptions
from kangaroo_lab.models import load_model
from kangaroo_lab.rounds import RoundSteps
from kangaroo_lab.tree import Layout

QUESTIONS = [
    Question(1, "qa", ["What is the capital of France?"]),
    Question(2, "mt_bench", ["Write a haiku about rain.", "Now make it about snow."]),
]


def test_step_times_cover_every_step_and_row_count(tiny):
    adapter = new_adapter(tiny, 2)
    rows = costs.step_times(tiny, adapter, rows=(1, 4, 16), context=40, reps=2)
    assert [(r["step"], r["tokens"]) for r in rows] == [(s, R) for R in (1, 4, 16) for s in costs.STEPS]
    assert all(r["ms"] > 0 and r["device"].startswith("cpu") for r in rows)
    assert set(rows[0]) == set(costs.STEP_COLUMNS)


def _steps(table: dict) -> list[dict]:
    return [{"step": s, "tokens": R, "ms": ms, "device": "d", "versions": "v"} for (s, R), ms in table.items()]


def test_step_costs_interpolate_between_measured_rows():
    c = costs.StepCosts(_steps({("verify", 1): 10.0, ("verify", 5): 14.0}))
    assert c("verify", 1) == 10.0 and c("verify", 3) == pytest.approx(12.0) and c("verify", 5) == 14.0
    with pytest.raises(ValueError, match="timed over 1..5 rows, not 8"):
        c("verify", 8)
    with pytest.raises(ValueError, match="no timing of the draft step"):
        c("draft", 1)


def test_projection_arithmetic():
    """A chain (levels of 1 node) and a tree with a lookup branch, against hand-computed round costs."""
    table = {("full", 1): 10.0, ("full", 9): 12.0}
    for R in (1, 2, 4, 8, 16):
        table |= {("draft", R): 1.0 + R / 8, ("shallow", R): 0.5, ("verify", R): 10.0 + R / 4}
    steps = _steps(table)
    chain = Layout(0, (1, 1, 1, 1), 1)
    # round 1: 2 drafts (2 x 1.125) + shallow(1) 0.5 + verify(3) 10.75, emits 3 tokens; round 2: no draft, 1 token
    rows = costs.project(steps, [("qa", 2, 3), ("qa", 0, 1), ("rag", 3, 4)], chain, "test")
    qa = next(r for r in rows if r["category"] == "qa")
    qa_ms = (2 * 1.125 + 0.5 + 10.75) + (0.5 + 10.25)
    assert qa["projected_ar_tokens_per_s"] == pytest.approx(100.0)
    assert qa["projected_tokens_per_s"] == pytest.approx(1000 * 4 / qa_ms)
    assert qa["projected_speedup"] == pytest.approx((4 / qa_ms) / (1 / 10))
    assert qa["mean_accepted"] == 2 and qa["mean_draft_steps"] == 1 and qa["method"] == "kangaroo"
    overall = rows[-1]
    assert overall["category"] == "overall" and overall["rounds"] == 3
    rag_ms = 3 * 1.125 + 0.5 + 11.0
    assert overall["projected_tokens_per_s"] == pytest.approx(1000 * 8 / (qa_ms + rag_ms))
    tree = Layout(4, (2, 4), 2)  # level 0: the root + 4 lookup nodes (5 rows), then 2, then 4 nodes
    (row, _) = costs.project(steps, [("qa", 2, 5)], tree, "test", "kangaroo+lookup")
    want = (1.0 + 5 / 8) + (1.0 + 2 / 8) + 0.5 + (10.0 + 11 / 4)  # draft(5) + draft(2) + shallow(4) + verify(11)
    assert row["round_ms"] == pytest.approx(want)
    (row, _) = costs.project(steps, [("qa", 0, 3)], Layout(8, (), 1), "test", "pld")
    assert row["round_ms"] == 12.0  # the whole model over the root and 8 lookup tokens
    with pytest.raises(ValueError, match="shallow step was timed over 1..16 rows, not 32"):
        costs.project(steps, [("qa", 1, 2)], Layout(0, (32,), 32), "test", "kangaroo-tree")
    with pytest.raises(ValueError, match="no rounds"):
        costs.project(steps, [], chain, "test")


def test_shaped_model_names_its_shapes():
    with pytest.raises(ValueError, match="vicuna-7b-shaped"):
        costs.shaped_model("llama-70b", "cpu")
    c = costs.SHAPES["vicuna-7b-shaped"]
    per_layer = 4 * c.dim * c.dim + 3 * c.dim * c.ffn_dim + 2 * c.dim
    params = c.n_layers * per_layer + 2 * c.vocab_size * c.dim + c.dim
    assert 6.7e9 < params < 6.8e9  # Vicuna-7B / Llama-7B: 6.74B parameters


def test_bench_captures_each_method_once(tmp_path, monkeypatch):
    """The bench reserves its longest cache first and every method's graphs coexist, so that
    interleaving methods never recaptures (or recompiles) inside a timed turn.

    A model of its own: the session's `tiny` keeps the graphs that earlier tests captured (over a
    cache that is already large enough), so on it this count would depend on the test order."""
    tiny = load_model("tiny-random", device="cpu", seed=0)
    built = []
    ar_init, round_init = graphs.ARGraph.__init__, RoundSteps.__init__
    monkeypatch.setattr(
        graphs.ARGraph, "__init__", lambda self, *a, **k: (built.append("ar"), ar_init(self, *a, **k))[1]
    )
    monkeypatch.setattr(
        RoundSteps, "__init__", lambda self, *a, **k: (built.append(a[2]), round_init(self, *a, **k))[1]
    )
    monkeypatch.setattr(bench.runners, "engine_runner", _graph_runner)
    bench.benchmark(
        tiny, QUESTIONS, "ar,kangaroo,pld,kangaroo+lookup", tmp_path, max_new_tokens=120, progress=False
    )  # turn 2 > 256
    assert len(built) == 4  # one set per method: during the warm-up, never again
    assert built[0] == "ar" and len(set(built[1:])) == 3


def _graph_runner(model, method, adapter, opts):
    def run(prompt_ids, max_new_tokens):
        res = generate(
            model,
            prompt_ids,
            adapter=adapter,
            method=method,
            options=opts,
            max_new_tokens=max_new_tokens,
            cuda_graphs=GraphOptions(),
        )
        return bench.Generated(res.token_ids, res.accept_lengths, [len(r.drafts) for r in res.trace])

    return run


def test_draft_trace_rows_follow_the_rounds(tiny, tmp_path):
    adapter = new_adapter(tiny, 2, seed=0)
    path = bench.draft_trace(
        tiny, adapter, QUESTIONS, tmp_path / "trace.csv", max_draft=3, max_new_tokens=10, progress=False
    )
    rows = list(csv.DictReader(path.open()))
    assert rows and set(rows[0]) == set(bench.TRACE_COLUMNS)
    assert {(r["question_id"], r["turn"]) for r in rows} == {("1", "0"), ("2", "0"), ("2", "1")}
    for key in {(r["question_id"], r["turn"], r["round"]) for r in rows}:
        rnd = [r for r in rows if (r["question_id"], r["turn"], r["round"]) == key]
        accepted = [int(r["accepted"]) for r in rnd]
        assert [int(r["position"]) for r in rnd] == list(range(1, len(rnd) + 1))
        assert accepted == sorted(accepted, reverse=True)  # accepted drafts form a prefix of the round


def test_cli_bench_trace_and_costs(tmp_path):
    qfile = tmp_path / "q.jsonl"
    qfile.write_text(
        "\n".join(
            json.dumps({"question_id": q.question_id, "category": q.category, "turns": q.turns}) for q in QUESTIONS
        )
    )
    out = tmp_path / "out"
    code = main(
        [
            "bench",
            "--model",
            "tiny-random",
            "--questions",
            str(qfile),
            "--methods",
            "ar,kangaroo,pld",
            "--max-new-tokens",
            "6",
            "--out",
            str(out),
            "--trace",
            "--costs",
        ]
    )
    assert code == 0
    assert (out / "draft_trace.csv").is_file() and (out / "step_times.csv").is_file()
    assert not (out / "projection_7b.csv").exists()  # the 7B shape needs a GPU: skipped on a CPU
    with open(out / "answers" / "kangaroo.jsonl") as f:
        turns = [t for line in f for t in json.loads(line)["choices"][0]["accept_lengths"]]
    rounds = bench.rounds_from_answers(out / "answers" / "kangaroo.jsonl")
    assert len(rounds) == sum(len(t) for t in turns) > 0
    assert sum(n for _, _, n in rounds) == sum(sum(t) for t in turns)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--methods", "ar", "--costs"], "add one to --methods"),
        (["--sweep", "threshold", "--trace"], "do not apply to --sweep"),
    ],
)
def test_cli_bench_refuses_extras_that_cannot_run(args, message, capsys):
    assert main(["bench", "--model", "tiny-random", *args]) == 2
    assert message in capsys.readouterr().err


def test_stacked_projections_keep_hugging_face_names(tiny):
    """q/k/v and gate/up are one matrix each inside the engine; state dicts still use HF's names, in
    HF's order, and load back to the same weights."""
    sd = tiny.engine.state_dict()
    names = [k for k in sd if k.startswith("layers.0.")]
    assert names == [
        "layers.0.input_layernorm.weight",
        "layers.0.self_attn.q_proj.weight",
        "layers.0.self_attn.k_proj.weight",
        "layers.0.self_attn.v_proj.weight",
        "layers.0.self_attn.o_proj.weight",
        "layers.0.post_attention_layernorm.weight",
        "layers.0.mlp.gate_proj.weight",
        "layers.0.mlp.up_proj.weight",
        "layers.0.mlp.down_proj.weight",
    ]
    attn = tiny.engine.layers[0].self_attn
    c = tiny.config
    assert sd["layers.0.self_attn.k_proj.weight"].shape == (c.n_kv_heads * c.head_dim, c.dim)
    assert torch.equal(
        sd["layers.0.self_attn.k_proj.weight"],
        attn.qkv_proj.weight[c.n_heads * c.head_dim : (c.n_heads + c.n_kv_heads) * c.head_dim],
    )
    fresh = new_adapter(tiny, 2, seed=5)
    fresh.load_state_dict(new_adapter(tiny, 2, seed=6).state_dict())
    assert torch.equal(fresh.self_attn.qkv_proj.weight, new_adapter(tiny, 2, seed=6).self_attn.qkv_proj.weight)


def test_matmul_attention_equals_sdpa():
    from torch.nn import functional as F

    from kangaroo_lab.engine import attend

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, h, t, 16, generator=g) for h, t in ((6, 3), (2, 10), (2, 10)))
    mask = torch.arange(10)[None, :] <= torch.tensor([5, 6, 7])[:, None]
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    torch.testing.assert_close(attend(q, k, v, mask), want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        attend(q[:, :, :1], k, v, None),
        F.scaled_dot_product_attention(q[:, :, :1], k, v, enable_gqa=True),
        atol=1e-5,
        rtol=1e-5,
    )


def test_projection_and_breakdown_from_stored_files(tiny, tmp_path):
    """project_stored and breakdown_stored need no GPU: a bench folder and its step times are enough."""
    bench.benchmark(tiny, QUESTIONS, "ar,kangaroo,pld,kangaroo+lookup", tmp_path, max_new_tokens=8, progress=False)
    rows = costs.step_times(tiny, new_adapter(tiny, 2), rows=costs.STEP_ROWS, context=40, reps=1)
    bench.write_csv(tmp_path / "step_times.csv", rows, costs.STEP_COLUMNS)
    projection = list(csv.DictReader(costs.project_stored(tmp_path, shape=tiny.name).open()))
    assert [r["method"] for r in projection if r["category"] == "overall"] == ["kangaroo", "pld", "kangaroo+lookup"]
    assert all(float(r["projected_speedup"]) > 0 and tiny.name in r["source"] for r in projection)
    breakdown = {r["method"]: r for r in csv.DictReader(costs.breakdown_stored(tmp_path).open())}
    assert set(breakdown) == {"kangaroo", "pld", "kangaroo+lookup"}
    pld, hybrid = breakdown["pld"], breakdown["kangaroo+lookup"]
    assert float(pld["draft_ms"]) == 0 and float(hybrid["draft_ms"]) > 0  # lookup drafts with no model
    for r in breakdown.values():
        parts = sum(float(r[k]) for k in ("draft_ms", "shallow_ms", "verify_ms"))
        assert float(r["modelled_device_ms"]) == pytest.approx(parts)
        assert float(r["other_ms"]) == pytest.approx(float(r["measured_round_ms"]) - parts)
    with pytest.raises(ValueError, match="holds no step times of 'llama-70b'"):
        costs.project_stored(tmp_path, shape="llama-70b")
