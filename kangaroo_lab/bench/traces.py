"""Rounds and drafts, one at a time: the draft trace of the paper's confidence figures, and the rounds
(draft steps, tokens emitted) of a run that `costs.project` turns into projected speeds."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, replace
from pathlib import Path

from ..adapter import Adapter
from ..decoding import DEFAULTS, generate
from ..metrics import TurnRecord, environment
from ..models import Model
from ..proposers import DEFAULT_METHOD
from ..questions import Question
from .report import CsvRows
from .resume import nodes_per_round
from .runners import DEFAULT_OUT, questions_or_minibench

TRACE_COLUMNS = ("category", "question_id", "turn", "round", "position", "confidence", "accepted", "device", "versions")


def draft_trace(
    model: Model,
    adapter: Adapter,
    questions: Sequence[Question] | None = None,
    out=DEFAULT_OUT / "draft_trace.csv",
    max_draft: int = DEFAULTS.max_draft,
    max_new_tokens: int = DEFAULTS.max_new_tokens,
    progress: bool = True,
) -> Path:
    """Every draft of greedy Kangaroo with eta = 0 (each round drafts `max_draft` tokens, whatever the
    confidence), one CSV row per draft: its position in the round, the draft's top-1 confidence,
    and whether the target accepted it. This is the data of the paper's confidence figures: which
    threshold would have stopped drafting where. Turns follow the questions (each sees its own
    earlier answers), as in `benchmark`."""
    from tqdm.auto import tqdm  # heavy: loads only when a trace is recorded

    env = environment(model)
    opts = replace(DEFAULTS, threshold=0.0, max_draft=max_draft, max_new_tokens=max_new_tokens)
    with CsvRows(out, TRACE_COLUMNS) as sink:
        for q in tqdm(
            questions_or_minibench(questions),
            desc="draft trace",
            unit="question",
            file=sys.stderr,
            disable=not progress,
        ):
            messages = []
            for turn, user in enumerate(q.turns):
                messages.append({"role": "user", "content": user})
                res = generate(model, messages, adapter=adapter, method=DEFAULT_METHOD, **asdict(opts))
                for i, r in enumerate(res.trace):
                    for j, conf in enumerate(r.confidences):
                        sink.write(
                            {
                                "category": q.category,
                                "question_id": q.question_id,
                                "turn": turn,
                                "round": i,
                                "position": j + 1,
                                "confidence": conf,
                                "accepted": int(j < r.accepted),
                                **env,
                            }
                        )
                messages.append({"role": "assistant", "content": res.text})
    return Path(out)


def recorded_rounds(records: Iterable[TurnRecord], method: str = DEFAULT_METHOD) -> list[tuple[str, int, int]]:
    """(category, draft steps run, tokens emitted) per verification round of `method`: what
    `costs.project` needs (with the method's tree, which fixes the rows of each step). Records without
    draft steps (runners that count none) fall back on the candidates verified: the chain's drafts."""
    return [
        (r.category, d, n)
        for r in records
        if r.method == method
        for d, n in zip(r.draft_steps or r.nodes, r.accept_lengths)
    ]


def rounds_from_answers(path) -> list[tuple[str, int, int]]:
    """The same rounds, read back from an answers file that `benchmark` wrote (answers/<method>.jsonl).
    Files from before trees carry no draft steps: for the chain they equal the candidates verified."""
    rounds = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            answer = json.loads(line)
            choice = answer["choices"][0]
            steps = choice.get("draft_steps") or nodes_per_round(choice)
            for accepted, drafts in zip(choice["accept_lengths"], steps):
                rounds += [(answer["category"], d, n) for d, n in zip(drafts, accepted)]
    return rounds
