"""Holes in the benchmark's input and interruption handling (issue 16): each of these failed before.

* a method list that names no method ("", " , ") was read as "every method";
* Ctrl-C left a bare KeyboardInterrupt: nothing said what was kept or how to continue;
* a garbage resume.json, or an answers line missing keys, ended in a JSONDecodeError / KeyError /
  AttributeError that named no file; a garbage line in the middle of an answers file was taken
  for a line cut short, and every answer after it was silently dropped.
"""

import json
import re
import shlex

import pytest

from kangaroo_lab import bench
from kangaroo_lab.questions import Question

QUESTIONS = [Question(1, "qa", ["What is a comet?"]), Question(2, "mt_bench", ["Write a haiku.", "Shorter."])]
METHODS = "ar,pld"
TOKENS = 4


def run(tiny, out, **kw):
    return bench.benchmark(tiny, QUESTIONS, METHODS, out, max_new_tokens=TOKENS, progress=False, **kw)


@pytest.fixture(scope="module")
def finished(tiny, tmp_path_factory):
    """A whole run of ar and pld over the two questions (answers on disk)."""
    return run(tiny, tmp_path_factory.mktemp("finished"))


def copy_run(finished, to):
    """The finished run's resume.json and answers in folder `to` (to be damaged, then resumed)."""
    (to / "answers").mkdir(parents=True)
    (to / "resume.json").write_text((finished.out / "resume.json").read_text())
    for path in (finished.out / "answers").glob("*.jsonl"):
        (to / "answers" / path.name).write_text(path.read_text())
    return to


# ------------------------------------------------------------------------------------ --methods ""
@pytest.mark.parametrize("given", ["", " , ,", ",", []])
def test_a_method_list_naming_no_method_is_refused(given):
    with pytest.raises(ValueError, match="no method given"):
        bench.parse_methods(given)


def test_no_method_list_means_every_method():
    assert bench.parse_methods(None) == bench.METHODS


def test_benchmark_refuses_an_empty_method_list_before_running_anything(tiny, tmp_path):
    with pytest.raises(ValueError, match="no method given"):
        bench.benchmark(tiny, QUESTIONS, "", tmp_path, max_new_tokens=TOKENS, progress=False)
    assert not (tmp_path / "answers").exists()


# ------------------------------------------------------------------------------------ Ctrl-C
def test_ctrl_c_says_what_was_kept_and_the_command_that_continues(tiny, tmp_path, monkeypatch):
    real, given = bench.run.answer_question, []

    def interrupted_on_the_third(*args, **kwargs):
        if len(given) == 2:
            raise KeyboardInterrupt  # Ctrl-C
        given.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(bench.run, "answer_question", interrupted_on_the_third)
    with pytest.raises(bench.Interrupted) as caught:
        run(tiny, tmp_path)
    e = caught.value
    assert isinstance(e, KeyboardInterrupt) and e.kept == 2 and "resume=True" in str(e)
    argv = ["bench", "--methods", METHODS, "--out", str(tmp_path / "my dir")]
    line = e.message(argv)
    assert "\n" not in line and line.startswith(f"interrupted: 2 answer(s) kept in {tmp_path / 'answers'}")
    command = line.split("continue with: ", 1)[1]
    assert shlex.split(command) == ["kangaroo-lab", *argv, "--resume"]  # quoted: the folder has a space
    assert e.resume_command([*argv, "--resume"]) == command  # resumed again: --resume once
    monkeypatch.setattr(bench.run, "answer_question", real)
    resumed = run(tiny, tmp_path, resume=True)
    assert {(r.method, r.question_id) for r in resumed.records} == {(m, q) for m in ("ar", "pld") for q in (1, 2)}


def test_ctrl_c_while_warming_up_is_an_interruption_too(tiny, tmp_path, monkeypatch):
    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bench.run, "warm_up", ctrl_c)
    with pytest.raises(bench.Interrupted, match="0 answer"):
        run(tiny, tmp_path)


# ------------------------------------------------------------------------------------ damaged files
@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "\udcff"])
def test_a_garbage_resume_json_is_named(tiny, tmp_path, finished, text):
    copy_run(finished, tmp_path)
    (tmp_path / "resume.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "resume.json")) + ".*run without --resume"):
        run(tiny, tmp_path, resume=True)


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda a: a["choices"][0].pop("token_ids"), "lacks choices\\[0\\].token_ids"),
        (lambda a: a.pop("category"), "lacks category"),
        (lambda a: a["choices"][0].pop("nodes_per_round"), "lacks choices\\[0\\].nodes_per_round"),
        (lambda a: a.update(choices=[]), "lacks choices"),
        (lambda a: a["choices"][0]["wall_time"].append(1.0), "per-turn lists"),
    ],
)
def test_an_answer_line_missing_keys_is_named_with_its_line(tiny, tmp_path, finished, damage, message):
    copy_run(finished, tmp_path)
    path = tmp_path / "answers" / "pld.jsonl"
    first, *rest = path.read_text().splitlines()
    answer = json.loads(first)
    damage(answer)
    path.write_text("\n".join([json.dumps(answer), *rest]) + "\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 1: ") + f".*{message}"):
        run(tiny, tmp_path, resume=True)


def test_a_garbage_line_before_good_ones_is_an_error_not_a_silent_cut(tiny, tmp_path, finished):
    copy_run(finished, tmp_path)
    path = tmp_path / "answers" / "ar.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(["{garbage", *lines]) + "\n")
    before = path.read_text()
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 1: not a JSON answer line")):
        run(tiny, tmp_path, resume=True)
    assert path.read_text() == before  # nothing dropped


def test_answers_written_before_the_rename_still_resume(tiny, tmp_path, finished):
    """Stored answer files call the candidates verified per round `drafts_per_round`."""
    copy_run(finished, tmp_path)
    for path in (tmp_path / "answers").glob("*.jsonl"):
        old = []
        for line in path.read_text().splitlines():
            a = json.loads(line)
            a["choices"][0]["drafts_per_round"] = a["choices"][0].pop("nodes_per_round")
            old.append(json.dumps(a))
        path.write_text("\n".join(old) + "\n")
    resumed = run(tiny, tmp_path, resume=True)
    assert [(r.method, r.key, r.nodes, r.token_ids) for r in resumed.records] == [
        (r.method, r.key, r.nodes, r.token_ids) for r in finished.records
    ]
    assert bench.rounds_from_answers(tmp_path / "answers" / "pld.jsonl") == bench.rounds_from_answers(
        finished.out / "answers" / "pld.jsonl"
    )


def test_the_cli_refuses_an_empty_method_list(capsys):
    from kangaroo_lab.cli import main

    assert main(["bench", "--model", "tiny-random", "--device", "cpu", "--methods", ""]) == 2
    assert "no method given" in capsys.readouterr().err
