"""The benchmark harness: every method on tiny-random, metrics on hand-made records, sweeps, errors, CLI.

tiny-random has no shipped adapter, so kangaroo runs with an untrained one here (and says so)."""

import csv
import json

import pytest
import torch

from kangaroo_lab import bench
from kangaroo_lab.bench import (
    METHODS,
    NOTE,
    SUMMARY_COLUMNS,
    SWEEP_COLUMNS,
    Generated,
    TurnRecord,
    answer_question,
    benchmark,
    parse_methods,
    summarize,
    sweep_exit_layer,
    sweep_threshold,
)
from kangaroo_lab.cli import main
from kangaroo_lab.questions import Question, load_questions

TOKENS = 16
QUESTIONS = [
    {"question_id": 1, "category": "mt_bench", "turns": ["Write a haiku about rain.", "Now make it shorter."]},
    {"question_id": 2, "category": "qa", "turns": ["What is a comet?"]},
]


def write_questions(path, questions=QUESTIONS):
    path.write_text("".join(json.dumps(q) + "\n" for q in questions))
    return path


def read_csv(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """Every method over 2 questions (one of 2 turns), 16 new tokens each, on the CPU."""
    from kangaroo_lab import load_model

    tmp = tmp_path_factory.mktemp("bench")
    questions = load_questions(write_questions(tmp / "questions.jsonl"))
    model = load_model("tiny-random", device="cpu", seed=0)
    return benchmark(model, questions, METHODS, tmp / "out", max_new_tokens=TOKENS, progress=False)


# ------------------------------------------------------------------------------------ the whole run
def test_summary_csv_has_exact_columns_and_one_row_per_method_and_category(full_run):
    assert full_run.failed == {}
    columns, rows = read_csv(full_run.out / "summary.csv")
    assert columns == list(SUMMARY_COLUMNS)
    data = [r for r in rows if r["method"] != NOTE]
    assert [(r["method"], r["category"]) for r in data] == [
        (m, c) for m in METHODS for c in ("mt_bench", "qa", "overall")
    ]
    assert all(
        r["device"].startswith("cpu (") and "torch" in r["versions"] and "transformers" in r["versions"] for r in data
    )


def test_greedy_methods_are_lossless_and_ar_is_the_baseline(full_run):
    _, rows = read_csv(full_run.out / "summary.csv")
    by = {(r["method"], r["category"]): r for r in rows}
    for category in ("mt_bench", "qa", "overall"):
        assert float(by["ar", category]["speedup_vs_ar"]) == 1.0
        assert by["ar", category]["identical_to_ar"] == ""  # not meaningful for ar itself
        for method in ("kangaroo", "pld", "kangaroo-tree", "kangaroo+lookup", "kangaroo-noadapter"):
            assert float(by[method, category]["identical_to_ar"]) == 1.0
            assert float(by[method, category]["mean_accepted"]) >= 1.0
        assert by["hf", category]["mean_accepted"] == ""  # transformers reports no rounds
        assert float(by["hf", category]["speedup_vs_hf"]) == 1.0
    assert by["ar", "overall"]["questions"] == "2"


def test_rounds_nodes_and_syncs_per_method(full_run):
    """Tree methods verify many nodes with one host read a round; the paper's chain reads after every
    draft too; ar reads once per token."""
    _, rows = read_csv(full_run.out / "summary.csv")
    by = {r["method"]: r for r in rows if r["category"] == "overall"}
    assert float(by["ar"]["syncs_per_round"]) == 1.0 and by["ar"]["nodes_per_round"] == ""
    for method in ("pld", "kangaroo-tree", "kangaroo+lookup"):
        assert float(by[method]["syncs_per_round"]) == 1.0
    assert float(by["kangaroo"]["syncs_per_round"]) > 1.0
    assert float(by["kangaroo-tree"]["nodes_per_round"]) > float(by["kangaroo"]["nodes_per_round"])
    assert float(by["kangaroo-tree"]["draft_steps_per_round"]) == 2  # the default depth, every round
    assert all(r["peak_memory_mb"] == "" for r in rows)  # a CPU run: no device memory to report
    run = json.loads((full_run.out / "run.json").read_text())
    assert run["trees"]["kangaroo+lookup"] == {"branch": 16, "levels": [4, 15], "top_k": 4}
    assert run["options"]["pld"]["lookup_tokens"] == 32 and run["skipped"] == []
    columns, mismatches = read_csv(full_run.out / "mismatches.csv")
    assert columns == list(bench.MISMATCH_COLUMNS) and mismatches == []  # fp32 on a CPU: all identical


def test_mismatches_name_the_first_differing_token_and_the_top2_gap(tiny):
    prompt = tiny.encode("hello")
    ar = TurnRecord("ar", 1, "qa", 0, [5, 6, 7], "", 1.0, [], [], prompt_ids=prompt)
    same = TurnRecord("pld", 1, "qa", 0, [5, 6, 7], "", 1.0, [], [], prompt_ids=prompt)
    other = TurnRecord("kangaroo-tree", 1, "qa", 0, [5, 9, 7], "", 1.0, [], [], prompt_ids=prompt)
    (row,) = bench.find_mismatches(tiny, [ar, same, other], {"device": "d", "versions": "v"})
    assert (row["method"], row["index"], row["ar_token"], row["method_token"]) == ("kangaroo-tree", 1, 6, 9)
    assert row["ar_top2_gap"] == pytest.approx(bench.top2_gap(tiny, prompt + [5])) and row["ar_top2_gap"] >= 0


def test_a_question_that_cannot_fit_is_skipped_with_a_note(tiny, tmp_path):
    long = Question(9, "summarization", ["word " * 900])  # ~4500 byte tokens: beyond tiny-random's 1024
    result = benchmark(tiny, [Question(1, "qa", ["hi"]), long], "ar,pld", tmp_path, max_new_tokens=4, progress=False)
    assert {r.question_id for r in result.records} == {1}
    assert any(n.startswith("skipped summarization question 9") for n in result.notes)
    assert json.loads((tmp_path / "run.json").read_text())["skipped"][0].startswith("skipped summarization question 9")


def test_untrained_adapter_is_announced(full_run):
    assert any(n.startswith("kangaroo used an UNTRAINED adapter") for n in full_run.notes)
    _, rows = read_csv(full_run.out / "summary.csv")
    assert any(r["method"] == NOTE and "UNTRAINED" in r["category"] for r in rows)


def test_answers_are_in_spec_bench_format(full_run):
    for method in METHODS:
        lines = (full_run.out / "answers" / f"{method}.jsonl").read_text().splitlines()
        answers = [json.loads(line) for line in lines]
        assert [a["question_id"] for a in answers] == [1, 2]
        for a, q in zip(answers, QUESTIONS):
            assert set(a) == {"question_id", "category", "answer_id", "model_id", "choices", "tstamp"}
            choice = a["choices"][0]
            assert choice["index"] == 0 and a["category"] == q["category"]
            n = len(q["turns"])
            assert len(choice["turns"]) == len(choice["new_tokens"]) == len(choice["wall_time"]) == n
            assert len(choice["accept_lengths"]) == n
            assert all(0 < t <= TOKENS for t in choice["new_tokens"]) and all(s > 0 for s in choice["wall_time"])
            if method.startswith("hf"):
                assert choice["accept_lengths"] == [[]] * n
            else:  # the first token comes from the prefill, every other from a round
                assert [sum(a) for a in choice["accept_lengths"]] == [t - 1 for t in choice["new_tokens"]]
    records = [r for r in full_run.records if r.method == "kangaroo"]
    ar = [r for r in full_run.records if r.method == "ar"]
    assert [r.token_ids for r in records] == [r.token_ids for r in ar]


def test_second_turn_sees_the_methods_own_first_answer(tiny):
    prompts = []

    def fake(prompt_ids, max_new_tokens):
        prompts.append(prompt_ids)
        return Generated(tiny.encode(f"answer {len(prompts)}", chat=False) + [tiny.tokenizer.eos_token_id])

    q = Question(1, "mt_bench", ("first question", "second question"))
    turns = answer_question(tiny, "fake", fake, q, 8)
    assert [t.text for t in turns] == ["answer 1", "answer 2"]
    assert prompts[1] == tiny.encode(
        [
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "answer 1"},
            {"role": "user", "content": "second question"},
        ]
    )


def test_hf_output_is_cut_after_the_first_eos():
    assert bench.cut_at_eos([5, 6, 2, 7, 2], {2}) == [5, 6, 2]
    assert bench.cut_at_eos([5, 6], {2}) == [5, 6]


# ------------------------------------------------------------------------------------ metrics
def rec(method, qid, category, tokens, seconds, accept=(), turn=0):
    ids = list(tokens) if not isinstance(tokens, int) else list(range(tokens))
    return TurnRecord(method, qid, category, turn, ids, "", seconds, list(accept), [])


def test_summary_metrics_by_hand():
    records = [
        rec("ar", 1, "a", 10, 1.0, [1] * 9),
        rec("ar", 2, "b", 10, 2.0, [1] * 9),
        rec("kangaroo", 1, "a", 10, 0.5, [3, 1, 4, 1]),
        rec("kangaroo", 2, "b", [9] * 10, 0.5, [2, 7]),
        rec("hf", 1, "a", 10, 4.0),  # hf ran question 1 only (as with --hf-limit 1)
    ]
    rows = summarize(records, "cpu (1 threads)", "v", notes=["a note"])
    by = {(r["method"], r["category"]): r for r in rows}
    assert list(by) == [
        ("ar", "a"),
        ("ar", "b"),
        ("ar", "overall"),
        ("kangaroo", "a"),
        ("kangaroo", "b"),
        ("kangaroo", "overall"),
        ("hf", "a"),
        ("hf", "overall"),
        (NOTE, "a note"),
    ]
    assert all(list(r) == list(SUMMARY_COLUMNS) for r in rows)
    k = by["kangaroo", "overall"]
    assert k["tokens_per_s"] == pytest.approx(20 / 1.0)
    assert k["speedup_vs_ar"] == pytest.approx((20 / 1.0) / (20 / 3.0))  # 3.0
    assert by["kangaroo", "a"]["speedup_vs_ar"] == pytest.approx(20 / 10)
    assert by["kangaroo", "b"]["speedup_vs_ar"] == pytest.approx(20 / 5)
    assert k["mean_accepted"] == pytest.approx(18 / 6)  # rounds 3, 1, 4, 1, 2, 7
    expected_ctar = {1: 4 / 6, 2: 3 / 6, 3: 2 / 6, 4: 1 / 6, 5: 1 / 6, 6: 1 / 6}
    assert {w: k[f"ctar_{w}"] for w in expected_ctar} == pytest.approx(expected_ctar)
    assert k["identical_to_ar"] == 0.5  # question 2's tokens differ
    # hf ran question 1 only: speedups are over that question alone
    assert by["hf", "overall"]["questions"] == 1
    assert by["hf", "overall"]["speedup_vs_ar"] == pytest.approx(2.5 / 10)
    assert k["speedup_vs_hf"] == pytest.approx(20 / 2.5)
    assert by["ar", "overall"]["speedup_vs_hf"] == pytest.approx(10 / 2.5)
    assert by["hf", "overall"]["mean_accepted"] is None and by["hf", "overall"]["ctar_1"] is None
    assert by["ar", "overall"]["identical_to_ar"] is None and by["ar", "overall"]["mean_accepted"] == 1.0


def test_multi_turn_questions_are_identical_only_when_every_turn_is():
    records = [
        rec("ar", 1, "mt_bench", [1, 2], 1.0, turn=0),
        rec("ar", 1, "mt_bench", [3, 4], 1.0, turn=1),
        rec("x", 1, "mt_bench", [1, 2], 1.0, turn=0),
        rec("x", 1, "mt_bench", [3, 5], 1.0, turn=1),
    ]
    assert summarize(records)[-1]["identical_to_ar"] == 0.0


def test_unknown_categories_keep_their_own_rows():
    records = [rec("ar", 1, "custom", 4, 1.0), rec("ar", 2, "qa", 4, 1.0)]
    assert [r["category"] for r in summarize(records)] == ["qa", "custom", "overall"]


# ------------------------------------------------------------------------------------ --hf-limit
def test_hf_limit_runs_hf_methods_on_fewer_questions_and_says_so(tiny, tmp_path, monkeypatch):
    questions = load_questions(
        write_questions(
            tmp_path / "q.jsonl", QUESTIONS + [{"question_id": 3, "category": "qa", "turns": ["What is a star?"]}]
        )
    )
    real, calls = bench.answer_question, []
    monkeypatch.setattr(
        bench.run,
        "answer_question",
        lambda m, method, *a: calls.append((a[1].question_id, method)) or real(m, method, *a),
    )
    result = benchmark(tiny, questions, "ar,hf", tmp_path / "out", max_new_tokens=4, hf_limit=1, progress=False)
    assert calls == [(1, "ar"), (1, "hf"), (2, "ar"), (2, "hf"), (3, "ar")]  # interleaved; hf skips question 3
    by = {(r["method"], r["category"]): r for r in result.rows}
    assert by["ar", "qa"]["questions"] == 2 and by["hf", "qa"]["questions"] == 1
    assert by["hf", "overall"]["questions"] == 2
    assert len((tmp_path / "out" / "answers" / "hf.jsonl").read_text().splitlines()) == 2
    assert any("--hf-limit 1" in r["category"] for r in result.rows if r["method"] == NOTE)
    assert "--hf-limit 1" in bench.summary_markdown(result.rows)
    with pytest.raises(ValueError, match="integer >= 1"):
        benchmark(tiny, questions, "ar,hf", tmp_path / "out", hf_limit=0)


def test_a_transformers_method_that_cannot_run_is_reported_not_fatal(tiny, tmp_path, monkeypatch, capsys):
    real_options, real_runner = bench.hf_options, bench.hf_runner
    monkeypatch.setattr(
        bench.runners, "hf_options", lambda m, l: {"no_such_option": 1} if m == "hf-earlyexit" else real_options(m, l)
    )

    def pld_fails_on_the_second_question(model, hf, **options):  # 2 warm-ups + question 1 work
        run, calls = real_runner(model, hf, **options), []

        def flaky(prompt_ids, max_new_tokens):
            calls.append(1)
            if "prompt_lookup_num_tokens" in options and len(calls) > 3:
                raise RuntimeError("out of luck")
            return run(prompt_ids, max_new_tokens)

        return flaky

    monkeypatch.setattr(bench.runners, "hf_runner", pld_fails_on_the_second_question)
    questions = [Question(1, "qa", ("hi",)), Question(2, "qa", ("ho",))]
    result = benchmark(tiny, questions, "ar,hf,hf-pld,hf-earlyexit", tmp_path, max_new_tokens=4, progress=False)
    assert sorted(result.failed) == ["hf-earlyexit", "hf-pld"] and "out of luck" in result.failed["hf-pld"]
    assert {r["method"] for r in result.rows} == {"ar", "hf", NOTE}
    assert {r.method for r in result.records} == {"ar", "hf"}
    notes = [r["category"] for r in result.rows if r["method"] == NOTE]
    assert sum(n.startswith(("hf-earlyexit could not run", "hf-pld could not run")) for n in notes) == 2
    assert sorted(p.name for p in (tmp_path / "answers").iterdir()) == ["ar.jsonl", "hf.jsonl"]
    assert "hf-earlyexit could not run" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ sweeps
def test_threshold_sweep_writes_a_row_per_setting(tiny, tmp_path):
    questions = [Question(1, "qa", ("hi",)), Question(2, "qa", ("ho",)), Question(3, "rag", ("hu",))]
    rows = sweep_threshold(
        tiny,
        questions,
        tmp_path,
        thresholds=(0.0, 0.5),
        max_drafts=(2, 3),
        exit_layer=1,
        limit=1,
        max_new_tokens=6,
        progress=False,
    )
    columns, on_disk = read_csv(tmp_path / "sweep_threshold.csv")
    assert columns == list(SWEEP_COLUMNS) and len(on_disk) == len(rows) == 6
    assert on_disk[0]["method"] == "ar" and float(on_disk[0]["speedup_vs_ar"]) == 1.0
    assert on_disk[-1]["method"] == "ar" and float(on_disk[-1]["speedup_vs_ar"]) > 0  # the drift check
    grid = on_disk[1:-1]
    assert [(r["threshold"], r["max_draft"]) for r in grid] == [("0.0", "2"), ("0.0", "3"), ("0.5", "2"), ("0.5", "3")]
    assert all(r["adapter"] == "untrained" and r["exit_layer"] == "1" and r["questions"] == "2" for r in grid)
    assert all(float(r["draft_steps_per_round"]) > 0 and float(r["mean_accepted"]) >= 1 for r in grid)
    # eta = 0 never stops drafting early: every round drafts gamma tokens (or what the budget leaves)
    assert float(on_disk[2]["draft_steps_per_round"]) > float(on_disk[1]["draft_steps_per_round"])


def test_tree_sweep_writes_each_setting_with_its_tree(tiny, tmp_path):
    settings = [
        {"method": "pld", "lookup_tokens": 4},
        {"method": "kangaroo-tree", "node_budget": 12, "max_draft": 2, "top_k": 3},
        {
            "method": "kangaroo+lookup",
            "node_budget": 16,
            "max_draft": 2,
            "lookup_tokens": 6,
            "early_exit": "host",
            "threshold": 0.1,
        },
    ]
    rows = bench.sweep_tree(
        tiny, [Question(1, "qa", ("hi hi hi",))], tmp_path, settings=settings, max_new_tokens=8, progress=False
    )
    columns, on_disk = read_csv(tmp_path / "sweep_tree.csv")
    assert columns == list(SWEEP_COLUMNS) and [r["method"] for r in on_disk] == [
        "ar",
        "pld",
        "kangaroo-tree",
        "kangaroo+lookup",
        "ar",
    ]
    assert (on_disk[1]["lookup_tokens"], on_disk[1]["adapter"]) == ("4", "")  # pld drafts with no adapter
    assert (on_disk[2]["node_budget"], on_disk[2]["max_draft"], on_disk[2]["top_k"]) == ("12", "2", "3")
    assert on_disk[3]["early_exit"] == "host" and float(on_disk[3]["syncs_per_round"]) > 1  # a read per level
    assert float(on_disk[2]["syncs_per_round"]) == 1.0 and float(on_disk[2]["draft_steps_per_round"]) == 2
    assert rows[1]["nodes_per_round"] is not None
    with pytest.raises(ValueError, match="top_k"):
        bench.sweep_tree(
            tiny, [Question(1, "qa", ("hi",))], tmp_path, settings=[{"method": "kangaroo-tree", "top_k": 0}]
        )


def test_exit_layer_sweep_skips_layers_the_model_lacks(tiny, tmp_path, capsys):
    rows = sweep_exit_layer(
        tiny, [Question(1, "qa", ("hi",))], tmp_path, layers=(1, 3, 9), max_new_tokens=4, progress=False
    )
    assert [(r["method"], r["exit_layer"]) for r in rows] == [
        ("ar", None),
        ("kangaroo", 1),
        ("kangaroo", 3),
        ("ar", None),
    ]
    assert len(read_csv(tmp_path / "sweep_exit_layer.csv")[1]) == 4
    assert "skipping exit layers [9]" in capsys.readouterr().err


def test_a_killed_sweep_keeps_the_rows_it_measured(tiny, tmp_path, monkeypatch):
    real, calls = bench.answer_all, []

    def dies_on_third_call(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # ar, setting 1, then killed
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(bench.sweeps, "answer_all", dies_on_third_call)
    with pytest.raises(KeyboardInterrupt):
        sweep_threshold(
            tiny,
            [Question(1, "qa", ("hi",))],
            tmp_path,
            thresholds=(0.1, 0.2),
            max_drafts=(2,),
            max_new_tokens=4,
            progress=False,
        )
    assert [r["threshold"] for r in read_csv(tmp_path / "sweep_threshold.csv")[1]] == ["", "0.1"]


# ------------------------------------------------------------------------------------ errors
def test_unknown_method_lists_the_methods():
    with pytest.raises(ValueError, match="'nope'.*hf-earlyexit"):
        parse_methods("ar,nope")
    assert parse_methods("kangaroo,ar,kangaroo") == ("ar", "kangaroo")


def test_cli_reports_unknown_method_and_bad_question_line(tmp_path, capsys):
    assert main(["bench", "--model", "tiny-random", "--methods", "ar,speedy"]) == 2
    assert "unknown method(s) 'speedy'" in capsys.readouterr().err
    bad = tmp_path / "q.jsonl"
    bad.write_text(json.dumps(QUESTIONS[0]) + "\n{not json\n")
    assert main(["bench", "--model", "tiny-random", "--questions", str(bad), "--out", str(tmp_path)]) == 2
    assert "line 2" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_cli_cuda_without_a_gpu_is_a_clear_error(tmp_path, capsys):
    assert main(["bench", "--model", "tiny-random", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ CLI
def test_cli_bench_json(tmp_path, capsys):
    q = write_questions(tmp_path / "q.jsonl")
    args = [
        "bench",
        "--model",
        "tiny-random",
        "--device",
        "cpu",
        "--questions",
        str(q),
        "--methods",
        "ar,kangaroo",
        "--max-new-tokens",
        "6",
        "--out",
        str(tmp_path / "out"),
    ]
    assert main([*args, "--json"]) == 0
    out, err = capsys.readouterr()
    record = json.loads(out)
    rows = record["rows"]
    assert record["out"] == str(tmp_path / "out")
    assert [r["method"] for r in rows if r["method"] != NOTE] == ["ar"] * 3 + ["kangaroo"] * 3
    assert all(list(r) == list(SUMMARY_COLUMNS) for r in rows)
    assert "UNTRAINED" in err
    assert (tmp_path / "out" / "summary.csv").is_file() and (tmp_path / "out" / "run.json").is_file()
    assert main(args) == 0
    table = capsys.readouterr().out
    assert table.startswith("| method |") and "| kangaroo |" in table


def test_cli_sweep_json(tmp_path, capsys):
    q = write_questions(tmp_path / "q.jsonl")
    assert (
        main(
            [
                "bench",
                "--model",
                "tiny-random",
                "--device",
                "cpu",
                "--questions",
                str(q),
                "--sweep",
                "exit-layer",
                "--max-new-tokens",
                "4",
                "--out",
                str(tmp_path),
                "--json",
            ]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["exit_layer"] for r in rows] == [None, 1, 2, 3, None]  # tiny-random has 4 layers
    assert main(["bench", "--model", "tiny-random", "--sweep", "threshold", "--methods", "ar"]) == 2
    assert "do not apply to --sweep" in capsys.readouterr().err
