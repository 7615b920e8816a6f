"""Questions: what decoding is measured with and what the target model answers for training.

Everything is a `Question`: the user turns of one conversation, with an id and a category.

* **The mini-bench.** `load_minibench()` reads 60 hand-written questions (10 per category) in
  Spec-Bench's `question.jsonl` format, shipped as `assets/minibench.jsonl`. None of them shares
  a word 8-gram with the training prompts (template or real mix; tested), so speedups measured on
  it are not flattered by training.

* **Your own files.** `load_spec_bench`, `load_sharegpt` and `load_jsonl_prompts` read the
  common formats; `load_questions` picks one from the file's content; `write_questions`
  writes Spec-Bench's format.

Where training prompts come from: `templates.py` (written by our code, offline) and `corpora.py`
(public prompt corpora, registered by manifest). Answering them is `distill.py`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from .models import check_text

CATEGORIES = ("mt_bench", "translation", "summarization", "qa", "math_reasoning", "rag")
"""Spec-Bench's six kinds of work, used by the training prompts and the mini-bench alike."""


@dataclass(frozen=True)
class Question:
    """One conversation's user turns, in order.

    The model answers turn 1, then sees its own answer followed by turn 2, and so on.
    Spec-Bench's `mt_bench` questions have two turns; the other categories have one.
    `question_id` is an int in Spec-Bench files and a string such as "qa-00042" for
    training prompts.
    """

    question_id: int | str
    category: str
    turns: tuple[str, ...]


# ---------------------------------------------------------------------------------------
# The mini-bench and question files
#
# Spec-Bench's question.jsonl holds one JSON object per line:
#     {"question_id": 1, "category": "mt_bench", "turns": ["first turn", "second turn"]}
# ---------------------------------------------------------------------------------------

_SPEC_BENCH_EXAMPLE = '{"question_id": 1, "category": "qa", "turns": ["What is a comet?"]}'
_HUMAN_ROLES = ("human", "user")
"""ShareGPT speakers whose turns are kept; "gpt", "chatgpt", "system", ... are dropped."""

_RecordParser = Callable[[object, int], "Question | None"]


def load_minibench() -> list[Question]:
    """The 60 hand-written questions shipped with the package, 10 per category.

    They are in Spec-Bench's format (`mt_bench` questions have two turns) and share no
    text with `training_prompts()`, which the tests check.
    """
    resource = files("kangaroo_lab") / "assets" / "minibench.jsonl"
    text = resource.read_text(encoding="utf-8")
    return _parse(jsonl_records(text, "minibench.jsonl"), "minibench.jsonl", _spec_bench_record, unique_ids=True)


def load_spec_bench(path: str | Path) -> list[Question]:
    """Spec-Bench's `question.jsonl` (or any file in its format); extra keys are ignored."""
    return _parse(jsonl_records(_read_text(path), str(path)), str(path), _spec_bench_record, unique_ids=True)


def load_jsonl_prompts(path: str | Path) -> list[Question]:
    """Plain prompts, one JSON value per line.

    A line is `{"prompt": "..."}`, `{"turns": ["...", "..."]}` or a bare JSON string.
    Objects may carry a `category` (default "custom") and an `id` or `question_id`
    (default: the line number).
    """
    return _parse(jsonl_records(_read_text(path), str(path)), str(path), _prompt_record, unique_ids=True)


def load_sharegpt(path: str | Path) -> list[Question]:
    """ShareGPT conversations; the human turns become the question's turns.

    The file is a JSON list of `{"id": ..., "conversations": [{"from": "human", "value":
    "..."}, {"from": "gpt", ...}, ...]}`, or the same objects one per line. Conversations
    without a human turn (ShareGPT has some) are skipped; the id defaults to the 1-based
    position in the file.
    """
    text = _read_text(path)
    if text.lstrip().startswith("["):
        records = _json_list_records(text, str(path))
    else:
        records = jsonl_records(text, str(path))
    return _parse(records, str(path), _sharegpt_record, unique_ids=False)


def load_questions(path: str | Path) -> list[Question]:
    """Load a question file of any supported format, judging by its content.

    A JSON list, or lines with a "conversations" key, is ShareGPT; lines with "question_id"
    and "turns" are Spec-Bench; anything else is read as plain prompts.
    """
    text = _read_text(path)
    if text.lstrip().startswith("["):
        return load_sharegpt(path)
    first_line = next((line for line in text.split("\n") if line.strip()), "")
    try:
        first = json.loads(first_line)
    except json.JSONDecodeError:
        first = None  # let the prompt loader report the bad line with its number
    if isinstance(first, dict) and "conversations" in first:
        return load_sharegpt(path)
    if isinstance(first, dict) and "question_id" in first and "turns" in first:
        return load_spec_bench(path)
    return load_jsonl_prompts(path)


def write_questions(questions: Iterable[Question], path: str | Path) -> Path:
    """Write questions in Spec-Bench's format (one JSON object per line); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for q in questions:
            record = {"question_id": q.question_id, "category": q.category, "turns": list(q.turns)}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


# --- reading and checking records ------------------------------------------------------


def _read_text(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"No question file at {path}. Check the path; Spec-Bench's questions are "
            "data/spec_bench/question.jsonl in its repository, and load_minibench() needs no file."
        )
    return read_text_file(path)


def read_text_file(path: str | Path) -> str:
    """A text file's content; a file that is not UTF-8 raises a ValueError naming the file and the line."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ValueError(
            f"{path}, line {line}: not UTF-8 text ({err.reason} at byte {err.start}); "
            "convert the file to UTF-8, e.g. `iconv -f LATIN1 -t UTF-8`"
        ) from None


def jsonl_records(text: str, source: str) -> Iterator[tuple[str, int, object]]:
    """Yield (place, number, record) for each non-blank line; `place` is e.g. "line 7".

    Lines end at "\n" only: str.splitlines() would also break inside a JSON string holding U+2028."""
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{source}, line {line_no}: not valid JSON ({err.msg}). Each line "
                f"must hold one JSON value, e.g. {_SPEC_BENCH_EXAMPLE}"
            ) from None
        yield f"line {line_no}", line_no, record


def _json_list_records(text: str, source: str) -> Iterator[tuple[str, int, object]]:
    """Yield (place, number, record) for each item of a JSON list; `place` is e.g. "item 3"."""
    try:
        records = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{source}, line {err.lineno}: not valid JSON ({err.msg}).") from None
    if not isinstance(records, list):
        raise ValueError(f"{source}: expected a JSON list of conversations")
    for number, record in enumerate(records, start=1):
        yield f"item {number}", number, record


def _parse(
    records: Iterable[tuple[str, int, object]], source: str, parse: _RecordParser, unique_ids: bool
) -> list[Question]:
    """Turn records into Questions; a bad record raises ValueError naming file and place."""
    questions: list[Question] = []
    first_place: dict[int | str, str] = {}
    for place, number, record in records:
        try:
            question = parse(record, number)
        except ValueError as err:
            raise ValueError(f"{source}, {place}: {err}") from None
        if question is None:
            continue
        if unique_ids and question.question_id in first_place:
            raise ValueError(
                f"{source}, {place}: question_id {question.question_id!r} was already "
                f"used on {first_place[question.question_id]}; ids must be unique"
            )
        first_place[question.question_id] = place
        questions.append(question)
    if not questions:
        raise ValueError(f"{source} holds no questions (it is empty or has only blank lines or skipped conversations)")
    return questions


def _spec_bench_record(record: object, number: int) -> Question:
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object like {_SPEC_BENCH_EXAMPLE}, got {_short(record)}")
    missing = [key for key in ("question_id", "category", "turns") if key not in record]
    if missing:
        raise ValueError(
            f"missing {', '.join(repr(k) for k in missing)}; expected an object like {_SPEC_BENCH_EXAMPLE}"
        )
    return Question(
        _check_id(record["question_id"]), _check_category(record["category"]), _check_turns(record["turns"])
    )


def _prompt_record(record: object, number: int) -> Question:
    if isinstance(record, str):
        record = {"prompt": record}
    if not isinstance(record, dict):
        raise ValueError(
            f'expected {{"prompt": "..."}}, {{"turns": ["...", ...]}} or a JSON string, got {_short(record)}'
        )
    if "turns" in record:
        turns = _check_turns(record["turns"])
    elif "prompt" in record:
        if not isinstance(record["prompt"], str) or not record["prompt"].strip():
            raise ValueError(f'"prompt" must be a non-empty string, got {_short(record["prompt"])}')
        turns = (check_text(record["prompt"], '"prompt"'),)
    else:
        raise ValueError(f'expected a "prompt" string or a "turns" list; keys are {sorted(record)}')
    question_id = record.get("id", record.get("question_id", number))
    category = _check_category(record.get("category", "custom"))
    return Question(_check_id(question_id), category, turns)


def _sharegpt_record(record: object, number: int) -> Question | None:
    if not isinstance(record, dict) or not isinstance(record.get("conversations"), list):
        raise ValueError('expected an object with a "conversations" list of {"from": "human", "value": "..."} messages')
    turns = []
    for message in record["conversations"]:
        if not (
            isinstance(message, dict) and isinstance(message.get("from"), str) and isinstance(message.get("value"), str)
        ):
            raise ValueError(f'each message must look like {{"from": "human", "value": "..."}}, got {_short(message)}')
        if message["from"].lower() in _HUMAN_ROLES and message["value"].strip():
            turns.append(check_text(message["value"], f"the message of {message['from']!r}"))
    if not turns:
        return None
    return Question(_check_id(record.get("id", number)), "sharegpt", tuple(turns))


def _check_turns(turns: object) -> tuple[str, ...]:
    if not isinstance(turns, list) or not turns:
        raise ValueError(f'"turns" must be a non-empty list of strings, got {_short(turns)}')
    for i, turn in enumerate(turns, start=1):
        if not isinstance(turn, str) or not turn.strip():
            raise ValueError(f"turn {i} must be a non-empty string, got {_short(turn)}")
        check_text(turn, f"turn {i}")
    return tuple(turns)


def _check_id(question_id: object) -> int | str:
    if isinstance(question_id, bool) or not isinstance(question_id, (int, str)):
        raise ValueError(f"the question id must be an integer or a string, got {_short(question_id)}")
    return question_id


def _check_category(category: object) -> str:
    if not isinstance(category, str) or not category:
        raise ValueError(f'"category" must be a non-empty string, got {_short(category)}')
    return category


def _short(value: object, limit: int = 60) -> str:
    """A value's JSON text, cut short, for error messages."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."
