"""Losing no work: an interrupted `bench` keeps its finished answers and `--resume` continues it, giving
the files an uninterrupted run gives (timing aside); a question longer than the context is skipped."""

import json

import pytest

from kangaroo_lab import bench
from kangaroo_lab.cli import main
from kangaroo_lab.questions import Question, write_questions

QUESTIONS = [
    Question(1, "qa", ["What is the capital of France?"]),
    Question(2, "mt_bench", ["Write a haiku about rain.", "Now make it about snow."]),
    Question(3, "math_reasoning", ["What is 12 times 7?"]),
    Question(4, "translation", ["Say hello in French."]),
]
METHODS = "ar,kangaroo,pld"
TIMING = ("wall_time",)


def comparable(path) -> list[dict]:
    """An answer file without what differs between two runs of the same settings (ids, times)."""
    rows = []
    for line in path.read_text().splitlines():
        a = json.loads(line)
        choice = {k: v for k, v in a["choices"][0].items() if k not in TIMING}
        rows.append(
            {"question_id": a["question_id"], "category": a["category"], "model_id": a["model_id"], "choice": choice}
        )
    return rows


@pytest.fixture(scope="module")
def uninterrupted(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    return bench.benchmark(tiny, QUESTIONS, METHODS, out, max_new_tokens=16, progress=False)


def crash_after(monkeypatch, answers: int):
    """answer_question raises once `answers` answers (question x method) were given."""
    given = []
    answer = bench.answer_question

    def crashing(*args, **kwargs):
        if len(given) == answers:
            raise KeyboardInterrupt  # Ctrl-C, or any crash
        given.append(1)
        return answer(*args, **kwargs)

    monkeypatch.setattr(bench.run, "answer_question", crashing)  # where answer_interleaved looks it up


@pytest.mark.parametrize("answers", [0, 4, 7])  # before any, mid-question (question 2: ar done), before the last
def test_an_interrupted_bench_resumes_to_the_same_files(tiny, tmp_path, monkeypatch, uninterrupted, answers):
    with monkeypatch.context() as m:
        crash_after(m, answers)
        with pytest.raises(KeyboardInterrupt):
            bench.benchmark(tiny, QUESTIONS, METHODS, tmp_path, max_new_tokens=16, progress=False)
    kept = sum(len((tmp_path / "answers" / f"{m}.jsonl").read_text().splitlines()) for m in METHODS.split(","))
    assert kept == answers  # every finished answer is on disk
    asked = []
    answer = bench.answer_question
    monkeypatch.setattr(
        bench.run, "answer_question", lambda *a, **k: (asked.append(a[3].question_id), answer(*a, **k))[1]
    )
    result = bench.benchmark(tiny, QUESTIONS, METHODS, tmp_path, max_new_tokens=16, progress=False, resume=True)
    assert len(asked) == 3 * len(QUESTIONS) - answers  # nothing answered twice
    for method in METHODS.split(","):
        assert comparable(tmp_path / "answers" / f"{method}.jsonl") == comparable(
            uninterrupted.out / "answers" / f"{method}.jsonl"
        ), method
    drop = {"tokens_per_s", "speedup_vs_ar", "speedup_vs_hf", "peak_memory_mb"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in result.rows] == [
        {k: v for k, v in r.items() if k not in drop} for r in uninterrupted.rows
    ]


def test_a_line_cut_short_is_dropped_and_answered_again(tiny, tmp_path, uninterrupted):
    answers = tmp_path / "answers"
    answers.mkdir()
    (tmp_path / "resume.json").write_text((uninterrupted.out / "resume.json").read_text())
    for method in METHODS.split(","):
        lines = (uninterrupted.out / "answers" / f"{method}.jsonl").read_text().splitlines(keepends=True)
        (answers / f"{method}.jsonl").write_text("".join(lines[:2]) + lines[2][:40])  # killed mid-write
    bench.benchmark(tiny, QUESTIONS, METHODS, tmp_path, max_new_tokens=16, progress=False, resume=True)
    for method in METHODS.split(","):
        assert comparable(answers / f"{method}.jsonl") == comparable(uninterrupted.out / "answers" / f"{method}.jsonl")


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(max_new_tokens=8), "options"),
        (dict(questions=QUESTIONS[:3]), "questions_sha256"),
        (dict(methods="ar,pld"), "methods, options"),
    ],
)
def test_resuming_with_other_settings_is_refused(tiny, tmp_path, monkeypatch, change, message):
    with monkeypatch.context() as m:
        crash_after(m, 2)
        with pytest.raises(KeyboardInterrupt):
            bench.benchmark(tiny, QUESTIONS, METHODS, tmp_path, max_new_tokens=16, progress=False)
    kw = dict(questions=QUESTIONS, methods=METHODS, max_new_tokens=16) | change
    with pytest.raises(ValueError, match=f"cannot resume the run in .*: its {message} differ from this run's"):
        bench.benchmark(tiny, out=tmp_path, progress=False, resume=True, **kw)


def test_cli_bench_resumes_and_skips_a_prompt_beyond_the_context(tiny, tmp_path, capsys, monkeypatch):
    """`kangaroo-lab bench --questions FILE` with one question longer than the context: skipped with a
    note (stderr, summary.csv, run.json); interrupted, then `--resume`."""
    questions = write_questions(QUESTIONS[:2] + [Question(9, "summarization", ["word " * 900])], tmp_path / "q.jsonl")
    argv = [
        "bench",
        "--model",
        "tiny-random",
        "--device",
        "cpu",
        "--questions",
        str(questions),
        "--methods",
        "ar,pld",
        "--max-new-tokens",
        "8",
        "--out",
        str(tmp_path / "out"),
    ]
    with monkeypatch.context() as m:
        crash_after(m, 3)
        assert main(argv) == 130  # Ctrl-C: no traceback, one line saying how to go on
    stopped = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(stopped) and stopped[-1].endswith(" ".join(argv + ["--resume"]))
    assert main(argv + ["--resume"]) == 0
    err = capsys.readouterr().err
    assert "skipped summarization question 9" in err
    assert "skipped summarization question 9" in (tmp_path / "out" / "summary.csv").read_text()
    assert [
        json.loads(x)["question_id"] for x in (tmp_path / "out" / "answers" / "pld.jsonl").read_text().splitlines()
    ] == [1, 2]
