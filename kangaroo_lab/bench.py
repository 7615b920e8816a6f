"""Measuring decoding like Spec-Bench: every method through one benchmark function.

Methods, run in one process over the same questions (greedy, so every one of them should
reproduce the target's own answer):

* ``ar``                 our engine, one token per forward pass: the baseline for ``speedup_vs_ar``;
* ``kangaroo``           the paper's double-early-exit chain with the shipped adapter for the exit layer;
* ``pld``                prompt lookup decoding on our engine (no draft model: n-gram matches in the
                         prompt and the output, verified in one pass);
* ``kangaroo-tree``      Kangaroo's dynamic draft tree (top-k children per node, a node budget);
* ``kangaroo+lookup``    the adapter's tree and the lookup branch, verified in one pass;
* ``kangaroo-noadapter`` the chain drafting with the exit layer's states through the final norm and
                         LM head alone (LayerSkip-style self-drafting, adapter variant ``none``);
* ``hf``                 transformers' ``generate`` on the same weights (``model.to_hf()``);
* ``hf-pld``             transformers' prompt lookup decoding;
* ``hf-earlyexit``       transformers' ``assistant_early_exit``: layers < l + final norm + LM head draft.

Each of our methods runs with its defaults (`decoding.METHOD_DEFAULTS`) unless `options` says
otherwise; run.json records what each ran with.

How a turn is measured (`timed_turn`, the one timing path): synchronise the device, start
`perf_counter`, call the method's runner, synchronise, stop. A runner is a function
``prompt ids -> Generated`` (new token ids, EOS included when generated; per round the tokens
emitted, the candidates verified and the draft steps; host syncs). Multi-turn questions are asked
as Spec-Bench asks them: turn k's prompt is the conversation so far with the method's OWN earlier
answers, through the chat template. Every method is warmed up first (untimed), then each question
is answered by every method in turn, so that a machine whose speed drifts during the run (we saw
a GPU machine run 10x slower for the first minutes of a process) slows all methods alike instead
of flattering the ones measured last. A question whose conversation cannot fit the model's context
is skipped for every method, with a note.

Metrics (`summarize`, a pure function of the per-turn records):

* tokens_per_s = total new tokens / total wall time (per method and category, and overall);
* speedup_vs_ar = tokens_per_s of the method / tokens_per_s of ar, both over the questions both ran
  (`--hf-limit` runs transformers' methods on fewer questions); speedup_vs_hf likewise against hf;
* mean_accepted = tokens per round: mean over verification rounds of the tokens each emitted
  (bonus token included); nodes_per_round = candidates verified per round; draft_steps_per_round;
  syncs_per_round = host reads of device values per round (ar: per token);
* ctar_w = share of rounds that emitted more than w tokens;
* identical_to_ar = share of questions whose token ids, all turns, equal ar's; every mismatch is
  listed in mismatches.csv with ar's top-2 logit gap where the outputs part;
* peak_memory_mb = the most device memory allocated during any of the method's turns.

Files under `out`: ``answers/<method>.jsonl`` (Spec-Bench's answer format), ``summary.csv``
(`SUMMARY_COLUMNS`), ``mismatches.csv``, ``run.json`` (settings, each method's options and tree,
notes, skipped questions); the sweeps write ``sweep_exit_layer.csv``, ``sweep_threshold.csv`` and
``sweep_tree.csv`` (`SWEEP_COLUMNS`) one flushed row at a time, ar first and last (the last ar
row's speedup_vs_ar measures the drift over the sweep).
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import platform
import sys
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Protocol

import torch

from .adapter import (
    DEFAULT_EXIT_LAYER,
    META_FILE,
    Adapter,
    check_exit_layer,
    load_adapter,
    new_adapter,
    shipped_adapter_dir,
)
from .questions import CATEGORIES, Question, load_minibench
from .decoding import DEFAULTS, METHOD_DEFAULTS, TREE_METHODS, DecodeOptions, generate, method_layout
from .models import Model

OUR_METHODS = ("ar", "kangaroo", "pld", "kangaroo-tree", "kangaroo+lookup", "kangaroo-noadapter")
HF_METHODS = ("hf", "hf-pld", "hf-earlyexit")  # transformers' generate on the same weights
METHODS = OUR_METHODS + HF_METHODS
BASELINE, HF_BASELINE = "ar", "hf"
DEFAULT_OUT = Path("figures/data/bench")
PROMPT_LOOKUP_TOKENS = 10  # hf-pld: prompt_lookup_num_tokens
WARMUP_RUNS = 2  # untimed generations per method before any timed one
CTAR_WINDOWS = (1, 2, 3, 4, 5, 6)
SWEEPS = ("exit-layer", "threshold", "tree")
SWEEP_EXIT_LAYERS = (1, 2, 3, 4, 5, 6)
SWEEP_THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(10))  # eta: 0.0 .. 0.9
SWEEP_MAX_DRAFTS = tuple(range(2, 11))  # gamma: 2 .. 10
SWEEP_NODE_BUDGETS = (16, 32, 64, 128)  # trees: nodes verified per round
SWEEP_DEPTHS = (2, 3, 4, 6, 8)  # trees: adapter levels
SWEEP_TOP_KS = (1, 2, 4, 8)  # trees: children per node
SWEEP_LIMIT = 1  # questions per category in a sweep: 7 turns of the mini-bench per setting
NOTE = "note"  # the `method` of summary rows that carry a note in their `category`

SUMMARY_COLUMNS = (
    "method",
    "category",
    "questions",
    "tokens_per_s",
    "speedup_vs_ar",
    "speedup_vs_hf",
    "mean_accepted",
    "nodes_per_round",
    "draft_steps_per_round",
    "syncs_per_round",
    *(f"ctar_{w}" for w in CTAR_WINDOWS),
    "identical_to_ar",
    "peak_memory_mb",
    "device",
    "versions",
)
SWEEP_COLUMNS = (
    "method",
    "exit_layer",
    "adapter",
    "threshold",
    "max_draft",
    "top_k",
    "node_budget",
    "lookup_tokens",
    "early_exit",
    "questions",
    "tokens_per_s",
    "speedup_vs_ar",
    "mean_accepted",
    "drafts_per_round",
    "nodes_per_round",
    "syncs_per_round",
    "device",
    "versions",
)
MISMATCH_COLUMNS = (
    "method",
    "category",
    "question_id",
    "turn",
    "index",
    "ar_token",
    "method_token",
    "ar_top2_gap",
    "device",
    "versions",
)


# ------------------------------------------------------------------------------------ records
@dataclass
class Generated:
    """What a runner returns for one turn."""

    token_ids: list[int]  # new tokens, cut after the first EOS (included)
    accept_lengths: list[int] = field(default_factory=list)  # per round: tokens emitted (empty: no rounds)
    drafts_per_round: list[int] = field(default_factory=list)  # per round: candidates verified (tree nodes)
    draft_steps: list[int] = field(default_factory=list)  # per round: batched draft steps run
    syncs: int | None = None  # host reads of device values after the prefill (None: not counted)


class Runner(Protocol):
    """One method family: prompt token ids -> the new tokens (no timing; `timed_turn` times it)."""

    def __call__(self, prompt_ids: list[int], max_new_tokens: int) -> Generated: ...


@dataclass
class TurnRecord:
    """One timed turn of one question under one method."""

    method: str
    question_id: int | str
    category: str
    turn: int  # 0-based
    token_ids: list[int]
    text: str
    seconds: float
    accept_lengths: list[int]
    drafts_per_round: list[int]
    draft_steps: list[int] = field(default_factory=list)
    syncs: int | None = None
    peak_memory_mb: float | None = None
    prompt_ids: list[int] = field(default_factory=list, repr=False)

    @property
    def key(self) -> tuple[str, int | str]:
        return self.category, self.question_id


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


# ------------------------------------------------------------------------------------ runners
def engine_runner(model: Model, method: str, adapter: Adapter | None, opts: DecodeOptions) -> Runner:
    """`generate` of our engine with `method` (an adapter for Kangaroo's methods) and options `opts`."""

    def run(prompt_ids: list[int], max_new_tokens: int) -> Generated:
        res = generate(
            model, prompt_ids, adapter=adapter, method=method, options=replace(opts, max_new_tokens=max_new_tokens)
        )
        return Generated(
            res.token_ids,
            res.accept_lengths,
            [len(r.drafts) for r in res.trace],
            [r.draft_steps for r in res.trace],
            res.syncs,
        )

    return run


def method_options(
    max_new_tokens: int = DEFAULTS.max_new_tokens,
    threshold: float | None = None,
    max_draft: int | None = None,
    options: Mapping[str, DecodeOptions] | None = None,
) -> dict[str, DecodeOptions]:
    """The options each of our methods runs with: its defaults (`METHOD_DEFAULTS`), or `options[method]`;
    `threshold` and `max_draft`, when given, set the paper's chain (kangaroo, kangaroo-noadapter)."""
    chain = replace(
        METHOD_DEFAULTS["kangaroo"],
        **{k: v for k, v in {"threshold": threshold, "max_draft": max_draft}.items() if v is not None},
    )
    base = {m: METHOD_DEFAULTS[m] for m in METHOD_DEFAULTS} | {"kangaroo": chain, "kangaroo-noadapter": chain}
    base |= dict(options or {})
    return {m: replace(o, max_new_tokens=max_new_tokens) for m, o in base.items()}


def _engine_method(method: str) -> str:
    return "kangaroo" if method == "kangaroo-noadapter" else method


def hf_runner(model: Model, hf, **options) -> Runner:
    """transformers' greedy `generate` on `hf` (the same weights), with extra generate `options`."""

    def run(prompt_ids: list[int], max_new_tokens: int) -> Generated:
        ids = torch.tensor([prompt_ids], device=model.device)  # (1, T)
        with torch.inference_mode():
            out = hf.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=sorted(model.eos_token_ids),
                pad_token_id=model.tokenizer.pad_token_id,
                **options,
            )
        return Generated(cut_at_eos(out[0, len(prompt_ids) :].tolist(), model.eos_token_ids))

    return run


def hf_options(method: str, exit_layer: int) -> dict:
    """The `generate` options that make each transformers method."""
    return {
        "hf": {},
        "hf-pld": {"prompt_lookup_num_tokens": PROMPT_LOOKUP_TOKENS},
        "hf-earlyexit": {"assistant_early_exit": exit_layer},
    }[method]


def cut_at_eos(ids: list[int], eos: Iterable[int]) -> list[int]:
    """ids up to and including the first EOS token (all of them when there is none)."""
    eos = set(eos)
    return next((ids[: i + 1] for i, t in enumerate(ids) if t in eos), ids)


def kangaroo_adapter(model: Model, exit_layer: int) -> tuple[Adapter, str]:
    """(adapter, "shipped") for (model, exit layer), else (an untrained adapter, "untrained") with a loud warning."""
    check_exit_layer(exit_layer, model.config.n_layers)
    if (shipped_adapter_dir(model.name, exit_layer) / META_FILE).is_file():
        return load_adapter(model, exit_layer=exit_layer), "shipped"
    _warn(
        f"WARNING: no trained adapter is shipped for {model.name!r} at exit layer {exit_layer}: kangaroo runs "
        "with an UNTRAINED adapter. Its output is still exact, but few drafts are accepted (no speedup)."
    )
    return new_adapter(model, exit_layer), "untrained"


def make_runner(
    model: Model, method: str, opts: Mapping[str, DecodeOptions], exit_layer: int, peers: dict
) -> tuple[Runner, str | None]:
    """The runner for a method, and a note for the summary when the setting deserves one.

    `opts`: each of our methods' options (`method_options`); `peers` caches transformers' copy of
    the model and the adapter, made once for every method that needs them."""
    if method in ("ar", "pld"):
        return engine_runner(model, method, None, opts[method]), None
    if method == "kangaroo-noadapter":
        return engine_runner(model, "kangaroo", new_adapter(model, exit_layer, variant="none"), opts[method]), None
    if method in OUR_METHODS:
        if "adapter" not in peers:
            peers["adapter"] = kangaroo_adapter(model, exit_layer)
        adapter, source = peers["adapter"]
        note = (
            None
            if source == "shipped"
            else (f"{method} used an UNTRAINED adapter: none is shipped for {model.name} at exit layer {exit_layer}")
        )
        return engine_runner(model, method, adapter, opts[method]), note
    if "hf" not in peers:
        peers["hf"] = model.to_hf()
    return hf_runner(model, peers["hf"], **hf_options(method, exit_layer)), None


# ------------------------------------------------------------------------------------ timing
def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_turn(
    runner: Runner, prompt_ids: list[int], max_new_tokens: int, device: torch.device
) -> tuple[Generated, float]:
    """The one timing path of every method: sync, perf_counter, run, sync, perf_counter."""
    _sync(device)
    t0 = time.perf_counter()
    generated = runner(prompt_ids, max_new_tokens)
    _sync(device)
    return generated, time.perf_counter() - t0


def answer_question(model: Model, method: str, runner: Runner, q: Question, max_new_tokens: int) -> list[TurnRecord]:
    """Every turn of `q`; turn k sees the method's own answers to turns < k (as Spec-Bench asks them)."""
    messages, records = [], []
    for turn, user in enumerate(q.turns):
        messages.append({"role": "user", "content": user})
        prompt_ids = model.encode(messages)
        if model.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(model.device)
        generated, seconds = timed_turn(runner, prompt_ids, max_new_tokens, model.device)
        text = model.decode(generated.token_ids)
        records.append(
            TurnRecord(
                method,
                q.question_id,
                q.category,
                turn,
                generated.token_ids,
                text,
                seconds,
                generated.accept_lengths,
                generated.drafts_per_round,
                generated.draft_steps,
                generated.syncs,
                _peak_memory_mb(model.device),
                prompt_ids,
            )
        )
        messages.append({"role": "assistant", "content": text})
    return records


def conversation_bound(model: Model, q: Question, max_new_tokens: int) -> int:
    """An upper bound on the positions q's conversation needs: every user turn with the chat template,
    plus max_new_tokens per turn."""
    return sum(len(model.encode(t)) + max_new_tokens for t in q.turns)


def fitting_questions(
    model: Model, questions: Sequence[Question], max_new_tokens: int
) -> tuple[list[Question], list[str]]:
    """(the questions whose conversation fits the model's context, a note per question left out)."""
    limit = model.config.max_seq_len
    kept, skipped = [], []
    for q in questions:
        need = conversation_bound(model, q, max_new_tokens)
        if need <= limit:
            kept.append(q)
        else:
            skipped.append(
                f"skipped {q.category} question {q.question_id}: its conversation needs up to {need} "
                f"positions (prompts + {max_new_tokens} new tokens per turn), beyond the context of {limit}"
            )
    if not kept:
        raise ValueError(
            f"no question fits the model's context of {limit} tokens with max_new_tokens="
            f"{max_new_tokens}; lower max_new_tokens"
        )
    return kept, skipped


def reserve_cache(model: Model, questions: Sequence[Question], max_new_tokens: int, tree_size: int = 0):
    """Allocate the KV cache for the longest conversation in `questions` (and a round's tree of
    `tree_size` nodes past it) before anything is timed.

    Caches only grow; each growth means new shapes, so the CUDA graphs are captured again (and the
    layers compiled again) inside a timed turn."""
    need = max(conversation_bound(model, q, max_new_tokens) for q in questions)
    scratch = -(-tree_size // 256) * 256
    model.engine.setup_cache(min(model.config.max_seq_len, -(-need // 256) * 256), scratch=scratch)


def tree_size(methods: Iterable[str], opts: Mapping[str, DecodeOptions]) -> int:
    """The largest round tree among our methods (for `reserve_cache`)."""
    sizes = [method_layout(_engine_method(m), opts[m]).size for m in methods if m in opts and m != "ar"]
    return max(sizes, default=0)


def warm_up(model: Model, runner: Runner, q: Question, max_new_tokens: int):
    """A few untimed generations, so that no method is timed from a cold start."""
    prompt_ids = model.encode(q.turns[0])
    for _ in range(WARMUP_RUNS):  # the full budget: every cache length the timed runs will see
        timed_turn(runner, prompt_ids, max_new_tokens, model.device)


def answer_all(
    model: Model, method: str, runner: Runner, questions: Sequence[Question], max_new_tokens: int, progress: bool = True
) -> list[TurnRecord]:
    """Every question, in order, by one method."""
    from tqdm.auto import tqdm

    records = []
    for q in tqdm(questions, desc=method, unit="question", file=sys.stderr, disable=not progress, leave=False):
        records += answer_question(model, method, runner, q, max_new_tokens)
    return records


def spec_bench_answer(model_name: str, method: str, q: Question, turns: list[TurnRecord]) -> dict:
    """One line of Spec-Bench's answer file."""
    choice = {
        "index": 0,
        "turns": [t.text for t in turns],
        "new_tokens": [len(t.token_ids) for t in turns],
        "wall_time": [t.seconds for t in turns],
        "accept_lengths": [t.accept_lengths for t in turns],
        # ours, beyond Spec-Bench's fields:
        "drafts_per_round": [t.drafts_per_round for t in turns],
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


# ------------------------------------------------------------------------------------ the benchmark
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
    mismatches.csv and run.json.

    `threshold`, `max_draft`: the paper's chain (kangaroo, kangaroo-noadapter); `options`: a whole
    `DecodeOptions` per method (default: `METHOD_DEFAULTS`). `hf_limit`: transformers' methods answer
    only the first `hf_limit` questions per category.

    Answers are appended to out/answers/<method>.jsonl question by question, so an interrupted run
    (Ctrl-C, a crash) keeps every finished answer; `resume=True` continues it: the questions each
    method answered already are read back, not run again (refused when the settings differ)."""
    methods = parse_methods(methods)
    opts = method_options(max_new_tokens, threshold, max_draft, options)  # validates
    check_exit_layer(exit_layer, model.config.n_layers)
    questions, skipped = fitting_questions(model, _questions(questions), max_new_tokens)
    for note in skipped:
        _warn(note)
    hf_keys = {(q.category, q.question_id) for q in limit_per_category(questions, hf_limit)}
    out = Path(out)
    (out / "answers").mkdir(parents=True, exist_ok=True)
    done = start_answers(
        out / "answers", run_fingerprint(model, methods, opts, exit_layer, hf_limit, questions), resume
    )
    reserve_cache(model, questions, max_new_tokens, tree_size(methods, opts))
    runners, notes, failed = prepare_runners(model, methods, opts, exit_layer, questions[0])
    records = answer_interleaved(
        model, runners, questions, hf_keys, max_new_tokens, out / "answers", failed, progress, done
    )
    notes += _run_notes(methods, failed, hf_limit, len(hf_keys) < len(questions)) + skipped
    env = environment(model)
    mismatches = find_mismatches(model, records, env)
    write_csv(out / "mismatches.csv", mismatches, MISMATCH_COLUMNS)
    rows = summarize(records, env["device"], env["versions"], notes)
    write_csv(out / "summary.csv", rows, SUMMARY_COLUMNS)
    ours = {m: opts[m] for m in methods if m in opts}
    settings = {
        "model": model.name,
        "dtype": str(model.dtype),
        "methods": list(methods),
        "exit_layer": exit_layer,
        "hf_limit": hf_limit,
        "options": {m: asdict(o) for m, o in ours.items()},
        "trees": {m: asdict(method_layout(_engine_method(m), o)) for m, o in ours.items() if m != "ar"},
        "questions": len(questions),
        "skipped": skipped,
    }
    peaks = [r.peak_memory_mb for r in records if r.peak_memory_mb is not None]
    (out / "run.json").write_text(
        json.dumps(
            {**settings, **env, "notes": notes, "failed": failed, "peak_memory_mb": max(peaks) if peaks else None},
            indent=1,
        )
    )
    return BenchResult(rows, records, notes, failed, out, mismatches, ours)


def prepare_runners(
    model: Model, methods: Sequence[str], opts: Mapping[str, DecodeOptions], exit_layer: int, first: Question
):
    """A warmed-up runner per method -> (runners, notes, failed); a transformers method that cannot run
    here is reported in `failed` (method -> why) instead of stopping the benchmark."""
    runners, notes, failed, peers = {}, [], {}, {}
    for method in methods:
        try:
            runner, note = make_runner(model, method, opts, exit_layer, peers)
            warm_up(model, runner, first, opts["ar"].max_new_tokens)
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
    from tqdm.auto import tqdm

    done = done or {}
    files = {m: (answers_dir / f"{m}.jsonl").open("a" if m in done else "w", encoding="utf-8") for m in runners}
    records: dict[str, list[TurnRecord]] = {m: [] for m in runners}
    try:
        for q in tqdm(questions, desc="bench", unit="question", file=sys.stderr, disable=not progress):
            for method in [m for m in runners if m not in failed]:
                if method in HF_METHODS and (q.category, q.question_id) not in hf_keys:
                    continue
                if str((q.category, q.question_id)) in done.get(method, {}):
                    records[method] += records_from_answer(
                        model, method, q, done[method][str((q.category, q.question_id))]
                    )
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
    returns method -> {str((category, question_id)): answer line} of the answers on disk (a line cut
    short by the interruption is dropped)."""
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
    before = json.loads(settings.read_text())
    if before != fingerprint:
        differ = sorted(k for k in fingerprint.keys() | before.keys() if before.get(k) != fingerprint.get(k))
        raise ValueError(
            f"cannot resume the run in {answers_dir.parent}: its {', '.join(differ)} differ from this "
            "run's; resume with the same settings, or run into another --out"
        )
    done: dict[str, dict[str, dict]] = {}
    for path in sorted(answers_dir.glob("*.jsonl")):
        lines = path.read_bytes().split(b"\n")
        good, answers = 0, {}
        for line in lines:
            if not line.strip():
                good += len(line) + 1
                continue
            try:
                answer = json.loads(line)
            except ValueError:
                break
            answers[str((answer["category"], answer["question_id"]))] = answer
            good += len(line) + 1
        size = path.stat().st_size
        if good < size:  # the interruption cut the last line short
            _warn(f"{path}: dropping an answer cut short by the interruption")
            with path.open("r+b") as f:
                f.truncate(good)
        elif size and not lines[-1] == b"":  # a whole last answer, its newline not written
            with path.open("ab") as f:
                f.write(b"\n")
        done[path.stem] = answers
    return done


def records_from_answer(model: Model, method: str, q: Question, answer: dict) -> list[TurnRecord]:
    """The TurnRecords of an answer line written by `spec_bench_answer` (prompts re-encoded as asked)."""
    c, messages, records = answer["choices"][0], [], []
    for turn, user in enumerate(q.turns):
        messages.append({"role": "user", "content": user})
        records.append(
            TurnRecord(
                method,
                q.question_id,
                q.category,
                turn,
                c["token_ids"][turn],
                c["turns"][turn],
                c["wall_time"][turn],
                c["accept_lengths"][turn],
                c["drafts_per_round"][turn],
                c["draft_steps"][turn],
                c["syncs"][turn],
                None,
                model.encode(messages),
            )
        )
        messages.append({"role": "assistant", "content": c["turns"][turn]})
    return records


def _fail(method: str, error: Exception, failed: dict):
    failed[method] = f"{type(error).__name__}: {error}"
    _warn(f"{method} could not run and is left out of the summary: {failed[method]}")


def _run_notes(methods, failed: dict, hf_limit, limited_questions: bool) -> list[str]:
    notes = [f"{m} could not run: {why}" for m, why in failed.items()]
    limited = [m for m in methods if m in HF_METHODS and m not in failed]
    if limited and limited_questions:
        notes.append(
            f"{', '.join(limited)} answered only the first {hf_limit} question(s) per category "
            f"(--hf-limit {hf_limit}); their speedups compare against ar on the same questions"
        )
    return notes


def parse_methods(methods: Iterable[str] | str) -> tuple[str, ...]:
    """ "ar,kangaroo" or ["ar", "kangaroo"] -> a tuple, ar first (the baseline), duplicates dropped."""
    names = [m.strip() for m in (methods.split(",") if isinstance(methods, str) else methods) if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise ValueError(
            f"unknown method(s) {', '.join(map(repr, unknown)) or '(none given)'}; choose from {', '.join(METHODS)}"
        )
    if BASELINE not in names:
        _warn(f"adding {BASELINE}: it is the baseline of speedup_vs_ar")
    return tuple(dict.fromkeys([BASELINE, *names]))


def limit_per_category(questions: Sequence[Question], limit: int | None) -> list[Question]:
    """The first `limit` questions of each category, in file order (all of them when limit is None)."""
    if limit is None:
        return list(questions)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"a per-category question limit must be an integer >= 1, got {limit!r}")
    seen: dict[str, int] = {}
    kept = []
    for q in questions:
        seen[q.category] = seen.get(q.category, 0) + 1
        if seen[q.category] <= limit:
            kept.append(q)
    return kept


def _questions(questions: Sequence[Question] | None) -> list[Question]:
    questions = load_minibench() if questions is None else list(questions)
    if not questions:
        raise ValueError("no questions to benchmark: pass a non-empty question list (default: the mini-bench)")
    return questions


# ------------------------------------------------------------------------------------ metrics
def summarize(
    records: Sequence[TurnRecord], device: str = "", versions: str = "", notes: Iterable[str] = ()
) -> list[dict]:
    """One row per method and category, then per method `overall`, then one row per note."""
    by_method: dict[str, list[TurnRecord]] = {}
    for r in records:
        by_method.setdefault(r.method, []).append(r)
    rows = []
    for method, mine in by_method.items():
        for category in [*_categories(records), "overall"]:
            subset = [r for r in mine if category in ("overall", r.category)]
            if subset:
                rows.append(
                    {
                        "method": method,
                        "category": category,
                        **metrics(subset, by_method),
                        "device": device,
                        "versions": versions,
                    }
                )
    return rows + [note_row(n) for n in notes]


def metrics(mine: Sequence[TurnRecord], by_method: dict[str, list[TurnRecord]]) -> dict:
    """The numbers of one summary row, from one method's records (`by_method` holds the baselines)."""
    method = mine[0].method
    rounds = [n for r in mine for n in r.accept_lengths]
    row = {
        "questions": len({r.key for r in mine}),
        "tokens_per_s": _rate(mine),
        "speedup_vs_ar": _speedup(mine, by_method.get(BASELINE)),
        "speedup_vs_hf": _speedup(mine, by_method.get(HF_BASELINE)),
        "mean_accepted": _mean(rounds),
        "nodes_per_round": _mean([n for r in mine for n in r.drafts_per_round]),
        "draft_steps_per_round": _mean([n for r in mine for n in r.draft_steps]),
        "syncs_per_round": syncs_per_round(mine),
    }
    row.update({f"ctar_{w}": sum(n > w for n in rounds) / len(rounds) if rounds else None for w in CTAR_WINDOWS})
    row["identical_to_ar"] = None if method == BASELINE else _identical(mine, by_method.get(BASELINE))
    peaks = [r.peak_memory_mb for r in mine if r.peak_memory_mb is not None]
    row["peak_memory_mb"] = max(peaks) if peaks else None
    return row


def syncs_per_round(records: Sequence[TurnRecord]) -> float | None:
    """Host syncs per verification round (per token for ar, whose every step is a round), or None if not counted."""
    counted = [r for r in records if r.syncs is not None]
    rounds = sum(len(r.accept_lengths) if r.accept_lengths else max(0, len(r.token_ids) - 1) for r in counted)
    return sum(r.syncs for r in counted) / rounds if counted and rounds else None


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def note_row(note: str) -> dict:
    return {c: None for c in SUMMARY_COLUMNS} | {"method": NOTE, "category": note}


def _rate(records: Iterable[TurnRecord], keys=None) -> float | None:
    """Total new tokens / total seconds over `records` (only questions in `keys`, when given)."""
    chosen = [r for r in records if keys is None or r.key in keys]
    seconds = sum(r.seconds for r in chosen)
    return sum(len(r.token_ids) for r in chosen) / seconds if seconds > 0 else None


def _speedup(mine: Sequence[TurnRecord], base: Sequence[TurnRecord] | None) -> float | None:
    """Tokens/s of `mine` over tokens/s of `base`, both on the questions both answered."""
    common = {r.key for r in mine} & {r.key for r in base or []}
    ours, theirs = _rate(mine, common), _rate(base or [], common)
    return ours / theirs if common and ours is not None and theirs else None


def _answers(records: Iterable[TurnRecord]) -> dict:
    """question key -> the token ids of every turn, in turn order."""
    turns: dict = {}
    for r in sorted(records, key=lambda r: r.turn):
        turns.setdefault(r.key, []).append(r.token_ids)
    return turns


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


def _identical(mine: Sequence[TurnRecord], base: Sequence[TurnRecord] | None) -> float | None:
    ours, theirs = _answers(mine), _answers(base or [])
    common = ours.keys() & theirs.keys()
    return sum(ours[k] == theirs[k] for k in common) / len(common) if common else None


def _categories(records: Iterable[TurnRecord]) -> list[str]:
    """Spec-Bench's categories in their order, then any others in the order first seen."""
    seen = list(dict.fromkeys(r.category for r in records))
    return [c for c in CATEGORIES if c in seen] + [c for c in seen if c not in CATEGORIES]


# ------------------------------------------------------------------------------------ sweeps
def sweep_exit_layer(
    model: Model,
    questions: Sequence[Question] | None = None,
    out=DEFAULT_OUT,
    layers: Iterable[int] = SWEEP_EXIT_LAYERS,
    limit: int | None = SWEEP_LIMIT,
    threshold: float = DEFAULTS.threshold,
    max_draft: int = DEFAULTS.max_draft,
    max_new_tokens: int = DEFAULTS.max_new_tokens,
    progress: bool = True,
) -> list[dict]:
    """kangaroo at each exit layer (its shipped adapter, else an untrained one), between two ar runs.

    Writes out/sweep_exit_layer.csv; layers the model lacks are skipped with a warning."""
    opts = replace(DEFAULTS, threshold=threshold, max_draft=max_draft, max_new_tokens=max_new_tokens)
    n_layers = model.config.n_layers
    layers = list(layers)
    valid = [l for l in layers if 0 < l < n_layers]
    if len(valid) < len(layers):
        _warn(f"skipping exit layers {[l for l in layers if l not in valid]}: this model has {n_layers} layers")
    if not valid:
        raise ValueError(f"no exit layer to sweep: choose layers between 1 and {n_layers - 1}")
    settings = []
    for l in valid:
        adapter, source = kangaroo_adapter(model, l)
        setting = {
            "method": "kangaroo",
            "exit_layer": l,
            "adapter": source,
            "threshold": threshold,
            "max_draft": max_draft,
        }
        settings.append((setting, engine_runner(model, "kangaroo", adapter, opts)))
    return run_sweep(model, questions, Path(out) / "sweep_exit_layer.csv", settings, opts, limit, progress)


def sweep_threshold(
    model: Model,
    questions: Sequence[Question] | None = None,
    out=DEFAULT_OUT,
    thresholds: Iterable[float] = SWEEP_THRESHOLDS,
    max_drafts: Iterable[int] = SWEEP_MAX_DRAFTS,
    exit_layer: int = DEFAULT_EXIT_LAYER,
    limit: int | None = SWEEP_LIMIT,
    max_new_tokens: int = DEFAULTS.max_new_tokens,
    progress: bool = True,
) -> list[dict]:
    """kangaroo over the grid eta x gamma with one adapter, between two ar runs -> out/sweep_threshold.csv."""
    opts = replace(DEFAULTS, max_new_tokens=max_new_tokens)
    adapter, source = kangaroo_adapter(model, exit_layer)
    settings = []
    for eta, gamma in itertools.product(thresholds, max_drafts):
        grid_opts = replace(opts, threshold=eta, max_draft=gamma)  # validates each point before any run
        setting = {
            "method": "kangaroo",
            "exit_layer": exit_layer,
            "adapter": source,
            "threshold": eta,
            "max_draft": gamma,
        }
        settings.append((setting, engine_runner(model, "kangaroo", adapter, grid_opts)))
    return run_sweep(model, questions, Path(out) / "sweep_threshold.csv", settings, opts, limit, progress)


def tree_grid(
    methods: Iterable[str] = TREE_METHODS,
    node_budgets: Iterable[int] = SWEEP_NODE_BUDGETS,
    depths: Iterable[int] = SWEEP_DEPTHS,
    top_ks: Iterable[int] = SWEEP_TOP_KS,
    **fixed,
) -> list[dict]:
    """Settings of `sweep_tree`: every (method, node budget, depth, top-k), each with `fixed` options."""
    return [
        {"method": m, "node_budget": b, "max_draft": d, "top_k": k, **fixed}
        for m, b, d, k in itertools.product(methods, node_budgets, depths, top_ks)
    ]


def sweep_tree(
    model: Model,
    questions: Sequence[Question] | None = None,
    out=DEFAULT_OUT,
    settings: Iterable[Mapping] | None = None,
    exit_layer: int = DEFAULT_EXIT_LAYER,
    limit: int | None = SWEEP_LIMIT,
    max_new_tokens: int = DEFAULTS.max_new_tokens,
    progress: bool = True,
) -> list[dict]:
    """Trees and lookup, one setting at a time, between two ar runs -> out/sweep_tree.csv.

    settings: dicts of a method (pld, kangaroo, kangaroo-tree or kangaroo+lookup) and any
    `DecodeOptions` fields over that method's defaults (default: `tree_grid()`, every node budget x
    depth x top-k of both tree methods)."""
    adapter, source = kangaroo_adapter(model, exit_layer)
    rows = []
    for setting in tree_grid() if settings is None else settings:
        setting = dict(setting)
        method = setting.pop("method")
        opts = replace(METHOD_DEFAULTS[method], **setting, max_new_tokens=max_new_tokens)  # validates each one
        size = method_layout(method, opts).size  # and its tree, before anything runs
        described = {
            "method": method,
            "exit_layer": exit_layer if method != "pld" else None,
            "adapter": source if method != "pld" else None,
            **{
                k: getattr(opts, k)
                for k in ("threshold", "max_draft", "top_k", "node_budget", "lookup_tokens", "early_exit")
            },
        }
        rows.append((described, engine_runner(model, method, adapter if method != "pld" else None, opts), size))
    if not rows:
        raise ValueError("no settings to sweep")
    scratch = max(size for _, _, size in rows)
    return run_sweep(
        model,
        questions,
        Path(out) / "sweep_tree.csv",
        [(d, r) for d, r, _ in rows],
        replace(DEFAULTS, max_new_tokens=max_new_tokens),
        limit,
        progress,
        scratch,
    )


def run_sweep(
    model: Model,
    questions: Sequence[Question] | None,
    path: Path,
    settings: list[tuple[dict, Runner]],
    opts: DecodeOptions,
    limit: int | None,
    progress: bool,
    tree_size: int = DEFAULTS.max_draft + 1,
) -> list[dict]:
    """ar as the baseline, then each (setting, runner), then ar again; each row is written and flushed when measured.

    The closing ar row's speedup_vs_ar is the drift of the machine over the sweep (1.0: none); far
    from 1, the sweep's speedups are not to be trusted (rerun it, or sweep fewer settings at a time)."""
    from tqdm.auto import tqdm

    qs, skipped = fitting_questions(model, limit_per_category(_questions(questions), limit), opts.max_new_tokens)
    for note in skipped:
        _warn(note)
    env = environment(model)
    ar_runner = engine_runner(model, "ar", None, opts)
    reserve_cache(model, qs, opts.max_new_tokens, max(tree_size, opts.max_draft + 1))
    for runner in (ar_runner, settings[0][1]):
        warm_up(model, runner, qs[0], opts.max_new_tokens)
    rows = []
    with CsvRows(path, SWEEP_COLUMNS) as sink:
        ar = answer_all(model, "ar", ar_runner, qs, opts.max_new_tokens, progress)
        rows.append(sink.write(sweep_row({"method": "ar"}, ar, ar, env)))
        for setting, runner in tqdm(settings, desc=path.stem, unit="setting", file=sys.stderr, disable=not progress):
            warm_up(model, runner, qs[0], opts.max_new_tokens)  # a new adapter or gamma: new graphs to capture
            records = answer_all(model, setting["method"], runner, qs, opts.max_new_tokens, progress)
            rows.append(sink.write(sweep_row(setting, records, ar, env)))
        ar_again = answer_all(model, "ar", ar_runner, qs, opts.max_new_tokens, progress)
        rows.append(sink.write(sweep_row({"method": "ar"}, ar_again, ar, env)))
    drift = rows[-1]["speedup_vs_ar"]
    if drift is not None and not 0.9 <= drift <= 1.1:
        _warn(
            f"ar ran at {drift:.2f}x its first speed by the end of the sweep: the machine's speed drifted, "
            f"so the speedups in {path} are unreliable"
        )
    return rows


def sweep_row(setting: dict, records: Sequence[TurnRecord], ar: Sequence[TurnRecord], env: dict) -> dict:
    """One sweep row: the setting, then its metrics against ar on the same questions."""
    rounds = [n for r in records for n in r.accept_lengths]
    return (
        {c: None for c in SWEEP_COLUMNS}
        | setting
        | {
            "questions": len({r.key for r in records}),
            "tokens_per_s": _rate(records),
            "speedup_vs_ar": _speedup(records, ar),
            "mean_accepted": _mean(rounds),
            "drafts_per_round": _mean([d for r in records for d in r.draft_steps]),
            "nodes_per_round": _mean([d for r in records for d in r.drafts_per_round]),
            "syncs_per_round": syncs_per_round(records),
            "device": env["device"],
            "versions": env["versions"],
        }
    )


# ------------------------------------------------------------------------------------ draft traces
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
    from tqdm.auto import tqdm

    env = environment(model)
    opts = replace(DEFAULTS, threshold=0.0, max_draft=max_draft, max_new_tokens=max_new_tokens)
    with CsvRows(out, TRACE_COLUMNS) as sink:
        for q in tqdm(
            _questions(questions), desc="draft trace", unit="question", file=sys.stderr, disable=not progress
        ):
            messages = []
            for turn, user in enumerate(q.turns):
                messages.append({"role": "user", "content": user})
                res = generate(model, messages, adapter=adapter, method="kangaroo", **asdict(opts))
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


def recorded_rounds(records: Iterable[TurnRecord], method: str = "kangaroo") -> list[tuple[str, int, int]]:
    """(category, draft steps run, tokens emitted) per verification round of `method`: what
    `costs.project` needs (with the method's tree, which fixes the rows of each step)."""
    return [
        (r.category, d, n)
        for r in records
        if r.method == method
        for d, n in zip(r.draft_steps or r.drafts_per_round, r.accept_lengths)
    ]


def rounds_from_answers(path) -> list[tuple[str, int, int]]:
    """The same rounds, read back from an answers file that `benchmark` wrote (answers/<method>.jsonl).
    Files from before trees carry no draft steps: for the chain they equal the drafts per round."""
    rounds = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            answer = json.loads(line)
            choice = answer["choices"][0]
            steps = choice.get("draft_steps") or choice["drafts_per_round"]
            for accepted, drafts in zip(choice["accept_lengths"], steps):
                rounds += [(answer["category"], d, n) for d, n in zip(drafts, accepted)]
    return rounds


# ------------------------------------------------------------------------------------ output
class CsvRows:
    """A CSV file written one row at a time, flushed after each, so a killed run keeps what it measured."""

    def __init__(self, path, columns: Sequence[str]):
        self.path, self.columns = Path(path), list(columns)

    def __enter__(self) -> CsvRows:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = self.path.open("w", newline="", encoding="utf-8")
        self.writer = csv.DictWriter(self.file, self.columns)
        self.writer.writeheader()
        return self

    def write(self, row: dict) -> dict:
        self.writer.writerow(row)
        self.file.flush()
        return row

    def __exit__(self, *exc):
        self.file.close()


def write_csv(path, rows: Iterable[dict], columns: Sequence[str]) -> Path:
    with CsvRows(path, columns) as sink:
        for row in rows:
            sink.write(row)
    return Path(path)


def environment(model: Model) -> dict:
    """device: the GPU's name or "cpu (N threads)"; versions: python, torch and transformers."""
    import transformers

    d = model.device
    device = (
        torch.cuda.get_device_name(d)
        if d.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)"
        if d.type == "cpu"
        else str(d)
    )
    versions = f"torch {torch.__version__}, transformers {transformers.__version__}, python {platform.python_version()}"
    return {"device": device, "versions": versions}


def _peak_memory_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def _fmt(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def summary_markdown(rows: Sequence[dict]) -> str:
    """Methods x (questions, tokens/s, overall and per-category speedup vs ar, tokens / nodes / syncs per
    round, identical to ar)."""
    data = [r for r in rows if r["method"] != NOTE]
    categories = list(dict.fromkeys(r["category"] for r in data if r["category"] != "overall"))
    cell = {(r["method"], r["category"]): r for r in data}
    head = [
        "method",
        "questions",
        "tokens/s",
        "speedup vs ar",
        *categories,
        "tokens per round",
        "nodes per round",
        "syncs per round",
        "identical to ar",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in dict.fromkeys(r["method"] for r in data):
        o = cell[(method, "overall")]
        per_cat = [_fmt(cell[(method, c)]["speedup_vs_ar"]) if (method, c) in cell else "" for c in categories]
        values = [
            method,
            str(o["questions"]),
            _fmt(o["tokens_per_s"], 1),
            _fmt(o["speedup_vs_ar"]),
            *per_cat,
            _fmt(o["mean_accepted"]),
            _fmt(o.get("nodes_per_round"), 1),
            _fmt(o.get("syncs_per_round")),
            _fmt(o["identical_to_ar"]),
        ]
        lines.append("| " + " | ".join(values) + " |")
    notes = [f"Note: {r['category']}" for r in rows if r["method"] == NOTE]
    return "\n".join(lines + ([""] + notes if notes else []))


def sweep_markdown(rows: Sequence[dict]) -> str:
    """The sweep's rows as a Markdown table: SWEEP_COLUMNS that hold a value, minus the bookkeeping ones."""
    head = [
        c
        for c in SWEEP_COLUMNS
        if c not in ("questions", "device", "versions") and any(r.get(c) is not None for r in rows)
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) if r.get(c) is not None else "" for c in head) + " |" for r in rows]
    return "\n".join(lines)


def _warn(message: str):
    print(f"kangaroo-lab bench: {message}", file=sys.stderr)
