"""The methods a benchmark runs and how one turn of one question is asked and timed.

A runner is a function ``prompt ids -> Generated``, one per method: our engine's `generate` for the
decoding methods of the method table (and its comparison row kangaroo-noadapter), transformers'
`generate` for hf, hf-pld and hf-earlyexit. `answer_question` asks a question turn by turn as
Spec-Bench asks it (turn k sees the method's own earlier answers) and times each turn through
`timed_turn`, the one timing path of every method.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import torch

from ..adapter import META_FILE, Adapter, check_exit_layer, load_adapter, new_adapter, shipped_adapter_dir
from ..decoding import DEFAULTS, METHOD_DEFAULTS, DecodeOptions, generate, method_layout, reserve_caches
from ..metrics import Generated, TurnRecord, timed, warn
from ..models import Model
from ..proposers import BASELINE, DEFAULT_METHOD, METHOD_TABLE
from ..questions import Question, load_minibench

METHODS = tuple(METHOD_TABLE)  # the method table's order: our decoding methods, then the comparison rows
HF_BASELINE = "hf"  # the baseline of speedup_vs_hf
PROMPT_LOOKUP_TOKENS = 10  # hf-pld: prompt_lookup_num_tokens
# The comparison rows that transformers runs (its `generate` on the same weights): exit layer -> generate options.
HF_GENERATE = {
    "hf": lambda exit_layer: {},
    "hf-pld": lambda exit_layer: {"prompt_lookup_num_tokens": PROMPT_LOOKUP_TOKENS},
    "hf-earlyexit": lambda exit_layer: {"assistant_early_exit": exit_layer},  # layers < l + norm + head draft
}
# The comparison rows our engine runs: row -> (the decoding method it runs, the adapter variant that drafts).
ENGINE_COMPARISONS = {"kangaroo-noadapter": (DEFAULT_METHOD, "none")}  # LayerSkip-style: no adapter
HF_METHODS = tuple(m for m in METHODS if m in HF_GENERATE)
OUR_METHODS = tuple(m for m in METHODS if m not in HF_GENERATE)
DEFAULT_OUT = Path("figures/data/bench")
WARMUP_RUNS = 2  # untimed generations per method before any timed one


class Runner(Protocol):
    """One method family: prompt token ids -> the new tokens (no timing; `timed_turn` times it)."""

    def __call__(self, prompt_ids: list[int], max_new_tokens: int) -> Generated: ...


# ------------------------------------------------------------------------------------ methods
def parse_methods(methods: Iterable[str] | str | None = None) -> tuple[str, ...]:
    """ "ar,kangaroo" or ["ar", "kangaroo"] -> a tuple, ar first (the baseline), duplicates dropped;
    None -> every method. A list that names no method ("", " , ") is refused, not read as "all"."""
    if methods is None:
        return METHODS
    given = methods.split(",") if isinstance(methods, str) else list(methods)
    names = [m.strip() for m in given if m.strip()]
    if not names:
        raise ValueError(
            f"no method given ({methods!r}): name at least one of {', '.join(METHODS)} "
            "(leave --methods out to run them all)"
        )
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(map(repr, unknown))}; choose from {', '.join(METHODS)}")
    if BASELINE not in names:
        warn(f"adding {BASELINE}: it is the baseline of speedup_vs_ar")
    return tuple(dict.fromkeys([BASELINE, *names]))


def engine_method(method: str) -> str:
    """The decoding method of `generate` that a method of ours runs: itself, or the one a comparison
    row of the table runs (kangaroo-noadapter: kangaroo)."""
    if method in HF_GENERATE:
        raise ValueError(f"{method} runs in transformers, not in our engine")
    return ENGINE_COMPARISONS[method][0] if method in ENGINE_COMPARISONS else method


def method_options(
    max_new_tokens: int = DEFAULTS.max_new_tokens,
    threshold: float | None = None,
    max_draft: int | None = None,
    options: Mapping[str, DecodeOptions] | None = None,
) -> dict[str, DecodeOptions]:
    """The options each of our methods runs with: its defaults (`METHOD_DEFAULTS`), or `options[method]`;
    `threshold` and `max_draft`, when given, set the paper's chain (kangaroo and the comparison rows
    that run it: kangaroo-noadapter)."""
    chain = replace(
        METHOD_DEFAULTS[DEFAULT_METHOD],
        **{k: v for k, v in {"threshold": threshold, "max_draft": max_draft}.items() if v is not None},
    )
    base = dict(METHOD_DEFAULTS) | {m: chain for m in OUR_METHODS if engine_method(m) == DEFAULT_METHOD}
    base |= dict(options or {})
    return {m: replace(o, max_new_tokens=max_new_tokens) for m, o in base.items()}


def tree_size(methods: Iterable[str], opts: Mapping[str, DecodeOptions]) -> int:
    """The largest round tree among our methods (for `reserve_cache`); 0 when none is speculative."""
    layouts = [method_layout(engine_method(m), opts[m]) for m in methods if m in opts]
    return max((layout.size for layout in layouts if layout is not None), default=0)


# ------------------------------------------------------------------------------------ runners
def engine_runner(model: Model, method: str, adapter: Adapter | None, opts: DecodeOptions) -> Runner:
    """`generate` of our engine with `method` (an adapter for Kangaroo's methods) and options `opts`."""

    def run(prompt_ids: list[int], max_new_tokens: int) -> Generated:
        res = generate(
            model, prompt_ids, adapter=adapter, method=method, options=replace(opts, max_new_tokens=max_new_tokens)
        )
        return Generated(
            token_ids=res.token_ids,
            accept_lengths=res.accept_lengths,
            nodes=[len(r.drafts) for r in res.trace],
            draft_steps=[r.draft_steps for r in res.trace],
            syncs=res.syncs,
        )

    return run


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
    """The `generate` options that make each transformers method (`HF_GENERATE`)."""
    return HF_GENERATE[method](exit_layer)


def cut_at_eos(ids: list[int], eos: Iterable[int]) -> list[int]:
    """ids up to and including the first EOS token (all of them when there is none)."""
    eos = set(eos)
    return next((ids[: i + 1] for i, t in enumerate(ids) if t in eos), ids)


def kangaroo_adapter(model: Model, exit_layer: int) -> tuple[Adapter, str]:
    """(adapter, "shipped") for (model, exit layer), else (an untrained adapter, "untrained") with a loud warning."""
    check_exit_layer(exit_layer, model.config.n_layers)
    if (shipped_adapter_dir(model.name, exit_layer) / META_FILE).is_file():
        return load_adapter(model, exit_layer=exit_layer), "shipped"
    warn(
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
    if method in HF_GENERATE:
        if "hf" not in peers:
            peers["hf"] = model.to_hf()
        return hf_runner(model, peers["hf"], **hf_options(method, exit_layer)), None
    runs = engine_method(method)
    if not METHOD_TABLE[method].needs_adapter:
        return engine_runner(model, runs, None, opts[method]), None
    if method in ENGINE_COMPARISONS:
        variant = ENGINE_COMPARISONS[method][1]
        return engine_runner(model, runs, new_adapter(model, exit_layer, variant=variant), opts[method]), None
    if "adapter" not in peers:
        peers["adapter"] = kangaroo_adapter(model, exit_layer)
    adapter, source = peers["adapter"]
    note = (
        None
        if source == "shipped"
        else f"{method} used an UNTRAINED adapter: none is shipped for {model.name} at exit layer {exit_layer}"
    )
    return engine_runner(model, runs, adapter, opts[method]), note


# ------------------------------------------------------------------------------------ asking and timing
def timed_turn(
    runner: Runner, prompt_ids: list[int], max_new_tokens: int, device: torch.device
) -> tuple[Generated, float]:
    """The one timing path of every method (`metrics.timed`): sync, perf_counter, run, sync, perf_counter."""
    return timed(lambda: runner(prompt_ids, max_new_tokens), device)


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
                method=method,
                question_id=q.question_id,
                category=q.category,
                turn=turn,
                token_ids=generated.token_ids,
                text=text,
                seconds=seconds,
                accept_lengths=generated.accept_lengths,
                nodes=generated.nodes,
                draft_steps=generated.draft_steps,
                syncs=generated.syncs,
                peak_memory_mb=peak_memory_mb(model.device),
                prompt_ids=prompt_ids,
            )
        )
        messages.append({"role": "assistant", "content": text})
    return records


def answer_all(
    model: Model, method: str, runner: Runner, questions: Sequence[Question], max_new_tokens: int, progress: bool = True
) -> list[TurnRecord]:
    """Every question, in order, by one method."""
    from tqdm.auto import tqdm  # heavy: loads only when a run starts

    records = []
    for q in tqdm(questions, desc=method, unit="question", file=sys.stderr, disable=not progress, leave=False):
        records += answer_question(model, method, runner, q, max_new_tokens)
    return records


def warm_up(model: Model, runner: Runner, q: Question, max_new_tokens: int):
    """A few untimed generations, so that no method is timed from a cold start."""
    prompt_ids = model.encode(q.turns[0])
    for _ in range(WARMUP_RUNS):  # the full budget: every cache length the timed runs will see
        timed_turn(runner, prompt_ids, max_new_tokens, model.device)


def peak_memory_mb(device: torch.device) -> float | None:
    """The most device memory allocated since the last reset (None off CUDA)."""
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


# ------------------------------------------------------------------------------------ questions
def questions_or_minibench(questions: Sequence[Question] | None) -> list[Question]:
    """`questions` as a list (default: the bundled mini-bench); an empty list is refused."""
    questions = load_minibench() if questions is None else list(questions)
    if not questions:
        raise ValueError("no questions to benchmark: pass a non-empty question list (default: the mini-bench)")
    return questions


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
    reserve_caches(model, None, need, tree_size)
