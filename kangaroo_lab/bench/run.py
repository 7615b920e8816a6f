"""One benchmark run: every method over the same questions, interleaved, answers kept as they come.

`benchmark` warms every method up, then asks each question of every method in turn
(`answer_interleaved`), appends each answer to out/answers/<method>.jsonl, and at the end writes
summary.csv, mismatches.csv and run.json. Interrupted (Ctrl-C), it raises `Interrupted`, which says
how many answers were kept and the command that continues the run.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..adapter import DEFAULT_EXIT_LAYER, check_exit_layer
from ..decoding import DEFAULTS, DecodeOptions, method_layout
from ..metrics import TurnRecord, environment, warn
from ..models import Model
from ..proposers import BASELINE
from ..questions import Question
from .report import MISMATCH_COLUMNS, SUMMARY_COLUMNS, summarize, write_csv
from .resume import answer_key, records_from_answer, run_fingerprint, spec_bench_answer, start_answers
from .runners import (
    DEFAULT_OUT,
    HF_METHODS,
    METHODS,
    Runner,
    answer_question,
    engine_method,
    fitting_questions,
    limit_per_category,
    make_runner,
    method_options,
    parse_methods,
    questions_or_minibench,
    reserve_cache,
    tree_size,
    warm_up,
)


@dataclass
class BenchResult:
    """What `benchmark` returns; the same rows are in `out/summary.csv`."""

    rows: list[dict]
    records: list[TurnRecord]
    notes: list[str]
    failed: dict[str, str]  # method -> why it could not run
    out: Path
    mismatches: list[dict] = field(default_factory=list)
    options: dict[str, DecodeOptions] = field(default_factory=dict)  # what each of our methods ran with


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during `benchmark`: every finished answer is kept under out/answers.

    str(e) says so and how to continue from Python (the same arguments and resume=True);
    `e.message(argv)` is the one line the CLI prints, with the command that continues the run."""

    def __init__(self, out: Path, kept: int):
        self.out, self.kept = Path(out), kept
        super().__init__(
            f"interrupted: {kept} answer(s) kept in {self.out / 'answers'}; call benchmark again with the same "
            "arguments and resume=True to continue"
        )

    def resume_command(self, argv: Sequence[str], prog: str = "kangaroo-lab") -> str:
        """The command line that continues the run: `argv` (the interrupted command's arguments after the
        program's name), with --resume."""
        return shlex.join([prog, *argv, *([] if "--resume" in argv else ["--resume"])])

    def message(self, argv: Sequence[str], prog: str = "kangaroo-lab") -> str:
        return (
            f"interrupted: {self.kept} answer(s) kept in {self.out / 'answers'}; continue with: "
            f"{self.resume_command(argv, prog)}"
        )


def benchmark(
    model: Model,
    questions: Sequence[Question] | None = None,
    methods: Iterable[str] | str = METHODS,
    out=DEFAULT_OUT,
    exit_layer: int = DEFAULT_EXIT_LAYER,
    threshold: float | None = None,
    max_draft: int | None = None,
    max_new_tokens: int = DEFAULTS.max_new_tokens,
    hf_limit: int | None = None,
    progress: bool = True,
    options: Mapping[str, DecodeOptions] | None = None,
    resume: bool = False,
) -> BenchResult:
    """Run `methods` over `questions` (default: the bundled mini-bench); write answers, summary.csv,
    mismatches.csv and run.json under `out`.

    `threshold`, `max_draft`: the paper's chain (kangaroo, kangaroo-noadapter); `options`: a whole
    `DecodeOptions` per method (default: `METHOD_DEFAULTS`). `hf_limit`: transformers' methods answer
    only the first `hf_limit` questions per category.

    Answers are appended to out/answers/<method>.jsonl question by question, so an interrupted run
    (Ctrl-C, a crash) keeps every finished answer; Ctrl-C raises `Interrupted` (a KeyboardInterrupt).
    `resume=True` continues it: the questions each method answered already are read back, not run
    again (refused when the settings differ)."""
    methods = parse_methods(methods)
    opts = method_options(max_new_tokens, threshold, max_draft, options)  # validates
    check_exit_layer(exit_layer, model.config.n_layers)
    questions, skipped = fitting_questions(model, questions_or_minibench(questions), max_new_tokens)
    for note in skipped:
        warn(note)
    hf_keys = {(q.category, q.question_id) for q in limit_per_category(questions, hf_limit)}
    out = Path(out)
    done = start_answers(
        out / "answers", run_fingerprint(model, methods, opts, exit_layer, hf_limit, questions), resume
    )
    try:
        reserve_cache(model, questions, max_new_tokens, tree_size(methods, opts))
        runners, notes, failed = prepare_runners(model, methods, opts, exit_layer, questions[0])
        records = answer_interleaved(
            model, runners, questions, hf_keys, max_new_tokens, out / "answers", failed, progress, done
        )
    except KeyboardInterrupt as e:
        if isinstance(e, Interrupted):
            raise
        raise Interrupted(out, kept_answers(out / "answers")) from None
    notes += _run_notes(methods, failed, hf_limit, len(hf_keys) < len(questions)) + skipped
    ours = {m: opts[m] for m in methods if m in opts}
    layouts = {m: method_layout(engine_method(m), o) for m, o in ours.items()}
    settings = {
        "model": model.name,
        "dtype": str(model.dtype),
        "methods": list(methods),
        "exit_layer": exit_layer,
        "hf_limit": hf_limit,
        "options": {m: asdict(o) for m, o in ours.items()},
        "trees": {m: asdict(layout) for m, layout in layouts.items() if layout is not None},
        "questions": len(questions),
        "skipped": skipped,
    }
    return write_results(model, out, records, notes, failed, settings, ours)


def write_results(
    model: Model,
    out: Path,
    records: list[TurnRecord],
    notes: list[str],
    failed: dict[str, str],
    settings: dict,
    ours: dict[str, DecodeOptions],
) -> BenchResult:
    """A finished run's mismatches.csv, summary.csv and run.json (`settings` + the machine + notes)."""
    env = environment(model)
    mismatches = find_mismatches(model, records, env)
    write_csv(out / "mismatches.csv", mismatches, MISMATCH_COLUMNS)
    rows = summarize(records, env["device"], env["versions"], notes)
    write_csv(out / "summary.csv", rows, SUMMARY_COLUMNS)
    peaks = [r.peak_memory_mb for r in records if r.peak_memory_mb is not None]
    (out / "run.json").write_text(
        json.dumps(
            {**settings, **env, "notes": notes, "failed": failed, "peak_memory_mb": max(peaks) if peaks else None},
            indent=1,
        )
    )
    return BenchResult(rows, records, notes, failed, out, mismatches, ours)


def kept_answers(answers_dir: Path) -> int:
    """Answer lines in the answers files (each a question answered by one method)."""
    return sum(len(p.read_bytes().splitlines()) for p in answers_dir.glob("*.jsonl"))


def prepare_runners(
    model: Model, methods: Sequence[str], opts: Mapping[str, DecodeOptions], exit_layer: int, first: Question
):
    """A warmed-up runner per method -> (runners, notes, failed); a transformers method that cannot run
    here is reported in `failed` (method -> why) instead of stopping the benchmark."""
    runners, notes, failed, peers = {}, [], {}, {}
    for method in methods:
        try:
            runner, note = make_runner(model, method, opts, exit_layer, peers)
            warm_up(model, runner, first, opts[BASELINE].max_new_tokens)
        except Exception as e:  # transformers may not support this model or version: report, go on
            if method not in HF_METHODS:
                raise
            _fail(method, e, failed)
            continue
        runners[method] = runner
        notes += [note] if note else []
    return runners, notes, failed


def answer_interleaved(
    model: Model,
    runners: dict[str, Runner],
    questions: Sequence[Question],
    hf_keys: set,
    max_new_tokens: int,
    answers_dir: Path,
    failed: dict,
    progress: bool = True,
    done: dict | None = None,
) -> list[TurnRecord]:
    """Each question is answered by every method in turn (transformers' methods only for `hf_keys`), so
    that a machine whose speed drifts during the run slows every method alike. Answers are appended to
    answers_dir/<method>.jsonl and flushed as they come. `done` (resuming): method -> {question key:
    its answer line} already in the files; those are read back, not answered again."""
    from tqdm.auto import tqdm  # heavy: loads only when a run starts

    done = done or {}
    files = {m: (answers_dir / f"{m}.jsonl").open("a" if m in done else "w", encoding="utf-8") for m in runners}
    records: dict[str, list[TurnRecord]] = {m: [] for m in runners}
    try:
        for q in tqdm(questions, desc="bench", unit="question", file=sys.stderr, disable=not progress):
            for method in [m for m in runners if m not in failed]:
                if method in HF_METHODS and (q.category, q.question_id) not in hf_keys:
                    continue
                key = answer_key({"category": q.category, "question_id": q.question_id})
                if key in done.get(method, {}):
                    records[method] += records_from_answer(model, method, q, done[method][key])
                    continue
                try:
                    turns = answer_question(model, method, runners[method], q, max_new_tokens)
                except Exception as e:  # as in prepare_runners: only transformers' methods may fail here
                    if method not in HF_METHODS:
                        raise
                    _fail(method, e, failed)
                    records[method] = []
                    continue
                answer = spec_bench_answer(model.name, method, q, turns)
                files[method].write(json.dumps(answer, ensure_ascii=False) + "\n")
                files[method].flush()
                records[method] += turns
    finally:
        for f in files.values():
            f.close()
    for method in failed:
        (answers_dir / f"{method}.jsonl").unlink(missing_ok=True)
    return [r for rs in records.values() for r in rs]


def find_mismatches(model: Model, records: Sequence[TurnRecord], env: dict) -> list[dict]:
    """Every turn where a method's tokens part from ar's (the first such turn of each question): where,
    and ar's top-2 logit gap there, recomputed by a full pass of the model over ar's prompt and
    tokens up to that point (in the model's dtype). A tiny gap means a near-tie that rounding can
    flip (bf16 kernels over other shapes); a large one would mean a bug."""
    ar = {(r.key, r.turn): r for r in records if r.method == BASELINE}
    rows, seen = [], set()
    for r in sorted(records, key=lambda r: r.turn):
        base = ar.get((r.key, r.turn))
        if r.method == BASELINE or base is None or (r.method, r.key) in seen or r.token_ids == base.token_ids:
            continue
        seen.add((r.method, r.key))
        i = next(
            (j for j, (a, b) in enumerate(zip(base.token_ids, r.token_ids)) if a != b),
            min(len(base.token_ids), len(r.token_ids)),
        )
        rows.append(
            {
                "method": r.method,
                "category": r.category,
                "question_id": r.question_id,
                "turn": r.turn,
                "index": i,
                "ar_token": base.token_ids[i] if i < len(base.token_ids) else None,
                "method_token": r.token_ids[i] if i < len(r.token_ids) else None,
                "ar_top2_gap": top2_gap(model, base.prompt_ids + base.token_ids[:i]),
                **env,
            }
        )
    return rows


def top2_gap(model: Model, ids: list[int]) -> float | None:
    """logit(top-1) - logit(top-2) of the model's next-token logits after `ids` (None without ids)."""
    if not ids:
        return None
    with torch.inference_mode():
        states = model.engine.hidden_states(torch.tensor([ids], device=model.device))
        top = model.engine.head(states[-1][:, -1:]).float().topk(2, dim=-1).values.flatten()
    return float(top[0] - top[1])


def _fail(method: str, error: Exception, failed: dict):
    failed[method] = f"{type(error).__name__}: {error}"
    warn(f"{method} could not run and is left out of the summary: {failed[method]}")


def _run_notes(methods, failed: dict, hf_limit, limited_questions: bool) -> list[str]:
    notes = [f"{m} could not run: {why}" for m, why in failed.items()]
    limited = [m for m in methods if m in HF_METHODS and m not in failed]
    if limited and limited_questions:
        notes.append(
            f"{', '.join(limited)} answered only the first {hf_limit} question(s) per category "
            f"(--hf-limit {hf_limit}); their speedups compare against ar on the same questions"
        )
    return notes
