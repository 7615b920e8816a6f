"""Autoregressive decoding and the speculative loop: propose -> verify -> accept -> compact.

Every speculative method runs the same round, starting from the root (the newest committed token):

1. **propose** a tree of candidate tokens below the root (`rounds.RoundSteps`, `tree.Layout`):
   * `kangaroo`, the paper's method: a chain of drafts from the shallow layers (< l) + adapter +
     the target's LM head (early exit #1), stopped once a draft's top-1 probability falls below
     `threshold` (eta, early exit #2: confidence < eta stops, a draft exactly at eta does not) or
     after `max_draft` (gamma) drafts;
   * `pld`, prompt lookup: the tokens that followed the latest earlier occurrence of the newest
     n-gram (`lookup.PromptLookup`), a chain drafted by no model at all;
   * `kangaroo-tree`: Kangaroo's dynamic draft tree, grown level by level with the shallow layers +
     adapter (one batched draft step per level), keeping the `top_k` best children per node by
     cumulative draft probability within `node_budget` nodes, up to depth `max_draft`;
   * `kangaroo+lookup`: the adapter's tree and the lookup branch in one tree.
2. **verify**: the deep layers (>= l) run once over every node's cached shallow state, under a
   mask that lets each node see the committed cache and its own ancestors: one target distribution
   per node. Layers < l never see a token twice.
3. **accept** (the rules live here, once, and the captured graphs use them): greedy keeps the
   deepest node whose whole path the target agrees with (`greedy_accept`); sampling walks down the
   tree with recursive rejection sampling over each node's children (`sample_accept`). Either way
   the target then adds one token of its own (a correction, or a bonus token).
4. **compact**: the accepted path's cache entries move to consecutive slots (a chain's already are);
   the rest of the round's entries are stale, masked out and later overwritten.

The output equals autoregressive decoding of the target: token for token when greedy, in
distribution when sampling.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from .accept import Sampler
from .adapter import Adapter, _check_fits
from .engine import cache_slots, sync
from .graphs import GraphOptions, ar_graph, captured_round_steps
from .rounds import RoundSteps
from .models import Model
from .options import DEFAULTS, EARLY_EXITS, DecodeOptions, check_sampling  # noqa: F401 (the public names)
from .proposers import (  # noqa: F401 (the method table's names, public here too)
    ADAPTER_METHODS,
    DEFAULT_METHOD,
    HEADLINE_METHOD,
    LOOKUP_METHODS,
    METHOD_DEFAULTS,
    METHODS,
    TREE_METHODS,
    Drafter,
    Method,
    method_layout,
    options_for,
)
from .proposers import method as method_row


@dataclass
class Round:
    """One verification: the candidates proposed, how many the target accepted and the target's own
    token that closed the round. For a chain (`kangaroo`, `pld`) the drafts are in order and the
    first `accepted` of them were accepted; a tree also gives each draft's parent and the path."""

    drafts: list[int]  # candidate tokens verified (the tree's valid nodes but the root), in node order
    confidences: list[float]  # per draft: its draft probability (nan for lookup tokens: no model drafted them)
    accepted: int  # drafts accepted
    token: int  # the target's own token after them
    parents: list[int] | None = None  # per draft: index in `drafts` of its parent, -1 the root; None: a chain
    path: list[int] | None = None  # indices in `drafts` of the accepted drafts, in order; None: a chain
    sources: list[str] | None = None  # per draft: "adapter" or "lookup"
    draft_steps: int = 0  # batched draft steps (adapter levels) run this round

    @property
    def accepted_indices(self) -> list[int]:
        return list(range(self.accepted)) if self.path is None else self.path

    @property
    def emitted(self) -> list[int]:
        return [self.drafts[i] for i in self.accepted_indices] + [self.token]


@dataclass
class GenerationResult:
    """What `generate` returns. Lists are per generated token, per round or per draft, as named."""

    method: str
    prompt_ids: list[int]
    token_ids: list[int]  # generated tokens (EOS included when generation stopped at it)
    text: str
    accept_lengths: list[int]  # per verification round: tokens emitted (accepted drafts + 1)
    draft_confidences: list[float]  # per draft: its draft probability (top-1 of the draft for the chain)
    draft_accepted: list[bool]  # per draft: accepted by the target?
    draft_positions: list[int]  # per draft: its depth in the round (1 = right after the root)
    trace: list[Round]  # per verification round (empty for "ar")
    seconds: float
    stop_reason: str  # "eos" or "length"
    syncs: int = 0  # host reads of device values after the prefill (AR: one per token)
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

    @property
    def syncs_per_round(self) -> float:
        """Host syncs per round (AR: per token)."""
        return self.syncs / max(1, self.rounds if self.trace else len(self.token_ids) - 1)

    @property
    def nodes_per_round(self) -> float:
        """Candidate tokens verified per round (a tree's valid nodes but the root)."""
        return sum(len(r.drafts) for r in self.trace) / max(1, len(self.trace))


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
    """The baseline: one full forward pass per token (a replayed CUDA graph when `graphs` is given).
    Returns the host syncs after the prefill: one per token (the EOS test)."""
    engine = model.engine
    logits = engine(torch.tensor([prompt], device=model.device), 0)[:, -1]  # prefill
    token = sampler.next_token(logits)  # (1,)
    if graphs is not None:
        graphs.start(token, len(prompt))
    pos, first, syncs = len(prompt), True, 0
    while True:
        token_id = token.item() if first or graphs is None else graphs.next_ar_token()  # host sync per token
        syncs += not first
        if out.emit([token_id], round_=not first):
            return syncs
        if graphs is None:
            token = sampler.next_token(engine(token.view(1, 1), pos)[:, -1])
        pos, first = pos + 1, False


def speculative(model: Model, steps, prompt: list[int], sampler: Sampler, out: _Output, max_draft: int) -> list[Round]:
    """The loop of every speculative method: propose -> verify -> accept -> compact, until EOS or the budget.

    `steps` (a `rounds.RoundSteps`, eager or captured) does the device work of a round."""
    engine, l = model.engine, steps.exit_layer
    h = engine.shallow(torch.tensor([prompt], device=model.device), 0, l)  # (1, n, D)
    if steps.drafter is not None:
        steps.drafter(h, 0)  # prefill the drafter's cache with the prompt's shallow states
    token = sampler.next_token(engine.deep(h, 0, l)[:, -1])  # (1,): the target's first token
    token_id = token.item()
    trace: list[Round] = []
    if out.emit([token_id], round_=False):
        return trace
    steps.start(prompt, token, token_id)
    while True:
        steps.propose_branch()  # host: the branch (the lookup's) from the committed tokens
        budget = min(max_draft, out.remaining - 1)  # a host-decided chain never drafts past max_new_tokens
        if sampler.greedy:
            d = steps.device_round(budget)  # draft -> verify -> greedy_accept -> compact, on the device
        else:
            d = steps.draft(budget)
            sample_round(steps, d, sampler)  # verify -> sample_accept (host) -> compact
        r = steps.read()  # the round's one host read
        trace.append(as_round(r, steps.layout, d, steps.sources()))
        if out.emit(r.emitted):
            return trace


def sample_round(steps, d: int, sampler: Sampler):
    """Verify the tree of a round with d levels drafted, accept on the host (`Sampler.accept`), commit."""
    n, buf = steps.layout.nodes(d), steps.buf
    p = sampler.probs(steps.verify(d))  # (n, V)
    host = torch.cat([buf.tokens[:n], buf.parents[:n], buf.valid[:n].long()]).tolist()  # host sync: the tree
    path, token, syncs = sampler.accept(
        host[:n], host[n : 2 * n], [bool(v) for v in host[2 * n :]], p, steps.q[:n] if steps.sampled else None
    )
    steps.syncs += 1 + syncs
    padded = torch.tensor(path + [0] * (steps.max_depth + 1 - len(path)), device=buf.base.device)
    steps.commit(padded, torch.tensor([len(path) - 1], device=buf.base.device), token, d)


def as_round(r, layout, draft_steps: int, sources: tuple[str, str]) -> Round:
    """A round as read from the device (`rounds.RoundRead`) -> the trace's `Round` (valid nodes only);
    sources: the names of (branch nodes, level nodes)."""
    keep = [i for i in range(1, len(r.tokens)) if r.valid[i]]
    where = {node: j for j, node in enumerate(keep)}
    chain = layout.is_chain
    return Round(
        drafts=[r.tokens[i] for i in keep],
        confidences=[r.prob[i] for i in keep],
        accepted=r.accepted,
        token=r.token,
        parents=None if chain else [where.get(r.parents[i], -1) for i in keep],
        path=None if chain else [where[i] for i in r.path[1:]],
        sources=[sources[0] if i <= layout.branch else sources[1] for i in keep],
        draft_steps=draft_steps,
    )


# ------------------------------------------------------------------------------------ entry
def generate(
    model: Model,
    prompt,
    adapter: Adapter | None = None,
    method: str = DEFAULT_METHOD,
    options: DecodeOptions | None = None,
    *,
    threshold: float | None = None,
    max_draft: int | None = None,
    max_new_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    top_k: int | None = None,
    node_budget: int | None = None,
    n_max: int | None = None,
    lookup_tokens: int | None = None,
    early_exit: str | None = None,
    chat: bool = True,
    cuda_graphs=None,
) -> GenerationResult:
    """Generate from `prompt` (text, chat messages or token ids) with `method` (see `METHODS`).

    Options: a whole `DecodeOptions`, else the method's defaults (`METHOD_DEFAULTS`); keyword
    arguments override either. Greedy when temperature == 0, else sampling; every method
    reproduces the target exactly. `ar` and `pld` need no adapter (one given is not used).
    cuda_graphs: replay captured CUDA graphs of the decoding steps: None (default) = on for greedy
    decoding on a GPU, True/False, or a `graphs.GraphOptions` (fixed rows, torch.compile). The first
    call for a new cache size or tree shape captures them (and compiles the layers once), which
    takes a moment."""
    opts = options_for(
        method,
        options,
        threshold=threshold,
        max_draft=max_draft,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        top_k=top_k,
        node_budget=node_budget,
        n_max=n_max,
        lookup_tokens=lookup_tokens,
        early_exit=early_exit,
    )
    row = method_row(method)
    if row.needs_adapter:
        if adapter is None:
            raise ValueError(
                f"method={method!r} needs an adapter: load_adapter(model) or new_adapter(model, exit_layer)"
            )
        _check_fits(adapter.meta, model, strict=False)
    else:
        adapter = None
    if row.tree and opts.node_budget > model.config.max_seq_len:
        raise ValueError(
            f"node_budget={opts.node_budget} is beyond the KV cache of this model's context "
            f"({model.config.max_seq_len} tokens); a round's tree must fit in it: lower node_budget"
        )
    layout = row.layout(opts)
    prompt_ids = model.encode(prompt, chat=chat)
    check_context(model, len(prompt_ids), opts.max_new_tokens, layout.size if layout else 0)
    reserve_caches(model, adapter, len(prompt_ids) + opts.max_new_tokens, layout.size if layout else 0)
    sampler = Sampler.from_options(opts, model.device)
    out = _Output(opts.max_new_tokens, model.eos_token_ids)
    steps = None if layout is None else _round_steps(model, adapter, row, layout, opts, sampler, cuda_graphs)
    graphs = _ar_graph(model, opts, cuda_graphs) if layout is None else None
    sync(model.device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        if steps is None:
            syncs = autoregressive(model, prompt_ids, sampler, out, graphs)
            trace = []
        else:
            trace = speculative(model, steps, prompt_ids, sampler, out, opts.max_draft)
            syncs = steps.syncs
    sync(model.device)
    seconds = time.perf_counter() - t0
    return _result(model, method, prompt_ids, out, trace, seconds, syncs)


def check_context(model: Model, prompt_len: int, max_new_tokens: int, tree_size: int):
    """A clear error when the prompt and the new tokens, or a round's tree, do not fit the model's context."""
    need = prompt_len + max_new_tokens  # the last new token is never fed back: this is enough
    limit = model.config.max_seq_len
    if need > limit:
        raise ValueError(
            f"the prompt ({prompt_len} tokens) plus max_new_tokens={max_new_tokens} exceeds the model's "
            f"context of {limit} tokens; shorten the prompt or lower max_new_tokens"
        )
    if tree_size > limit:
        raise ValueError(
            f"a round's tree of {tree_size} nodes (node_budget, lookup_tokens) is beyond the KV cache "
            f"of this model's context ({limit} tokens); lower node_budget or lookup_tokens"
        )


def reserve_caches(model: Model, drafter: Drafter | None, positions: int, tree_size: int):
    """Caches for `positions` committed positions (rounded up to whole blocks, so that similar requests
    reuse them; at most the context) plus scratch slots for a round's tree past them. A cache that is
    already large enough is kept (a benchmark reserves the largest first: one set of captured graphs)."""
    size = min(model.config.max_seq_len, cache_slots(positions))
    model.engine.setup_cache(size, scratch=cache_slots(tree_size))
    if drafter is not None:
        drafter.setup_cache(model.engine.cache_len)  # the same length: one set of captured shapes


def _use_graphs(model: Model, opts: DecodeOptions, wanted) -> bool:
    use = (model.device.type == "cuda" and opts.temperature == 0.0) if wanted is None else bool(wanted)
    if use and opts.temperature != 0.0:
        raise ValueError("cuda_graphs supports greedy decoding only (temperature 0); sampling runs eagerly")
    return use


def _ar_graph(model: Model, opts: DecodeOptions, wanted):
    """The captured AR step, when asked for (or by default on CUDA); None means eager."""
    if not _use_graphs(model, opts, wanted):
        return None
    options = wanted if isinstance(wanted, GraphOptions) else GraphOptions()
    with torch.inference_mode():
        return ar_graph(model, options.rows(opts.max_draft + 1), options)


def _round_steps(
    model: Model, drafter: Drafter | None, row: Method, layout, opts: DecodeOptions, sampler: Sampler, wanted
):
    """RoundSteps for a method's row of the table: captured (greedy on CUDA by default) or eager."""
    host_exit = opts.early_exit == "host"
    if _use_graphs(model, opts, wanted):
        options = wanted if isinstance(wanted, GraphOptions) else GraphOptions()
        with torch.inference_mode():
            steps = captured_round_steps(model, drafter, layout, host_exit, options)
    else:
        sampled = not sampler.greedy and layout.adapter_chain  # the chain samples its drafts from q
        steps = RoundSteps(model, drafter, layout, host_exit=host_exit, sampled=sampled)
    with torch.inference_mode():
        steps.reset(sampler, opts.threshold, row.branch_proposer(opts))
    return steps


def _result(
    model, method, prompt_ids, out: _Output, trace: list[Round], seconds: float, syncs: int
) -> GenerationResult:
    conf = [c for r in trace for c in r.confidences]
    accepted = [i in kept for r in trace for kept in [set(r.accepted_indices)] for i in range(len(r.drafts))]
    positions = [d for r in trace for d in _depths(r)]
    return GenerationResult(
        method=method,
        prompt_ids=prompt_ids,
        token_ids=out.tokens,
        text=model.decode(out.tokens),
        accept_lengths=out.accept_lengths,
        draft_confidences=conf,
        draft_accepted=accepted,
        draft_positions=positions,
        trace=trace,
        seconds=seconds,
        stop_reason=out.stop_reason,
        syncs=syncs,
    )


def _depths(r: Round) -> list[int]:
    """Each draft's depth in its round (1 = right below the root)."""
    if r.parents is None:
        return list(range(1, len(r.drafts) + 1))
    depths: list[int] = []
    for p in r.parents:
        depths.append(1 if p < 0 else depths[p] + 1)
    return depths
