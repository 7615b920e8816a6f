"""kangaroo_lab.corpora: the source registry, parsers, filters, quotas, files and the `corpus` command.

Every source here is a fixture written into tmp_path by the test itself; no third-party text."""

import json
import re
from collections import Counter

import pytest

from kangaroo_lab import corpora, mixing
from kangaroo_lab.cli import main
from kangaroo_lab.corpora import (
    CATEGORIES,
    Source,
    parse_gsm8k,
    parse_nq_open,
    parse_oasst_prompts,
    parse_self_instruct_tasks,
    parse_sharegpt_conversation,
    parse_t0_template,
    sha256,
)
from kangaroo_lab.mixing import MixOptions, build_mix, manifest_path
from kangaroo_lab.questions import load_minibench, load_questions

PASSAGE = (
    "The harbour town of Elmsby was founded by fishermen who sailed from the northern islands in "
    "search of calmer waters. Over two centuries it grew into a busy port with a lighthouse, a "
    "covered market and a school for young sailors. Today most of its people work in tourism, and "
    "the old boat sheds along the quay have become small galleries and cafes."
)


def jsonl(*records):
    return ("\n".join(json.dumps(r) for r in records) + "\n").encode()


def make_source(root, name, parse, files, categories, repo="example/repo"):
    """Write `files` {path: bytes} under root/name and register them with their real hashes."""
    pinned = []
    for path, data in files.items():
        target = root / name / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        pinned.append((path, sha256(data)))
    return Source(name, repo, "0" * 40, "MIT", tuple(pinned), parse, categories)


@pytest.fixture
def fixture_sources(tmp_path):
    maths = [
        {
            "question": f"Ann has {i} apples and buys {i + 3} more. How many apples does she have now?",
            "answer": "#### 0",
        }
        for i in range(30)
    ]
    qa = [{"question": f"who painted picture number {i}", "answer": ["x"]} for i in range(30)]
    return {
        "maths": make_source(tmp_path, "maths", parse_gsm8k, {"train.jsonl": jsonl(*maths)}, ("math_reasoning",)),
        "questions": make_source(tmp_path, "questions", parse_nq_open, {"q.jsonl": jsonl(*qa)}, ("qa",)),
    }


def mix_options(**quotas):
    return MixOptions(quotas={c: quotas.get(c, 0) for c in CATEGORIES})


# ------------------------------------------------------------------------------------ parsers
T0_SUMMARY = next(n for n, (c, _) in corpora.T0_TEMPLATES.items() if c == "summarization")
T0_RAG = next(n for n, (c, _) in corpora.T0_TEMPLATES.items() if c == "rag")


@pytest.mark.parametrize(
    "parse, path, data, expected",
    [
        (
            parse_gsm8k,
            "train.jsonl",
            jsonl({"question": "Tom has 3 pens. How many?", "answer": "#### 3"}),
            [("math_reasoning", ("Tom has 3 pens. How many?",))],
        ),
        (
            parse_nq_open,
            "nq.jsonl",
            jsonl({"question": "who wrote the hobbit", "answer": ["Tolkien"]}),
            [("qa", ("Who wrote the hobbit?",))],
        ),
        (
            parse_t0_template,
            f"dir/{T0_SUMMARY}.jsonl",
            jsonl({"prompt": "Summarise: text", "completion": "s"}),
            [("summarization", ("Summarise: text",))],
        ),
        (
            parse_t0_template,
            f"dir/{T0_RAG}.jsonl",
            jsonl({"prompt": "Context: c\nQ: q", "completion": "a"}),
            [("rag", ("Context: c\nQ: q",))],
        ),
        (
            parse_self_instruct_tasks,
            "seed.jsonl",
            jsonl({"instruction": "Fix the grammar.", "instances": [{"input": "me go home", "output": "I go home"}]}),
            [("mt_bench", ("Fix the grammar.\n\nme go home",))],
        ),
        (parse_oasst_prompts, "p.jsonl", jsonl("How do magnets work?", ""), [("mt_bench", ("How do magnets work?",))]),
        (
            parse_oasst_prompts,
            "report.json",
            json.dumps({"prompts": [{"prompt": "Tell me a joke", "results": []}]}).encode(),
            [("mt_bench", ("Tell me a joke",))],
        ),
        (
            parse_sharegpt_conversation,
            "c.json",
            json.dumps(
                {
                    "id": "a",
                    "conversations": [
                        {"from": "human", "value": "Hi, plan my trip", "language": "en"},
                        {"from": "gpt", "value": "Sure"},
                        {"from": "human", "value": "Hola", "language": "es"},
                        {"from": "human", "value": "Shorter please"},
                        {"from": "human", "value": "Thanks"},
                    ],
                }
            ).encode(),
            [("mt_bench", ("Hi, plan my trip", "Shorter please"))],
        ),
    ],
)
def test_each_parser_maps_records_to_a_category(parse, path, data, expected):
    assert list(parse(path, data)) == expected


def test_registry_is_pinned_and_valid():
    assert {"gsm8k", "nq-open", "self-instruct-t0", "oasst-model-eval"} <= set(corpora.SOURCES)
    for source in corpora.SOURCES.values():
        assert re.fullmatch(r"[0-9a-f]{40}", source.commit) and source.license and source.files, source.name
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for _, h in source.files), source.name
        assert set(source.categories) <= set(CATEGORIES)
        assert source.url(source.files[0][0]).startswith(
            f"https://raw.githubusercontent.com/{source.repo}/{source.commit}/"
        )


# ------------------------------------------------------------------------------------ the mix
def test_mix_reads_back_and_manifest_records_files(tmp_path, fixture_sources):
    out = tmp_path / "mix" / "prompts.jsonl"
    manifest = build_mix(
        tmp_path, out, options=mix_options(qa=100, math_reasoning=100), sources=fixture_sources, progress=False
    )
    questions = load_questions(out)
    assert len(questions) == manifest["total"] == 60
    assert Counter(q.category for q in questions) == {"qa": 30, "math_reasoning": 30}
    assert len({q.question_id for q in questions}) == 60
    on_disk = json.loads(manifest_path(out).read_text())
    assert on_disk == manifest and manifest_path(out).name == "prompts.manifest.json"
    files = on_disk["sources"]["maths"]["files"]
    assert files == [
        {"path": "train.jsonl", "sha256": sha256((tmp_path / "maths" / "train.jsonl").read_bytes()), "records": 30}
    ]
    assert on_disk["sources"]["questions"]["kept"] == {"qa": 30}


def test_duplicates_are_dropped(tmp_path):
    same = {"question": "What is the tallest mountain in Europe?"}
    sources = {
        "q": make_source(
            tmp_path,
            "q",
            parse_nq_open,
            {"a.jsonl": jsonl(same, same, {"question": "what is the TALLEST mountain in europe"})},
            ("qa",),
        )
    }
    manifest = build_mix(tmp_path, tmp_path / "o.jsonl", options=mix_options(qa=10), sources=sources, progress=False)
    assert manifest["total"] == 1 and manifest["dropped"]["duplicate"] == {"q": 2}


def test_passage_repeats_are_capped(tmp_path):
    name = T0_RAG
    records = [{"prompt": f"{PASSAGE}\n\nQuestion {i}: what is in the town?", "completion": ""} for i in range(5)]
    sources = {"t0": make_source(tmp_path, "t0", parse_t0_template, {f"{name}.jsonl": jsonl(*records)}, ("rag",))}
    options = MixOptions(quotas={"rag": 10}, max_per_passage=2)
    manifest = build_mix(tmp_path, tmp_path / "o.jsonl", options=options, sources=sources, progress=False)
    assert manifest["total"] == 2 and manifest["dropped"]["passage_repeat"] == {"t0": 3}


def test_minibench_and_exclude_file_questions_are_dropped(tmp_path):
    bench_turn = load_minibench()[0].turns[0]
    held_out = "Which river flows through the old city of Varnholm and into the Grey Sea?"
    (tmp_path / "held_out.jsonl").write_text(json.dumps({"prompt": held_out}) + "\n")
    records = [
        {"question": bench_turn},
        {"question": "Please answer: " + held_out},
        {"question": "How far is the moon from the earth"},
    ]
    sources = {"q": make_source(tmp_path, "q", parse_gsm8k, {"a.jsonl": jsonl(*records)}, ("math_reasoning",))}
    manifest = build_mix(
        tmp_path,
        tmp_path / "o.jsonl",
        options=mix_options(math_reasoning=10),
        exclude=[tmp_path / "held_out.jsonl"],
        sources=sources,
        progress=False,
    )
    assert [q.turns[0] for q in load_questions(tmp_path / "o.jsonl")] == ["How far is the moon from the earth"]
    assert manifest["dropped"]["excluded"] == {"q": 2}
    assert str(tmp_path / "held_out.jsonl") in manifest["excluded_with"]


@pytest.mark.parametrize(
    "path",
    [
        "data/spec_bench/question.jsonl",
        "fastchat/llm_judge/data/mt_bench/question.jsonl",
        "eagle/data/mt_bench/question.jsonl",
        "grade_school_math/data/test.jsonl",
        "nq_open/NQ-open.dev.jsonl",
    ],
)
def test_evaluation_sets_are_refused_by_path(path):
    with pytest.raises(ValueError, match="refused: .*evaluation set"):
        Source("bad", "someone/repo", "0" * 40, "MIT", ((path, "0" * 64),), parse_gsm8k, ("qa",))


def test_quotas_cap_each_category_and_share_it_between_sources(tmp_path, fixture_sources):
    more_qa = make_source(
        tmp_path,
        "more",
        parse_nq_open,
        {"m.jsonl": jsonl(*[{"question": f"where is lake {i}"} for i in range(30)])},
        ("qa",),
    )
    sources = {**fixture_sources, "more": more_qa}
    manifest = build_mix(
        tmp_path, tmp_path / "o.jsonl", options=mix_options(qa=10, math_reasoning=4), sources=sources, progress=False
    )
    assert manifest["counts"]["qa"] == 10 and manifest["counts"]["math_reasoning"] == 4
    assert manifest["sources"]["questions"]["kept"] == {"qa": 5} == manifest["sources"]["more"]["kept"]


def test_same_seed_same_mix_other_seed_other_mix(tmp_path, fixture_sources):
    def run(seed, name):
        options = MixOptions(quotas={"qa": 5}, seed=seed)
        build_mix(tmp_path, tmp_path / name, options=options, sources=fixture_sources, progress=False)
        return load_questions(tmp_path / name)

    assert run(0, "a.jsonl") == run(0, "b.jsonl") != run(1, "c.jsonl")


def test_translation_prompts_come_from_passages(tmp_path):
    records = [
        {"prompt": f"Summarise this article.\n\n{PASSAGE} It is report {i}.", "completion": ""} for i in range(3)
    ]
    sources = {
        "t0": make_source(
            tmp_path, "t0", parse_t0_template, {f"{T0_SUMMARY}.jsonl": jsonl(*records)}, ("summarization",)
        )
    }
    manifest = build_mix(
        tmp_path, tmp_path / "o.jsonl", options=MixOptions(quotas={"translation": 6}), sources=sources, progress=False
    )
    turns = [q.turns[0] for q in load_questions(tmp_path / "o.jsonl")]
    assert manifest["counts"]["translation"] == len(turns) == 6
    assert all(any(lang in t for lang in mixing.TRANSLATION_LANGUAGES) for t in turns)
    assert all("Elmsby" in t or "galleries" in t or "sailors" in t or "tourism" in t for t in turns)


# ------------------------------------------------------------------------------------ bad input
def test_missing_file_says_how_to_get_it(tmp_path, fixture_sources):
    (tmp_path / "maths" / "train.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match=r"train.jsonl is missing.*--download"):
        build_mix(tmp_path, tmp_path / "o.jsonl", sources=fixture_sources, progress=False)


def test_hash_mismatch_is_an_error(tmp_path, fixture_sources):
    with (tmp_path / "maths" / "train.jsonl").open("a") as f:
        f.write(json.dumps({"question": "An extra line?"}) + "\n")
    with pytest.raises(ValueError, match=r"sha256 .* but the registry pins"):
        build_mix(tmp_path, tmp_path / "o.jsonl", sources=fixture_sources, progress=False)


def test_unknown_source_lists_the_registered_ones(tmp_path, fixture_sources):
    with pytest.raises(ValueError, match=r"unknown source\(s\) nope; registered sources are maths, questions"):
        build_mix(tmp_path, tmp_path / "o.jsonl", names=["nope"], sources=fixture_sources, progress=False)


def test_empty_mix_is_an_error(tmp_path, fixture_sources):
    options = MixOptions(quotas={"qa": 10, "math_reasoning": 10}, max_chars=5)
    with pytest.raises(ValueError, match=r"the mix is empty.*too_long: 60.*--max-chars"):
        build_mix(tmp_path, tmp_path / "o.jsonl", options=options, sources=fixture_sources, progress=False)
    assert not (tmp_path / "o.jsonl").exists()


# ------------------------------------------------------------------------------------ command line
def test_corpus_command_on_fixtures(tmp_path, fixture_sources, monkeypatch, capsys):
    monkeypatch.setattr(corpora, "SOURCES", fixture_sources)
    out = tmp_path / "prompts.jsonl"
    assert (
        main(
            [
                "corpus",
                "--from",
                str(tmp_path),
                "--out",
                str(out),
                "--quota",
                "qa=7",
                "--quota",
                "translation=0",
                "--source",
                "questions",
                "--json",
            ]
        )
        == 0
    )
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["counts"]["qa"] == 7 and manifest["total"] == 7 and list(manifest["sources"]) == ["questions"]
    assert [q.category for q in load_questions(out)] == ["qa"] * 7


def test_corpus_command_reports_errors_in_one_line(tmp_path, fixture_sources, monkeypatch, capsys):
    monkeypatch.setattr(corpora, "SOURCES", fixture_sources)
    assert main(["corpus", "--from", str(tmp_path), "--out", str(tmp_path / "o.jsonl"), "--source", "x"]) == 2
    assert "kangaroo-lab: error: unknown source(s) x" in capsys.readouterr().err
    assert main(["corpus", "--from", str(tmp_path), "--out", str(tmp_path / "o.jsonl"), "--quota", "qa"]) == 2
    assert "expected CATEGORY=N" in capsys.readouterr().err


def test_unicode_line_separators_do_not_break_the_question_file(tmp_path):
    # str.splitlines() breaks at U+2028, so a raw one inside a JSON line would cut the line in two.
    sources = {
        "q": make_source(
            tmp_path,
            "q",
            parse_gsm8k,
            {"a.jsonl": jsonl({"question": "First line\u2028second line\u2029third?"})},
            ("math_reasoning",),
        )
    }
    build_mix(tmp_path, tmp_path / "o.jsonl", options=mix_options(math_reasoning=1), sources=sources, progress=False)
    assert load_questions(tmp_path / "o.jsonl")[0].turns == ("First line\nsecond line\nthird?",)
