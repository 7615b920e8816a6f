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

The methods and their order are the rows of `proposers.METHOD_TABLE`; how the comparison rows run
is in `runners` (`HF_GENERATE`, `ENGINE_COMPARISONS`). Each of our methods runs with its defaults
(`decoding.METHOD_DEFAULTS`) unless `options` says otherwise; run.json records what each ran with.

How a turn is measured (`timed_turn`, the one timing path, `metrics.timed`): synchronise the device, start
`perf_counter`, call the method's runner, synchronise, stop. A runner is a function
``prompt ids -> Generated`` (new token ids, EOS included when generated; per round the tokens
emitted, the candidates verified and the draft steps; host syncs). Multi-turn questions are asked
as Spec-Bench asks them: turn k's prompt is the conversation so far with the method's OWN earlier
answers, through the chat template. Every method is warmed up first (untimed), then each question
is answered by every method in turn, so that a machine whose speed drifts during the run (we saw
a GPU machine run 10x slower for the first minutes of a process) slows all methods alike instead
of flattering the ones measured last. A question whose conversation cannot fit the model's context
is skipped for every method, with a note.

Metrics (`summarize`, a pure function of the per-turn records; each row from `metrics.row`):

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
row's speedup_vs_ar measures the drift over the sweep). An interrupted run (Ctrl-C: `Interrupted`)
keeps its answers; ``resume=True`` (``--resume``) continues it.

The package: `runners` (the methods, asking and timing one question), `run` (a whole run),
`resume` (answer files, continuing a run), `sweeps`, `traces` (draft traces, recorded rounds),
`report` (summary rows, CSV files, Markdown tables).
"""

from ..adapter import shipped_adapter_dir
from ..metrics import CTAR_WINDOWS, Generated, TurnRecord, environment, syncs_per_round
from .report import (
    MISMATCH_COLUMNS,
    NOTE,
    SUMMARY_COLUMNS,
    SWEEP_COLUMNS,
    CsvRows,
    categories,
    note_row,
    summarize,
    summary_markdown,
    sweep_markdown,
    write_csv,
)
from .resume import records_from_answer, run_fingerprint, spec_bench_answer, start_answers
from .run import (
    BenchResult,
    Interrupted,
    answer_interleaved,
    benchmark,
    find_mismatches,
    prepare_runners,
    top2_gap,
)
from .runners import (
    BASELINE,
    DEFAULT_OUT,
    ENGINE_COMPARISONS,
    HF_BASELINE,
    HF_GENERATE,
    HF_METHODS,
    METHODS,
    OUR_METHODS,
    PROMPT_LOOKUP_TOKENS,
    WARMUP_RUNS,
    Runner,
    answer_all,
    answer_question,
    conversation_bound,
    cut_at_eos,
    engine_method,
    engine_runner,
    fitting_questions,
    hf_options,
    hf_runner,
    kangaroo_adapter,
    limit_per_category,
    make_runner,
    method_options,
    parse_methods,
    reserve_cache,
    timed_turn,
    tree_size,
    warm_up,
)
from .sweeps import (
    SWEEP_DEPTHS,
    SWEEP_EXIT_LAYERS,
    SWEEP_LIMIT,
    SWEEP_MAX_DRAFTS,
    SWEEP_NODE_BUDGETS,
    SWEEP_THRESHOLDS,
    SWEEP_TOP_KS,
    SWEEPS,
    run_sweep,
    sweep_exit_layer,
    sweep_row,
    sweep_threshold,
    sweep_tree,
    tree_grid,
)
from .traces import TRACE_COLUMNS, draft_trace, recorded_rounds, rounds_from_answers

_engine_method = engine_method  # the name cli.py used before the package (kept until it reads engine_method)

__all__ = [
    "answer_all",
    "answer_interleaved",
    "answer_question",
    "BASELINE",
    "benchmark",
    "BenchResult",
    "categories",
    "conversation_bound",
    "CsvRows",
    "CTAR_WINDOWS",
    "cut_at_eos",
    "DEFAULT_OUT",
    "draft_trace",
    "ENGINE_COMPARISONS",
    "engine_method",
    "engine_runner",
    "environment",
    "find_mismatches",
    "fitting_questions",
    "Generated",
    "HF_BASELINE",
    "HF_GENERATE",
    "HF_METHODS",
    "hf_options",
    "hf_runner",
    "Interrupted",
    "kangaroo_adapter",
    "limit_per_category",
    "make_runner",
    "method_options",
    "METHODS",
    "MISMATCH_COLUMNS",
    "NOTE",
    "note_row",
    "OUR_METHODS",
    "parse_methods",
    "prepare_runners",
    "PROMPT_LOOKUP_TOKENS",
    "recorded_rounds",
    "records_from_answer",
    "reserve_cache",
    "rounds_from_answers",
    "run_fingerprint",
    "run_sweep",
    "Runner",
    "shipped_adapter_dir",
    "spec_bench_answer",
    "start_answers",
    "summarize",
    "SUMMARY_COLUMNS",
    "summary_markdown",
    "SWEEP_COLUMNS",
    "SWEEP_DEPTHS",
    "sweep_exit_layer",
    "SWEEP_EXIT_LAYERS",
    "SWEEP_LIMIT",
    "sweep_markdown",
    "SWEEP_MAX_DRAFTS",
    "SWEEP_NODE_BUDGETS",
    "sweep_row",
    "sweep_threshold",
    "SWEEP_THRESHOLDS",
    "SWEEP_TOP_KS",
    "sweep_tree",
    "syncs_per_round",
    "SWEEPS",
    "timed_turn",
    "top2_gap",
    "TRACE_COLUMNS",
    "tree_grid",
    "tree_size",
    "TurnRecord",
    "warm_up",
    "WARMUP_RUNS",
    "write_csv",
]
