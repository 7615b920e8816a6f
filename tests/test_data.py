"""Tests for kangaroo_lab.templates and kangaroo_lab.questions: the template prompts, the mini-bench and the file loaders."""

import json
import random
import re
from collections import Counter

import pytest

from kangaroo_lab.questions import (
    CATEGORIES,
    Question,
    load_jsonl_prompts,
    load_minibench,
    load_questions,
    load_sharegpt,
    load_spec_bench,
    write_questions,
)
from kangaroo_lab.templates import DEFAULT_NUM_PROMPTS, PROMPT_GENERATORS, _draw_distinct, training_prompts


@pytest.fixture(scope="module")
def prompts():
    return training_prompts()


@pytest.fixture(scope="module")
def minibench():
    return load_minibench()


def _write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- training prompts ------------------------------------------------------------------


def test_default_corpus_has_thousands_of_distinct_prompts(prompts):
    assert len(prompts) == DEFAULT_NUM_PROMPTS >= 3000
    assert len({p.turns for p in prompts}) == len(prompts)
    assert len({p.question_id for p in prompts}) == len(prompts)


def test_every_category_has_a_fair_share(prompts):
    counts = Counter(p.category for p in prompts)
    assert set(counts) == set(CATEGORIES) == set(PROMPT_GENERATORS)
    for category in CATEGORIES:
        assert counts[category] / len(prompts) >= 0.12, category


def test_turns_are_non_empty_strings(prompts):
    for p in prompts:
        assert isinstance(p.turns, tuple) and 1 <= len(p.turns) <= 2
        assert all(isinstance(t, str) and t.strip() for t in p.turns)
        assert "{" not in p.turns[0] and "}" not in p.turns[0], "unfilled template slot"


def test_chat_prompts_mix_one_and_two_turns(prompts):
    lengths = Counter(len(p.turns) for p in prompts if p.category == "mt_bench")
    assert lengths[1] > 100 and lengths[2] > 100
    assert all(len(p.turns) == 1 for p in prompts if p.category != "mt_bench")


def test_prompts_are_deterministic_for_a_seed(prompts):
    assert training_prompts(seed=0) == prompts
    other = training_prompts(seed=1)
    assert {p.turns for p in other} != {p.turns for p in prompts}


def test_small_corpus_splits_evenly():
    small = training_prompts(n=62, seed=3)
    counts = Counter(p.category for p in small)
    assert len(small) == 62
    assert sorted(counts.values()) == [10, 10, 10, 10, 11, 11]


def test_prompts_vary_within_each_category(prompts):
    """Templates are combined with varied content: first sentences rarely repeat."""
    for category in CATEGORIES:
        firsts = [p.turns[0] for p in prompts if p.category == category]
        assert len(set(firsts)) >= 0.9 * len(firsts), category


def test_negative_n_is_refused():
    with pytest.raises(ValueError, match="non-negative"):
        training_prompts(n=-1)


def test_drawing_more_than_a_generator_can_make_is_refused():
    with pytest.raises(ValueError, match="only draw 1 distinct 'x' prompts"):
        _draw_distinct(lambda rng: ("always the same",), random.Random(0), 2, "x")


# --- mini-bench ------------------------------------------------------------------------


def test_minibench_has_ten_questions_per_category(minibench):
    counts = Counter(q.category for q in minibench)
    assert set(counts) == set(CATEGORIES)
    assert all(n >= 10 for n in counts.values())
    ids = [q.question_id for q in minibench]
    assert ids == list(range(1, len(minibench) + 1))


def test_minibench_turn_counts_and_lengths(minibench):
    for q in minibench:
        assert len(q.turns) == (2 if q.category == "mt_bench" else 1), q.question_id
        if q.category in ("summarization", "rag"):
            assert 80 <= len(q.turns[0].split()) <= 220, q.question_id


def _word_ngrams(text, k):
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + k]) for i in range(len(words) - k + 1)}


def test_minibench_is_disjoint_from_training_prompts(prompts, minibench):
    training_turns = {t for p in prompts for t in p.turns}
    assert not [q.question_id for q in minibench if set(q.turns) & training_turns]
    # No shared passage or sentence either: no run of 8 words appears in both.
    training_grams = set().union(*(_word_ngrams(t, 8) for t in training_turns))
    shared = [(q.question_id, g) for q in minibench for t in q.turns for g in _word_ngrams(t, 8) & training_grams]
    assert not shared


def test_minibench_file_is_spec_bench_format(minibench, tmp_path):
    path = write_questions(minibench, tmp_path / "question.jsonl")
    assert load_spec_bench(path) == minibench
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert set(first) == {"question_id", "category", "turns"}
    assert isinstance(first["question_id"], int) and isinstance(first["turns"], list)


# --- Spec-Bench loader -----------------------------------------------------------------

SPEC_LINES = [
    '{"question_id": 1, "category": "mt_bench", "turns": ["Hi there.", "And again?"]}',
    "",
    '{"question_id": 2, "category": "my_own_kind", "turns": ["Bonjour ?"], "extra": 5}',
]


def test_spec_bench_loads_and_skips_blank_lines(tmp_path):
    questions = load_spec_bench(_write_lines(tmp_path / "q.jsonl", SPEC_LINES))
    assert questions == [
        Question(1, "mt_bench", ("Hi there.", "And again?")),
        Question(2, "my_own_kind", ("Bonjour ?",)),  # unknown categories are kept
    ]


GOOD = '{"question_id": 1, "category": "qa", "turns": ["Why?"]}'


@pytest.mark.parametrize(
    "bad_line, line_no, words",
    [
        ("{not json", 2, "not valid JSON"),
        ('{"question_id": 2, "category": "qa"}', 2, "missing 'turns'"),
        ('{"question_id": 2, "category": "qa", "turns": []}', 2, "non-empty list"),
        ('{"question_id": 2, "category": "qa", "turns": "Why?"}', 2, "non-empty list"),
        ('{"question_id": 2, "category": "qa", "turns": ["ok", 3]}', 2, "turn 2"),
        ('{"question_id": 2, "category": "qa", "turns": ["  "]}', 2, "non-empty string"),
        ('{"question_id": 2.5, "category": "qa", "turns": ["Why?"]}', 2, "integer or a string"),
        ('{"question_id": true, "category": "qa", "turns": ["Why?"]}', 2, "integer or a string"),
        ('{"question_id": 2, "category": 7, "turns": ["Why?"]}', 2, "category"),
        ('["Why?"]', 2, "JSON object"),
        (GOOD, 3, "already used on line 1"),
    ],
)
def test_spec_bench_bad_line_names_file_and_line(tmp_path, bad_line, line_no, words):
    lines = [GOOD, bad_line] if line_no == 2 else [GOOD, "", bad_line]
    path = _write_lines(tmp_path / "bad.jsonl", lines)
    with pytest.raises(ValueError) as err:
        load_spec_bench(path)
    message = str(err.value)
    assert "bad.jsonl" in message and f"line {line_no}:" in message
    assert words in message


def test_missing_file_says_where_it_looked(tmp_path):
    path = tmp_path / "nowhere" / "question.jsonl"
    for load in (load_spec_bench, load_sharegpt, load_jsonl_prompts, load_questions):
        with pytest.raises(FileNotFoundError, match="nowhere"):
            load(path)


@pytest.mark.parametrize("text", ["", "\n  \n\n"])
def test_empty_file_holds_no_questions(tmp_path, text):
    path = tmp_path / "empty.jsonl"
    path.write_text(text, encoding="utf-8")
    for load in (load_spec_bench, load_jsonl_prompts, load_questions):
        with pytest.raises(ValueError, match="holds no questions"):
            load(path)


# --- ShareGPT loader -------------------------------------------------------------------

SHAREGPT = [
    {
        "id": "abc_0",
        "conversations": [
            {"from": "human", "value": "Plan a trip to Oslo."},
            {"from": "gpt", "value": "Sure! Day 1..."},
            {"from": "human", "value": "Make it cheaper."},
            {"from": "gpt", "value": "Okay..."},
        ],
    },
    {"conversations": [{"from": "gpt", "value": "Only the model speaks here."}]},
    {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "user", "value": "What is tofu?"}]},
]


def test_sharegpt_keeps_human_turns(tmp_path):
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps(SHAREGPT, indent=2), encoding="utf-8")
    assert load_sharegpt(path) == [
        Question("abc_0", "sharegpt", ("Plan a trip to Oslo.", "Make it cheaper.")),
        Question(3, "sharegpt", ("What is tofu?",)),  # no id: its position in the list
    ]
    assert load_questions(path) == load_sharegpt(path)


def test_sharegpt_one_conversation_per_line(tmp_path):
    path = _write_lines(tmp_path / "sharegpt.jsonl", [json.dumps(c) for c in SHAREGPT])
    questions = load_sharegpt(path)
    assert [q.turns for q in questions] == [("Plan a trip to Oslo.", "Make it cheaper."), ("What is tofu?",)]
    assert load_questions(path) == questions


def test_sharegpt_bad_item_is_named(tmp_path):
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps([SHAREGPT[0], {"messages": []}]), encoding="utf-8")
    with pytest.raises(ValueError, match=r"sharegpt\.json, item 2: .*conversations"):
        load_sharegpt(path)


def test_sharegpt_bad_message_on_a_line(tmp_path):
    bad = {"conversations": [{"from": "human", "value": 42}]}
    path = _write_lines(tmp_path / "s.jsonl", [json.dumps(SHAREGPT[0]), json.dumps(bad)])
    with pytest.raises(ValueError, match=r"s\.jsonl, line 2: each message"):
        load_sharegpt(path)


def test_sharegpt_invalid_json_gives_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[\n  {"conversations": []},\n  {oops}\n]', encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.json, line 3: not valid JSON"):
        load_sharegpt(path)


def test_sharegpt_without_any_human_turn_holds_no_questions(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps([SHAREGPT[1]]), encoding="utf-8")
    with pytest.raises(ValueError, match="holds no questions"):
        load_sharegpt(path)


# --- plain prompts and dispatch --------------------------------------------------------


def test_jsonl_prompts_accept_three_shapes(tmp_path):
    path = _write_lines(
        tmp_path / "p.jsonl",
        [
            '{"prompt": "Tell me a joke."}',
            '"Name three rivers."',
            "",
            '{"turns": ["Hello", "Goodbye"], "category": "chat", "id": "x7"}',
        ],
    )
    assert load_jsonl_prompts(path) == [
        Question(1, "custom", ("Tell me a joke.",)),
        Question(2, "custom", ("Name three rivers.",)),
        Question("x7", "chat", ("Hello", "Goodbye")),
    ]
    assert load_questions(path) == load_jsonl_prompts(path)


@pytest.mark.parametrize(
    "bad_line, words",
    [
        ("42", "JSON string"),
        ('{"text": "hi"}', '"prompt" string or a "turns" list'),
        ('{"prompt": ""}', '"prompt"'),
        ('{"prompt": ["a list"]}', "non-empty string"),
        ("{'single': 'quotes'}", "not valid JSON"),
    ],
)
def test_jsonl_prompts_bad_line_names_file_and_line(tmp_path, bad_line, words):
    path = _write_lines(tmp_path / "p.jsonl", ['"fine"', "", "", bad_line])
    with pytest.raises(ValueError) as err:
        load_jsonl_prompts(path)
    assert "p.jsonl, line 4:" in str(err.value) and words in str(err.value)


def test_load_questions_recognises_spec_bench(tmp_path):
    path = _write_lines(tmp_path / "question.jsonl", SPEC_LINES)
    assert load_questions(path) == load_spec_bench(path)


def test_load_questions_reports_bad_first_line(tmp_path):
    path = _write_lines(tmp_path / "q.jsonl", ["", "{oops"])
    with pytest.raises(ValueError, match=r"q\.jsonl, line 2: not valid JSON"):
        load_questions(path)


# --- writing ---------------------------------------------------------------------------


def test_write_then_load_round_trip(tmp_path):
    questions = [
        Question(1, "translation", ("Übersetze: «Grüß Gott»",)),
        Question(2, "mt_bench", ("First.", "Second, with a\nnewline.")),
        Question(3, "rag", ('Quotes "inside" the turn',)),
    ]
    path = write_questions(questions, tmp_path / "sub" / "question.jsonl")
    assert load_spec_bench(path) == questions
    assert "Grüß" in path.read_text(encoding="utf-8")  # written as UTF-8, not \\u escapes


def test_training_prompts_round_trip_with_string_ids(tmp_path):
    prompts = training_prompts(n=30, seed=5)
    path = write_questions(prompts, tmp_path / "train.jsonl")
    assert load_questions(path) == prompts


def test_a_prompt_holding_a_unicode_line_separator_reads_back(tmp_path):
    """write_questions keeps non-ASCII text as it is; U+2028 inside a turn must not split its line."""
    q = Question("x-1", "qa", ("first part\u2028second part",))
    path = write_questions([q], tmp_path / "q.jsonl")
    assert load_questions(path) == [q]
