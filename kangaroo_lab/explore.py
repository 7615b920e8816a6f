"""What the tutorials compute: each function returns a DataFrame or a dataclass that a notebook
plots with `plots` or shows in a panel from `widgets`.

* `layer_predictions`   what exiting after each layer would predict (final norm + LM head on that
                        layer's hidden state), against the full model's own top-1;
* `draft_agreement`     how often a draft head's top-1 equals the full model's;
* `parameter_counts`, `cost_breakdown`   what each part of the split model weighs and costs;
* `trace_frame`, `record_trace`   one row per draft: its confidence and whether it was accepted;
* `read_stored`         a file of figures/data/, or a note saying what produces it;
* `exact_marginals`, `sampling_check`, `acceptance_vs_temperature`   speculative sampling against
                        the exact distribution of the target model (they live in `exactness.py`);
* `step_through`, `ctar`   one generation, round by round, next to greedy autoregressive decoding.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from .adapter import Adapter, load_adapter
from .bench import TRACE_COLUMNS, draft_trace
from .questions import Question
from .decoding import DEFAULTS, GenerationResult, generate
from .engine import cache_slots, cache_window
from .metrics import CTAR_WINDOWS, environment, median_ms, ctar as _ctar
from .models import Model
from .plots import PRODUCERS
from .exactness import (  # noqa: F401 (the tutorials' sampling checks, explore's names before exactness.py)
    SamplingCheck,
    acceptance_vs_temperature,
    chi_square,
    exact_marginals,
    exact_token_distribution,
    sampling_check,
)
from .render import progress_bar, token_text  # noqa: F401 (token_text: explore's name before render.py)


REPO_DATA = Path(__file__).resolve().parent.parent / "figures" / "data"  # in a checkout of the repository
_REDIRECTED: set[tuple[str, str]] = set()


def stored_data_dir(data_dir=None) -> Path:
    """Where the stored results are: `data_dir` when that folder exists, else $KANGAROO_LAB_DATA, else
    figures/data of the repository this package was imported from (so that a notebook run from
    another working directory still finds the results that ship with the repository)."""
    for candidate in (data_dir, os.environ.get("KANGAROO_LAB_DATA"), REPO_DATA):
        if candidate is not None and Path(candidate).expanduser().is_dir():
            return Path(candidate).expanduser()
    return Path(data_dir if data_dir is not None else REPO_DATA)


def read_stored(data_dir, name: str) -> pd.DataFrame | None:
    """A stored result file (`name` relative to `data_dir`, e.g. "bench/summary.csv") as a DataFrame,
    or None after printing that it is missing and what produces it.

    When the folder `data_dir` itself does not exist (a notebook started outside the repository
    computes its default from the working directory), the file is read from `stored_data_dir()`
    instead, and the path it came from is printed."""
    folder = stored_data_dir(data_dir)
    path = folder / name
    if path.is_file():
        if folder != Path(data_dir) and (str(data_dir), str(folder)) not in _REDIRECTED:  # said once per folder
            _REDIRECTED.add((str(data_dir), str(folder)))
            print(f"{data_dir} does not exist: reading the stored results from {folder}")
        return pd.read_csv(path)
    print(
        f"{path} is not there: it comes from {PRODUCERS.get(name, 'a GPU run')}. The repository ships it "
        f"under figures/data/; point KANGAROO_LAB_DATA at that folder of a checkout (looked in: {data_dir}, "
        f"$KANGAROO_LAB_DATA={os.environ.get('KANGAROO_LAB_DATA', '(unset)')}, {REPO_DATA}). "
        "The cells that need it say so and skip their figure."
    )
    return None


# ------------------------------------------------------------------------------------ anatomy
@torch.inference_mode()
def layer_predictions(
    model: Model, prompt, layers: Iterable[int] | None = None, max_positions: int = 12, chat: bool = True
) -> pd.DataFrame:
    """What the model would predict if it stopped after each layer ("logit lens").

    The prompt (text, chat messages or token ids) is followed by the model's own greedy answer of
    `max_positions` tokens. At every answer position and every layer l, the hidden state after
    layer l, (T, D), goes through the final norm and the LM head, (T, V).

    Returns one row per (layer, position), layers 1..N by default (N: the full model itself):
    layer; position (0-based index of the answer token being predicted); token (the full model's
    top-1 there, as text); probability (the probability the exit at `layer` gives that token);
    top1_matches (the exit's own top-1 is that token); layer_token (the exit's top-1, as text)."""
    n_layers = model.config.n_layers
    layers = list(range(1, n_layers + 1) if layers is None else layers)
    bad = [l for l in layers if not 0 <= l <= n_layers]
    if bad:
        raise ValueError(f"layers {bad} are out of range: this model has layers 0 (embeddings) .. {n_layers}")
    prompt_ids = model.encode(prompt, chat=chat)
    answer = generate(model, prompt_ids, method="ar", max_new_tokens=max_positions).token_ids
    seq = torch.tensor([prompt_ids + answer], device=model.device)  # (1, T)
    states = model.engine.hidden_states(seq)  # n_layers + 1 tensors (1, T, D)
    rows_at = torch.arange(len(prompt_ids) - 1, seq.shape[1] - 1, device=model.device)  # predict answer[i]
    final = torch.softmax(model.engine.head(states[-1][0, rows_at]).float(), -1)  # (P, V)
    target = final.argmax(-1)  # (P,): the full model's top-1 at each answer position
    target_text = [token_text(model, t) for t in target.tolist()]
    rows = []
    for l in layers:
        p = torch.softmax(model.engine.head(states[l][0, rows_at]).float(), -1)  # (P, V): exit after layer l
        prob = p.gather(1, target[:, None])[:, 0].tolist()
        top = p.argmax(-1).tolist()
        for i, t in enumerate(target.tolist()):
            rows.append(
                {
                    "layer": l,
                    "position": i,
                    "token": target_text[i],
                    "probability": prob[i],
                    "top1_matches": top[i] == t,
                    "layer_token": token_text(model, top[i]),
                }
            )
    return pd.DataFrame(rows)


@torch.inference_mode()
def draft_agreement(
    model: Model,
    adapters: Mapping[str, Adapter],
    prompts: Sequence,
    max_new_tokens: int = 32,
    chat: bool = True,
    progress: bool = False,
) -> pd.DataFrame:
    """How often each draft head's top-1 equals the full model's, on the model's own greedy answers.

    For every prompt the model answers greedily (`max_new_tokens`); at each answer position the
    draft head (shallow states after its exit layer -> adapter -> LM head) gives q and the full
    model p. Returns one row per adapter: name, exit_layer, variant, parameters, positions,
    top1 (share of positions with argmax q == argmax p: a greedy draft after a correct prefix is
    accepted exactly then) and expected_accept (mean of sum_v min(p, q))."""
    e = model.engine
    rows = {name: {"positions": 0, "top1": 0.0, "expected_accept": 0.0} for name in adapters}
    for prompt in progress_bar(prompts, progress, "answering and scoring each head", "prompt"):
        ids = model.encode(prompt, chat=chat)
        answer = generate(model, ids, method="ar", max_new_tokens=max_new_tokens).token_ids
        seq = torch.tensor([ids + answer], device=model.device)  # (1, T)
        states = e.hidden_states(seq)  # n_layers + 1 tensors (1, T, D)
        at = torch.arange(len(ids) - 1, seq.shape[1] - 1, device=model.device)  # positions predicting the answer
        p = torch.softmax(e.head(states[-1][0, at]).float(), -1)  # (P, V)
        for name, adapter in adapters.items():
            z = adapter(states[adapter.exit_layer], start=None)[0, at]  # (P, D): whole sequence, causal
            q = torch.softmax(e.lm_head(z).float(), -1)  # (P, V)
            rows[name]["positions"] += len(at)
            rows[name]["top1"] += float((q.argmax(-1) == p.argmax(-1)).sum())
            rows[name]["expected_accept"] += float(torch.minimum(p, q).sum())
    return pd.DataFrame(
        [
            {
                "adapter": name,
                "exit_layer": a.exit_layer,
                "variant": a.variant,
                "parameters": a.num_parameters(),
                "positions": r["positions"],
                "top1": r["top1"] / max(1, r["positions"]),
                "expected_accept": r["expected_accept"] / max(1, r["positions"]),
            }
            for (name, a), r in zip(adapters.items(), rows.values())
        ]
    )


def _numel(modules) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def parameter_counts(
    model: Model, adapter: Adapter, medusa_heads: int = 4, medusa_shared_head: bool = False
) -> pd.DataFrame:
    """Parameters of each part of the split model, of the adapter, and of Medusa-style draft heads.

    Columns: part, params, share (params / the target model's parameters), note. A tied LM head
    is listed with the embedding's size and a note, and counted once in the total. The Medusa-style
    row assumes Medusa-1's heads: `medusa_heads` heads, each a residual block (D x D weight + D
    bias) and, unless `medusa_shared_head`, its own LM head (D x V); the adapter instead reuses
    the target's LM head and its first l layers."""
    e, c, l = model.engine, model.config, adapter.exit_layer
    total = sum(p.numel() for p in e.parameters())  # parameters() yields a tied weight once
    head = e.lm_head.weight.numel()
    tied = c.tie_embeddings
    rows = [
        ("embedding", e.embed_tokens.weight.numel(), "token embeddings (V x D)"),
        (f"shallow layers 1-{l}", _numel(e.layers[:l]), "run by the draft and by the target"),
        (f"deep layers {l + 1}-{c.n_layers}", _numel(e.layers[l:]), "run by the target only (verification)"),
        ("final norm", e.norm.weight.numel(), ""),
        ("LM head", head, "tied to the embedding: no extra parameters" if tied else "D x V"),
        ("target model (total)", total, "each weight once"),
        (
            f"Kangaroo adapter ({adapter.variant})",
            adapter.num_parameters(),
            "the only new weights: the draft reuses layers 1-l and the LM head",
        ),
    ]
    block = c.dim * c.dim + c.dim
    per_head = block + (0 if medusa_shared_head else c.dim * c.vocab_size)
    what = "residual block (D x D + bias)" + ("; LM head shared" if medusa_shared_head else " + own LM head (D x V)")
    rows.append((f"Medusa-style heads (k={medusa_heads})", medusa_heads * per_head, f"each head: {what}"))
    return pd.DataFrame([{"part": p, "params": n, "share": n / total, "note": note} for p, n, note in rows])


@torch.inference_mode()
def cost_breakdown(model: Model, adapter: Adapter, repeats: int = 20, context: int = 64) -> pd.DataFrame:
    """Time of each part of a one-token decoding step, on the model's current device and dtype.

    After a prefill of `context` tokens, one token at position `context` goes through: the embedding,
    the shallow layers 1..l, the deep layers l+1..N, the adapter, and the final norm + LM head.
    A draft step is embedding + shallow + adapter + head; a target step embedding + all layers + head.
    Returns columns part, ms (median over `repeats`, `metrics.median_ms`), params, device. Eager PyTorch:
    on a GPU the gaps the host leaves between kernel launches are included, which CUDA graphs remove."""
    e, l, n = model.engine, adapter.exit_layer, model.config.n_layers
    size = cache_slots(context + 1)
    e.setup_cache(size)
    adapter.setup_cache(size)
    ids = (torch.arange(context, device=model.device) * 7 + 11) % model.config.vocab_size  # any tokens will do
    h = e.shallow(ids[None], 0, l)  # (1, context, D): prefill every cache
    adapter(h, 0)
    e.deep(h, 0, l)
    token = ids[-1:].view(1, 1)
    positions, rope, mask, kv_len = cache_window(e.positions, e.rotary, e.cache_len, context, 1)

    def run_layers(x, blocks):
        for block in blocks:
            x = block(x, rope, positions, mask, kv_len)
        return x

    x0 = e.embed_tokens(token)  # (1, 1, D)
    xl = run_layers(x0, e.layers[:l])
    xn = run_layers(xl, e.layers[l:])
    parts = [
        ("embedding", lambda: e.embed_tokens(token), e.embed_tokens.weight.numel()),
        (f"shallow layers 1-{l}", lambda: run_layers(x0, e.layers[:l]), _numel(e.layers[:l])),
        (f"deep layers {l + 1}-{n}", lambda: run_layers(xl, e.layers[l:]), _numel(e.layers[l:])),
        (f"adapter ({adapter.variant})", lambda: adapter(xl, context), adapter.num_parameters()),
        ("final norm + LM head", lambda: e.head(xn), e.norm.weight.numel() + e.lm_head.weight.numel()),
    ]
    device = environment(model)["device"]
    return pd.DataFrame(
        [
            {"part": name, "ms": median_ms(fn, model.device, repeats), "params": params, "device": device}
            for name, fn, params in parts
        ]
    )


# ------------------------------------------------------------------------------------ draft traces
def trace_frame(
    results: Sequence[GenerationResult],
    questions_meta: Sequence[Mapping],
    model: Model | None = None,
    device: str = "",
    versions: str = "",
) -> pd.DataFrame:
    """One row per draft of Kangaroo generations, in the columns of figures/data/bench/draft_trace.csv.

    `questions_meta[i]` describes `results[i]`: a mapping with category, question_id and turn
    (0-based; default 0). round is the 0-based index of the verification round within its turn,
    position the draft's 1-based place in its round, confidence the draft's top-1 probability,
    accepted 1 if the target accepted it, else 0. device and versions come from `model` when given."""
    if len(results) != len(questions_meta):
        raise ValueError(f"{len(results)} results but {len(questions_meta)} question descriptions; give one per result")
    if model is not None:
        device, versions = environment(model)["device"], environment(model)["versions"]
    rows = []
    for res, meta in zip(results, questions_meta):
        for r, rnd in enumerate(res.trace):
            for i, conf in enumerate(rnd.confidences):
                rows.append(
                    {
                        "category": meta["category"],
                        "question_id": meta["question_id"],
                        "turn": meta.get("turn", 0),
                        "round": r,
                        "position": i + 1,
                        "confidence": conf,
                        "accepted": int(i < rnd.accepted),
                        "device": device,
                        "versions": versions,
                    }
                )
    return pd.DataFrame(rows, columns=list(TRACE_COLUMNS))


def record_trace(
    model: Model,
    adapter: Adapter,
    questions: Sequence[Question],
    out,
    max_new_tokens: int = 64,
    max_draft: int = DEFAULTS.max_draft,
) -> pd.DataFrame:
    """Record a draft trace like the GPU run does (`bench.draft_trace`: greedy Kangaroo at eta = 0, so
    every round drafts `max_draft` tokens; every turn, each seeing the model's own earlier answers),
    write it to the CSV file `out` and return it."""
    return pd.read_csv(
        draft_trace(
            model, adapter, questions, out=out, max_draft=max_draft, max_new_tokens=max_new_tokens, progress=False
        )
    )


# ------------------------------------------------------------------------------------ step by step
def ctar(accept_lengths: Sequence[int], windows: Iterable[int] = CTAR_WINDOWS) -> dict[int, float]:
    """CTAR(w): the share of verification rounds that emitted more than w tokens, for each window w
    (`metrics.ctar`); NaN for every window when there are no rounds (a number a table can show)."""
    return {w: math.nan if share is None else share for w, share in _ctar(accept_lengths, windows).items()}


@dataclass
class RoundStep:
    """One verification round, as a reader follows it."""

    index: int  # 0-based
    start: int  # tokens generated before this round
    draft_ids: list[int]
    drafts: list[str]  # the drafts as text
    confidences: list[float]  # each draft's top-1 probability under the draft model
    accepted: int  # drafts the target accepted (a prefix)
    token_id: int  # the target's own token closing the round
    token: str
    kind: str  # "correction" (a draft was rejected), "bonus" (every draft accepted) or "plain" (no drafts)
    stop: str  # why drafting stopped: "threshold" (confidence < eta), "gamma" (max drafts) or "budget" (max_new_tokens)
    rolled_back: int  # rejected drafts: their cache entries become stale and are overwritten later
    emitted: int  # tokens this round added to the output (EOS or max_new_tokens may cut the last round)
    text: str  # the generated text after this round


@dataclass
class StepThrough:
    """One Kangaroo generation round by round, and the greedy autoregressive output to compare with."""

    rounds: list[RoundStep]
    first_token: str  # generated by the prefill, before any round
    kangaroo: GenerationResult
    ar: GenerationResult
    identical: bool  # Kangaroo's tokens == AR's tokens
    ctar: dict[int, float]
    exit_layer: int
    threshold: float
    max_draft: int

    def frame(self) -> pd.DataFrame:
        """One row per round (numbered from 1): drafts with their confidences, how many were accepted,
        the target's token and its kind, why drafting stopped, tokens emitted."""
        return pd.DataFrame(
            [
                {
                    "round": r.index + 1,
                    "drafts": " | ".join(f"{d} ({c:.2f})" for d, c in zip(r.drafts, r.confidences)),
                    "accepted": f"{r.accepted}/{len(r.drafts)}",
                    "target token": r.token,
                    "kind": r.kind,
                    "stop": r.stop,
                    "emitted": r.emitted,
                }
                for r in self.rounds
            ]
        )


def step_through(
    model: Model,
    adapter: Adapter | None,
    prompt,
    exit_layer: int | None = None,
    threshold: float = DEFAULTS.threshold,
    max_draft: int = DEFAULTS.max_draft,
    max_new_tokens: int = 48,
    chat: bool = True,
) -> StepThrough:
    """Generate greedily with Kangaroo and with AR; split Kangaroo's run into its rounds (from `trace`).

    adapter None: the shipped adapter for `exit_layer` (default 2). Given both, they must agree."""
    if adapter is None:
        adapter = load_adapter(model, exit_layer=exit_layer if exit_layer is not None else 2)
    elif exit_layer is not None and exit_layer != adapter.exit_layer:
        raise ValueError(f"the adapter exits after layer {adapter.exit_layer}, not {exit_layer}; pass a matching pair")
    ids = model.encode(prompt, chat=chat)
    kg = generate(model, ids, adapter=adapter, threshold=threshold, max_draft=max_draft, max_new_tokens=max_new_tokens)
    ar = generate(model, ids, method="ar", max_new_tokens=max_new_tokens)
    rounds, done = [], 1  # the first token comes from the prefill
    for i, r in enumerate(kg.trace):
        k = len(r.drafts)
        stop = "threshold" if k and r.confidences[-1] < threshold else "gamma" if k == max_draft else "budget"
        emitted = min(r.accepted + 1, len(kg.token_ids) - done)
        kind = "plain" if k == 0 else "bonus" if r.accepted == k else "correction"
        rounds.append(
            RoundStep(
                i,
                done,
                list(r.drafts),
                [token_text(model, d) for d in r.drafts],
                list(r.confidences),
                r.accepted,
                r.token,
                token_text(model, r.token),
                kind,
                stop,
                k - r.accepted,
                emitted,
                model.decode(kg.token_ids[: done + emitted]),
            )
        )
        done += emitted
    return StepThrough(
        rounds,
        token_text(model, kg.token_ids[0]),
        kg,
        ar,
        kg.token_ids == ar.token_ids,
        ctar(kg.accept_lengths),
        adapter.exit_layer,
        threshold,
        max_draft,
    )
