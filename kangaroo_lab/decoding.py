"""Autoregressive decoding and Kangaroo's double-early-exit loop.

One Kangaroo round, starting from the newest committed token x at position `pos`:

1. **draft** (early exit #1): run only layers < l on x, then the adapter and the target's LM head;
   the result d1 is the draft. Repeat on d1, d2, ... Each step caches its shallow hidden state.
   Stop (early exit #2) once a draft's top-1 probability is below `threshold`, or after `max_draft`.
2. **verify**: run layers >= l once over the cached shallow states of x, d1, ..., d(k-1) plus the
   shallow state of dk: k+1 target distributions in one pass. Layers < l never see a token twice.
3. **accept**: keep the longest prefix of drafts the target agrees with, then add one token of the
   target's own (a correction, or a bonus token when every draft was accepted). Greedy and sampling
   differ only in this rule (`greedy_accept` / `speculative_accept`).
4. **roll back**: the KV caches are static and written by position, so rolling back is moving
   `pos`; stale entries beyond it are masked out and later overwritten.

The output equals autoregressive decoding of the target: token for token when greedy, in
distribution when sampling.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from .adapter import Adapter, _check_fits
from .engine import as_int
from .models import Model

METHODS = ("ar", "kangaroo")
DEFAULT_METHOD = "kangaroo"


@dataclass(frozen=True)
class DecodeOptions:
    """Every decoding default, in one place (the CLI and the benchmarks read them from here)."""

    threshold: float = 0.6  # eta: stop drafting once the draft's top-1 probability falls below it
    max_draft: int = 6  # gamma: at most this many drafts per round
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self):
        for name in ("max_draft", "max_new_tokens", "seed"):  # numpy integers from sweeps are fine
            if as_int(getattr(self, name)) is not None:
                object.__setattr__(self, name, as_int(getattr(self, name)))
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold (eta) must lie in [0, 1], got {self.threshold}; 0.6 is a good start")
        if as_int(self.max_draft) is None or self.max_draft < 1:
            raise ValueError(f"max_draft (gamma) must be an integer >= 1, got {self.max_draft!r}")
        if as_int(self.max_new_tokens) is None or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        if not self.temperature >= 0.0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must lie in (0, 1], got {self.top_p}")


DEFAULTS = DecodeOptions()


@dataclass
class Round:
    """One verification: the drafts proposed, their confidences, how many the target accepted and
    the target's own token that closed the round."""

    drafts: list[int]
    confidences: list[float]
    accepted: int
    token: int


@dataclass
class GenerationResult:
    """What `generate` returns. Lists are per generated token, per round or per draft, as named."""

    method: str
    prompt_ids: list[int]
    token_ids: list[int]  # generated tokens (EOS included when generation stopped at it)
    text: str
    accept_lengths: list[int]  # per verification round: tokens emitted (accepted drafts + 1)
    draft_confidences: list[float]  # per draft: top-1 probability of the draft distribution
    draft_accepted: list[bool]  # per draft: accepted by the target?
    draft_positions: list[int]  # per draft: 1-based position within its round
    trace: list[Round]  # per verification round (empty for "ar")
    seconds: float
    stop_reason: str  # "eos" or "length"
    rounds: int = field(init=False)

    def __post_init__(self):
        self.rounds = len(self.accept_lengths)

    @property
    def tokens_per_second(self) -> float:
        return len(self.token_ids) / self.seconds if self.seconds > 0 else float("nan")

    @property
    def mean_accepted(self) -> float:
        """Mean tokens emitted per verification round (compression rate), bonus token included."""
        return sum(self.accept_lengths) / max(1, len(self.accept_lengths))


# ------------------------------------------------------------------------------------ sampling
class Sampler:
    """Temperature / top-p warping and seeded draws. temperature == 0 means greedy."""

    def __init__(self, temperature: float, top_p: float, seed: int, device: torch.device):
        self.temperature, self.top_p = temperature, top_p
        self.greedy = temperature == 0.0
        self.generator = torch.Generator(device).manual_seed(seed)

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """(..., V) logits -> the distribution we sample from: softmax(logits / T), top-p truncated."""
        p = torch.softmax(logits.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            sorted_p, order = p.sort(dim=-1, descending=True)
            drop = sorted_p.cumsum(-1) - sorted_p >= self.top_p  # keep the smallest set with mass >= top_p
            p = p.scatter(-1, order, sorted_p.masked_fill(drop, 0.0))
            p = p / p.sum(-1, keepdim=True)
        return p

    def draw(self, weights: torch.Tensor) -> torch.Tensor:
        """One index per row, with probability proportional to `weights` (>= 0, need not sum to 1).

        argmax(w / E) with E ~ Exp(1) is such a draw and needs no host sync."""
        e = torch.empty_like(weights, dtype=torch.float32).exponential_(generator=self.generator)
        return (weights.float() / e).argmax(-1)

    def next_token(self, logits: torch.Tensor) -> torch.Tensor:
        """The target's token from logits (..., V)."""
        return logits.argmax(-1) if self.greedy else self.draw(self.probs(logits))

    def draft(self, logits: torch.Tensor):
        """Draft logits (1, V) -> (confidence (1,), token (1,), draft distribution q or None when greedy).

        The confidence that early exit tests is the top-1 probability of softmax(logits), at any
        temperature, so one threshold means the same thing greedy and sampling."""
        conf, top = torch.softmax(logits.float(), dim=-1).max(-1)
        if self.greedy:
            return conf, top, None
        q = self.probs(logits)
        return conf, self.draw(q), q


def greedy_accept(logits: torch.Tensor, drafts: torch.Tensor, q: torch.Tensor | None, sampler: Sampler):
    """logits: (k+1, V) target logits at the round's positions; drafts: (k,).

    Accept the longest prefix of drafts equal to the target's argmax; the next token is the
    target's argmax right after it (a correction, or the bonus token if all k were accepted)."""
    target = logits.argmax(-1)  # (k+1,)
    n = (target[:-1] == drafts).cumprod(0).sum().view(1)  # number of accepted drafts, (1,)
    return n, target.gather(0, n)  # gather, not target[n]: a 0-dim index would sync with the host


def speculative_accept(logits: torch.Tensor, drafts: torch.Tensor, q: torch.Tensor, sampler: Sampler):
    """Speculative sampling (Leviathan et al. 2023; Chen et al. 2023). p = target, q = draft.

    accept draft x_i with prob min(1, p_i(x_i) / q_i(x_i)); at the first rejection resample from
    norm(max(p_i - q_i, 0)); if all k drafts are accepted, draw the bonus token from p_k.
    The emitted tokens are then distributed exactly as sampling from p one token at a time."""
    k = drafts.shape[0]
    p = sampler.probs(logits)  # (k+1, V)
    rows = torch.arange(k, device=drafts.device)
    p_x, q_x = p[rows, drafts], q[rows, drafts]  # (k,)
    u = torch.rand(k, generator=sampler.generator, device=drafts.device)
    accepted = u * q_x < p_x  # u < p/q, without dividing by zero
    n = accepted.long().cumprod(0).sum().view(1)  # (1,), kept on the device
    residual = torch.cat([(p[:k] - q).clamp_min(0.0), p[k:]])  # row k: the bonus distribution p_k
    row = residual.index_select(0, n)[0]
    row = torch.where(row.sum() > 0, row, p.index_select(0, n)[0])  # p == q to rounding: fall back to p
    return n, sampler.draw(row)


# ------------------------------------------------------------------------------------ output
class _Output:
    """Collects emitted tokens; truncates at EOS and at max_new_tokens."""

    def __init__(self, max_new_tokens: int, eos: frozenset[int]):
        self.max_new_tokens, self.eos = max_new_tokens, eos
        self.tokens: list[int] = []
        self.accept_lengths: list[int] = []
        self.stop_reason: str | None = None

    @property
    def remaining(self) -> int:
        return self.max_new_tokens - len(self.tokens)

    def emit(self, tokens: list[int], round_: bool = True) -> bool:
        """Append a round's tokens; True when generation is over."""
        take = tokens[: self.remaining]
        for i, t in enumerate(take):
            if t in self.eos:
                take, self.stop_reason = take[: i + 1], "eos"
                break
        self.tokens += take
        if round_:
            self.accept_lengths.append(len(take))
        if self.stop_reason is None and self.remaining == 0:
            self.stop_reason = "length"
        return self.stop_reason is not None


# ------------------------------------------------------------------------------------ loops
def autoregressive(model: Model, prompt: list[int], sampler: Sampler, out: _Output, graphs=None):
    """The baseline: one full forward pass per token (a replayed CUDA graph when `graphs` is given)."""
    engine = model.engine
    logits = engine(torch.tensor([prompt], device=model.device), 0)[:, -1]  # prefill
    token = sampler.next_token(logits)  # (1,)
    if graphs is not None:
        graphs.start(token, len(prompt))
    pos, first = len(prompt), True
    while True:
        token_id = token.item() if first or graphs is None else graphs.next_ar_token()  # host sync per token
        if out.emit([token_id], round_=not first):
            return
        if graphs is None:
            token = sampler.next_token(engine(token.view(1, 1), pos)[:, -1])
        pos, first = pos + 1, False


@dataclass
class _Draft:
    tokens: list[torch.Tensor] = field(default_factory=list)  # d1..dk, each (1,), on the device
    states: list[torch.Tensor] = field(default_factory=list)  # shallow states of x, d1..d(k-1), (1, 1, D)
    probs: list[torch.Tensor] = field(default_factory=list)  # q_i (1, V) when sampling
    confidences: list[float] = field(default_factory=list)


def draft(model: Model, adapter: Adapter, token: torch.Tensor, pos: int, budget: int, threshold: float,
          sampler: Sampler) -> _Draft:
    """Draft up to `budget` tokens after `token` (at `pos`) with layers < l + adapter + LM head."""
    engine, l = model.engine, adapter.exit_layer
    d = _Draft()
    for i in range(budget):
        h = engine.shallow(token.view(1, 1), pos + i, l)  # (1, 1, D); fills layers < l at pos+i
        d.states.append(h)
        logits = engine.lm_head(adapter(h, pos + i)[:, -1])  # (1, V): the target's frozen head
        conf, token, q = sampler.draft(logits)
        d.tokens.append(token)
        d.probs.append(q)
        d.confidences.append(conf.item())  # host sync, one per draft step: the early-exit test
        if d.confidences[-1] < threshold:
            break
    return d


def verify(model: Model, adapter: Adapter, token: torch.Tensor, pos: int, d: _Draft) -> torch.Tensor:
    """Target logits (k+1, V) for the round's k+1 positions, in one pass of layers >= l.

    Only the last draft (or `token` itself when k = 0) still needs its shallow state; the others
    were cached while drafting. Its adapter keys/values are written too, so the adapter's cache
    covers every position the target may accept."""
    engine, l, k = model.engine, adapter.exit_layer, len(d.tokens)
    last = d.tokens[-1] if k else token
    h_last = engine.shallow(last.view(1, 1), pos + k, l)  # (1, 1, D)
    adapter.write_kv(h_last, pos + k)
    states = torch.cat(d.states + [h_last], dim=1)  # (1, k+1, D): positions pos .. pos+k
    return engine.deep(states, pos, l)[0]


class EagerSteps:
    """Drafting and verification as plain PyTorch calls: any device, greedy or sampling."""

    def __init__(self, model: Model, adapter: Adapter, sampler: Sampler):
        self.model, self.adapter, self.sampler = model, adapter, sampler
        self.accept = greedy_accept if sampler.greedy else speculative_accept

    def start(self, token: torch.Tensor, pos: int):
        self.token = token

    def draft(self, pos: int, budget: int, threshold: float) -> list[float]:
        self.pos, self.d = pos, draft(self.model, self.adapter, self.token, pos, budget, threshold, self.sampler)
        return self.d.confidences

    def verify_round(self, k: int) -> tuple[int, int, list[int]]:
        logits = verify(self.model, self.adapter, self.token, self.pos, self.d)
        drafts = torch.cat(self.d.tokens) if k else torch.empty(0, dtype=torch.long, device=self.model.device)
        q = torch.cat(self.d.probs) if k and not self.sampler.greedy else logits[:0]  # (k, V)
        n, nxt = self.accept(logits, drafts, q, self.sampler)
        self.token = nxt.view(1)
        n_acc, nxt_id, *draft_ids = torch.cat([n.view(1), nxt.view(1), drafts]).tolist()  # host sync: one per round
        return n_acc, nxt_id, draft_ids


def kangaroo(model: Model, adapter: Adapter, prompt: list[int], opts: DecodeOptions, sampler: Sampler,
             out: _Output, steps=None) -> list[Round]:
    """The double-early-exit loop: draft -> verify -> accept -> roll back, until EOS or the budget.

    `steps` does the device work of a round: `EagerSteps` (default) or captured CUDA graphs."""
    engine, l = model.engine, adapter.exit_layer
    steps = steps or EagerSteps(model, adapter, sampler)
    h = engine.shallow(torch.tensor([prompt], device=model.device), 0, l)  # (1, n, D)
    adapter(h, 0)  # prefill the adapter's cache with the prompt's shallow states
    token = sampler.next_token(engine.deep(h, 0, l)[:, -1])  # (1,): the target's first token
    trace: list[Round] = []
    if out.emit([token.item()], round_=False):
        return trace
    pos = len(prompt)
    steps.start(token, pos)
    while True:
        budget = min(opts.max_draft, out.remaining - 1)  # never draft past max_new_tokens
        confidences = steps.draft(pos, budget, opts.threshold)
        n_acc, nxt_id, draft_ids = steps.verify_round(len(confidences))
        trace.append(Round(draft_ids, confidences, n_acc, nxt_id))
        if out.emit(draft_ids[:n_acc] + [nxt_id]):
            return trace
        # roll back: positions <= pos + n_acc are committed; later cache entries are stale and get
        # overwritten, and the attention mask hides them meanwhile. Nothing to copy or free.
        pos += n_acc + 1


# ------------------------------------------------------------------------------------ entry
def generate(model: Model, prompt, adapter: Adapter | None = None, method: str = DEFAULT_METHOD,
             threshold: float = DEFAULTS.threshold, max_draft: int = DEFAULTS.max_draft,
             max_new_tokens: int = DEFAULTS.max_new_tokens, temperature: float = DEFAULTS.temperature,
             top_p: float = DEFAULTS.top_p, seed: int = DEFAULTS.seed, chat: bool = True,
             cuda_graphs=None) -> GenerationResult:
    """Generate from `prompt` (text, chat messages or token ids) with `method` "ar" or "kangaroo".

    Greedy when temperature == 0, else speculative sampling; both reproduce the target exactly.
    cuda_graphs: replay captured CUDA graphs for the decoding steps: None (default) = on for greedy
    decoding on a GPU, True/False, or a `graphs.GraphOptions` (fixed rows, torch.compile). The first
    call for a new cache size captures them (and compiles the layers once), which takes a moment."""
    opts = DecodeOptions(threshold, max_draft, max_new_tokens, temperature, top_p, seed)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    if method == "kangaroo":
        if adapter is None:
            raise ValueError("method='kangaroo' needs an adapter: load_adapter(model) or new_adapter(model, exit_layer)")
        _check_fits(adapter.meta, model, strict=False)
    prompt_ids = model.encode(prompt, chat=chat)
    _setup_caches(model, adapter if method == "kangaroo" else None, len(prompt_ids), opts.max_new_tokens)
    sampler = Sampler(opts.temperature, opts.top_p, opts.seed, model.device)
    out = _Output(opts.max_new_tokens, model.eos_token_ids)
    graphs = _graphs(model, adapter if method == "kangaroo" else None, opts, cuda_graphs)
    _sync(model.device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        if method == "ar":
            autoregressive(model, prompt_ids, sampler, out, graphs)
            trace = []
        else:
            trace = kangaroo(model, adapter, prompt_ids, opts, sampler, out, graphs)
    _sync(model.device)
    seconds = time.perf_counter() - t0
    return _result(model, method, prompt_ids, out, trace, seconds)


def _setup_caches(model: Model, adapter: Adapter | None, prompt_len: int, max_new_tokens: int):
    need = prompt_len + max_new_tokens  # the last new token is never fed back: this is enough
    limit = model.config.max_seq_len
    if need > limit:
        raise ValueError(
            f"the prompt ({prompt_len} tokens) plus max_new_tokens={max_new_tokens} exceeds the model's "
            f"context of {limit} tokens; shorten the prompt or lower max_new_tokens"
        )
    size = min(limit, -(-need // 256) * 256)  # round up, so that similar requests reuse the cache
    model.engine.setup_cache(size)  # kept when already large enough (see bench.reserve_cache)
    if adapter is not None:
        adapter.setup_cache(model.engine.cache_len)  # the same length: one set of captured shapes


def _graphs(model: Model, adapter: Adapter | None, opts: DecodeOptions, wanted):
    """Captured greedy steps, when asked for (or by default on CUDA); None means eager."""
    from .graphs import GraphOptions, greedy_graphs

    use = (model.device.type == "cuda" and opts.temperature == 0.0) if wanted is None else bool(wanted)
    if not use:
        return None
    if opts.temperature != 0.0:
        raise ValueError("cuda_graphs supports greedy decoding only (temperature 0); sampling runs eagerly")
    options = wanted if isinstance(wanted, GraphOptions) else GraphOptions()
    with torch.inference_mode():
        return greedy_graphs(model, adapter, opts.max_draft, options)


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _result(model, method, prompt_ids, out: _Output, trace: list[Round], seconds: float) -> GenerationResult:
    conf = [c for r in trace for c in r.confidences]
    accepted = [i < r.accepted for r in trace for i in range(len(r.drafts))]
    positions = [i + 1 for r in trace for i in range(len(r.drafts))]
    return GenerationResult(
        method=method, prompt_ids=prompt_ids, token_ids=out.tokens, text=model.decode(out.tokens),
        accept_lengths=out.accept_lengths, draft_confidences=conf, draft_accepted=accepted,
        draft_positions=positions, trace=trace, seconds=seconds, stop_reason=out.stop_reason,
    )
