"""Answer files, and continuing an interrupted run from them.

Answers are written in Spec-Bench's answer format (`spec_bench_answer`), one line per question and
method, appended and flushed as they come; out/resume.json records the settings of the run
(`run_fingerprint`). A resumed run checks those settings and reads the answers back
(`start_answers`, `records_from_answer`) instead of answering again. Every file it reads is checked:
an error names the file (and the line) that cannot be used.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from ..decoding import DecodeOptions
from ..metrics import TurnRecord, warn
from ..models import Model
from ..questions import Question

# A choice's per-turn lists that a resumed run reads back (`records_from_answer`); one entry per turn each.
PER_TURN = ("turns", "wall_time", "accept_lengths", "token_ids", "draft_steps", "syncs")
NODES, OLD_NODES = "nodes_per_round", "drafts_per_round"  # candidates verified per round; the old key, still read


def spec_bench_answer(model_name: str, method: str, q: Question, turns: list[TurnRecord]) -> dict:
    """One line of Spec-Bench's answer file."""
    choice = {
        "index": 0,
        "turns": [t.text for t in turns],
        "new_tokens": [len(t.token_ids) for t in turns],
        "wall_time": [t.seconds for t in turns],
        "accept_lengths": [t.accept_lengths for t in turns],
        # ours, beyond Spec-Bench's fields:
        NODES: [t.nodes for t in turns],
        "draft_steps": [t.draft_steps for t in turns],
        "syncs": [t.syncs for t in turns],
        "token_ids": [t.token_ids for t in turns],
    }
    return {
        "question_id": q.question_id,
        "category": q.category,
        "answer_id": uuid.uuid4().hex,
        "model_id": f"{model_name}-{method}",
        "choices": [choice],
        "tstamp": time.time(),
    }


def nodes_per_round(choice: Mapping) -> list[list[int]]:
    """Per turn, the candidates verified in each round: `nodes_per_round`, or `drafts_per_round` in
    answer files written before the rename."""
    return choice[NODES] if NODES in choice else choice[OLD_NODES]


def answer_key(answer: Mapping) -> str:
    """The key of an answer's question in `start_answers`'s mapping: str((category, question_id))."""
    return str((answer["category"], answer["question_id"]))


def run_fingerprint(
    model: Model,
    methods: Sequence[str],
    opts: Mapping[str, DecodeOptions],
    exit_layer: int,
    hf_limit: int | None,
    questions: Sequence[Question],
) -> dict:
    """What must not change between a run and its resumption: the model, the methods and their options
    (max_new_tokens included), the exit layer, the transformers limit and the questions."""
    text = json.dumps([[q.category, q.question_id, list(q.turns)] for q in questions], ensure_ascii=False)
    return {
        "model": model.name,
        "dtype": str(model.dtype),
        "methods": list(methods),
        "exit_layer": exit_layer,
        "hf_limit": hf_limit,
        "options": {m: asdict(opts[m]) for m in methods if m in opts},
        "questions_sha256": hashlib.sha256(text.encode()).hexdigest(),
    }


def start_answers(answers_dir: Path, fingerprint: dict, resume: bool) -> dict[str, dict[str, dict]]:
    """Prepare answers_dir: a new run records its settings (out/resume.json); a resumed one checks them and
    returns method -> {str((category, question_id)): answer line} of the answers on disk (a last line cut
    short by the interruption is dropped; any other line that cannot be read is an error naming it)."""
    answers_dir.mkdir(parents=True, exist_ok=True)
    settings = answers_dir.parent / "resume.json"
    if not resume:
        settings.write_text(json.dumps(fingerprint, indent=1))
        return {}
    if not settings.is_file():
        if any(answers_dir.glob("*.jsonl")):
            raise ValueError(
                f"{answers_dir} holds answers but no resume.json beside it (an older run?): cannot check "
                "they were made with these settings; run without --resume, or into another --out"
            )
        settings.write_text(json.dumps(fingerprint, indent=1))
        return {}
    check_settings(settings, fingerprint)
    return {path.stem: read_answers(path) for path in sorted(answers_dir.glob("*.jsonl"))}


def check_settings(settings: Path, fingerprint: dict):
    """A ValueError unless the run recorded in `settings` (resume.json) had this run's `fingerprint`."""
    try:
        before = json.loads(settings.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(
            f"{settings} is not the JSON a bench run writes ({e}): cannot check the settings of the run "
            "to resume; run without --resume, or into another --out"
        ) from None
    if not isinstance(before, dict):
        raise ValueError(f"{settings} holds a {type(before).__name__}, not a run's settings: run without --resume")
    if before != fingerprint:
        differ = sorted(k for k in fingerprint.keys() | before.keys() if before.get(k) != fingerprint.get(k))
        raise ValueError(
            f"cannot resume the run in {settings.parent}: its {', '.join(differ)} differ from this "
            "run's; resume with the same settings, or run into another --out"
        )


def read_answers(path: Path) -> dict[str, dict]:
    """The answers of one answers file, by question key (`answer_key`), each checked (`check_answer`).

    A last line cut short by the interruption is dropped from the file (it is answered again); a
    whole last answer whose newline was not written gets it."""
    lines = path.read_bytes().split(b"\n")
    good, answers = 0, {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            good += len(line) + 1
            continue
        try:
            answer = json.loads(line)
        except ValueError:
            if any(rest.strip() for rest in lines[number:]):  # not the last line: not an interruption
                raise ValueError(
                    f"{path}, line {number}: not a JSON answer line; remove it (that question is then answered "
                    "again), or run without --resume"
                ) from None
            break
        check_answer(answer, path, number)
        answers[answer_key(answer)] = answer
        good += len(line) + 1
    size = path.stat().st_size
    if good < size:  # the interruption cut the last line short
        warn(f"{path}: dropping an answer cut short by the interruption")
        with path.open("r+b") as f:
            f.truncate(good)
    elif size and not lines[-1] == b"":  # a whole last answer, its newline not written
        with path.open("ab") as f:
            f.write(b"\n")
    return answers


def check_answer(answer, path: Path, line: int):
    """A ValueError naming `path` and `line` unless `answer` holds what `records_from_answer` reads."""
    where = f"{path}, line {line}"
    if not isinstance(answer, dict):
        raise ValueError(f"{where}: an answer is a JSON object, not a {type(answer).__name__}")
    choices = answer.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    keys = (*PER_TURN, OLD_NODES if OLD_NODES in choice and NODES not in choice else NODES)
    missing = [k for k in ("question_id", "category") if k not in answer]
    missing += [f"choices[0].{k}" for k in keys if k not in choice] if choice else ["choices (a list of one object)"]
    if missing:
        raise ValueError(
            f"{where}: the answer lacks {', '.join(missing)} (not written by this bench?); fix or remove the "
            "line (that question is then answered again), or run without --resume"
        )
    lists = [choice[k] for k in keys]
    if not all(isinstance(v, list) for v in lists) or len({len(v) for v in lists}) != 1:
        raise ValueError(f"{where}: the answer's per-turn lists ({', '.join(keys)}) must be lists of one length")


def records_from_answer(model: Model, method: str, q: Question, answer: dict) -> list[TurnRecord]:
    """The TurnRecords of an answer line written by `spec_bench_answer` (prompts re-encoded as asked)."""
    c, messages, records = answer["choices"][0], [], []
    if len(c["turns"]) != len(q.turns):
        raise ValueError(
            f"the {method} answer to {q.category} question {q.question_id} has {len(c['turns'])} turn(s), "
            f"the question {len(q.turns)}: its answers file does not belong to these questions"
        )
    nodes = nodes_per_round(c)
    for turn, user in enumerate(q.turns):
        messages.append({"role": "user", "content": user})
        records.append(
            TurnRecord(
                method=method,
                question_id=q.question_id,
                category=q.category,
                turn=turn,
                token_ids=c["token_ids"][turn],
                text=c["turns"][turn],
                seconds=c["wall_time"][turn],
                accept_lengths=c["accept_lengths"][turn],
                nodes=nodes[turn],
                draft_steps=c["draft_steps"][turn],
                syncs=c["syncs"][turn],
                peak_memory_mb=None,
                prompt_ids=model.encode(messages),
            )
        )
        messages.append({"role": "assistant", "content": c["turns"][turn]})
    return records
