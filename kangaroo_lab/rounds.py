"""The device work of speculative rounds, in static shapes: propose -> verify -> accept -> compact.

One `RoundSteps` serves every speculative method; they differ in the tree they propose
(`tree.Layout`) and in where the draft's early exit is decided:

| method            | exit layer | tree                                           | eta (early exit #2)             |
|-------------------|------------|------------------------------------------------|---------------------------------|
| `kangaroo`        | l          | a chain of adapter drafts                      | on the host, after each draft   |
| `pld`             | 0 (none)   | the lookup branch (a chain)                    | -                               |
| `kangaroo-tree`   | l          | adapter levels, top-k children per node        | on the device, as a mask        |
| `kangaroo+lookup` | l          | the lookup branch + adapter levels             | on the device, as a mask        |

(the early exit's place is each method's default; `early_exit` moves it). The chain tests each
draft's own top-1 probability, as the paper does; a tree tests its newest level's best cumulative
probability.

A round, from the root (the newest committed token) at position `base`:

1. **propose** (`proposers.py`): the host fills the branch (the lookup branch: no device work).
   `draft_level(t)` runs the shallow layers (< l) and the drafter (the adapter) over the nodes of
   level t (level 0: the root and the branch) and grows level t + 1 from their top-k children by
   cumulative draft log-probability (`grow_children`). With the host deciding (the paper's chain) it reads each draft's
   confidence and stops below eta; on the device, every level is drafted and the levels after the
   best cumulative confidence fell below eta are masked out (never accepted), so a round needs no
   host read before its end.
2. **verify** (`verify(d)`): the shallow layers over the nodes that have no shallow state yet (the
   last level drafted), then the deep layers (>= l) over every node at once under the tree mask:
   one target distribution per node.
3. **accept**: `accept.greedy_accept` on the device (greedy), or `accept.sample_accept` on the
   host (sampling; not captured).
4. **compact**: the accepted path's cache entries (every layer, and the adapter's) move to
   consecutive slots: `tree.compaction` says which, `Transformer.compact` and `Adapter.compact` move
   them, `commit_round` calls both. The root advances past the accepted tokens. Chains skip this.

Greedy rounds on CUDA replay captured graphs of these steps (`graphs.py`): one replay per round for
the tree methods and `pld`, one per draft plus one for the chain; then the round's one host read
(`read`): the accepted tokens, the next token and the tree, packed in one tensor.

Fixed rows (`rows=R`, `graphs.GraphOptions(fixed_rows=...)`): every step runs over R rows, the
real ones then copies of the last (same token, slot and position: identical cache writes), so
that every matrix multiply has the same shape as the autoregressive step over R rows and bf16
outputs match bit for bit.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from . import tree as T
from .accept import greedy_accept
from .engine import tree_window
from .models import Model
from .options import below_eta
from .proposers import ADAPTER, Drafter

NAN = float("nan")


@dataclass
class RoundBuffers:
    """A round's tree on the device: static buffers of P nodes (`tree.Layout`), reused every round.

    Per node: token, parent (-1: the root; deeper adapter nodes get theirs as the tree grows), depth,
    ancestors (P, P) bool (itself included), valid (verified but never accepted when False),
    cumulative draft log-probability `cum` (root 0) and each draft's own probability `prob` (nan:
    the root, branch nodes). Per round: the root's position `base` (1,) (= its cache slot), `alive`
    (1,) (the tree still above eta: the device's early exit), `log_eta` (1,), and `out`, the round
    packed for the host's one read. `caches`: what compaction moves (the engine, the drafter)."""

    base: torch.Tensor
    tokens: torch.Tensor
    parents: torch.Tensor
    depths: torch.Tensor
    ancestors: torch.Tensor
    valid: torch.Tensor
    cum: torch.Tensor
    prob: torch.Tensor
    alive: torch.Tensor
    log_eta: torch.Tensor
    eye: torch.Tensor
    out: torch.Tensor
    caches: list

    @classmethod
    def new(cls, layout: T.Layout, device: torch.device, caches: list) -> "RoundBuffers":
        P, long = layout.size, dict(dtype=torch.long, device=device)
        f32 = dict(dtype=torch.float32, device=device)
        return cls(
            base=torch.zeros(1, **long),
            tokens=torch.zeros(P, **long),
            parents=torch.tensor(layout.static_parents(), **long),
            depths=torch.tensor(layout.depths(), **long),
            ancestors=T.ancestors_from_parents(layout.static_parents()).to(device),  # deeper levels: set as they grow
            valid=torch.zeros(P, dtype=torch.bool, device=device),
            cum=torch.zeros(P, **f32),
            prob=torch.full((P,), NAN, **f32),
            alive=torch.ones(1, dtype=torch.bool, device=device),
            log_eta=torch.zeros(1, **f32),
            eye=torch.eye(P, dtype=torch.bool, device=device),
            out=torch.zeros(3 + (layout.depth + 1) + 4 * P, dtype=torch.float64, device=device),  # the one host read
            caches=caches,
        )

    def tree(self, n: int) -> T.Tree:
        """The first n nodes as a `tree.Tree` (views)."""
        return T.Tree(self.tokens[:n], self.parents[:n], self.depths[:n], self.ancestors[:n, :n], self.valid[:n])


class RoundSteps:
    """Static buffers and steps of speculative rounds for one (model, drafter, layout).

    drafter: what drafts the levels (the adapter; `proposers.Drafter`), or None: nothing is drafted
    (the branch alone, e.g. prompt lookup); then the exit layer is 0 and verification is the whole
    model. The branch's tokens come from a host proposer given to `reset` (per generation).
    host_exit: eta is tested on the host after each draft step (else: a device mask).
    sampled: the chain under sampling draws its drafts from q (else drafts are fixed candidates).
    rows: fixed rows R (see the module docstring), "pow2" (each step padded to a power of two), or None
    (natural row counts).
    call: how layer calls run (None: directly; graphs.py passes a compiled call); backend: the
    torch.compile backend that also fuses the glue between them (tree growth, the mask, acceptance,
    compaction: a hundred tiny kernels a round otherwise), or None.
    `reset(sampler, threshold, branch)` prepares a generation; graphs.py may swap `levels`, `finish`
    and `whole` for captured graphs of the same functions."""

    def __init__(
        self,
        model: Model,
        drafter: Drafter | None,
        layout: T.Layout,
        host_exit: bool = False,
        sampled: bool = False,
        rows: int | str | None = None,
        call=None,
        backend: str | None = None,
    ):
        e, dev = model.engine, model.device
        if isinstance(rows, int) and rows < layout.size:
            raise ValueError(f"fixed rows={rows} cannot hold a tree of {layout.size} nodes; use rows >= {layout.size}")
        self.model, self.drafter, self.layout = model, drafter, layout
        self.exit_layer = drafter.exit_layer if drafter is not None else 0
        self.host_exit, self.sampled, self.rows, self.call = host_exit, sampled, rows, call
        self.fuse = fuser(backend)
        self.chain = layout.adapter_chain  # eta per draft, not per level
        P, long = layout.size, dict(dtype=torch.long, device=dev)
        self.buf = RoundBuffers.new(layout, dev, [e] if drafter is None else [e, drafter])
        self.states = torch.zeros(1, P, e.config.dim, dtype=model.dtype, device=dev)  # shallow states by node
        self.blocks = [torch.tensor(list(layout.block(t)), **long) for t in range(len(layout.levels) + 1)]
        self.q = torch.zeros(P, model.config.vocab_size, device=dev) if sampled else None  # sampled chain: q rows
        self.max_depth = layout.depth
        self.n_nodes = [
            torch.tensor([float(layout.nodes(d))], dtype=torch.float64, device=dev)
            for d in range(len(layout.levels) + 1)
        ]
        self.branch_in = torch.zeros(2, layout.branch, **long)  # (tokens, valid) of the branch
        self.branch_host = torch.zeros(2, layout.branch, dtype=torch.long, pin_memory=dev.type == "cuda")
        self.all_nodes = [torch.arange(layout.nodes(d), **long) for d in range(len(layout.levels) + 1)]
        self.levels = [self._level_fn(t) for t in range(len(layout.levels))]  # draft_level(t)
        self.finish = [self._finish_fn(d) for d in range(len(layout.levels) + 1)]  # verify(d) -> accept -> compact
        self.whole = None  # graphs.py: every level, then finish[-1], as one captured graph (device early exit)
        self.sampler, self.threshold, self.branch, self.syncs = None, 0.0, None, 0

    def reset(self, sampler, threshold: float, branch=None):
        """Before a generation: its sampler, eta and branch proposer (`proposers.LookupBranch`, or None
        when the layout has no branch); no host syncs counted yet."""
        if (branch is None) != (self.layout.branch == 0):
            raise ValueError(f"a layout with a branch of {self.layout.branch} nodes needs a branch proposer")
        self.sampler, self.threshold, self.branch, self.syncs = sampler, threshold, branch, 0
        masked = threshold > 0 and not (self.host_exit and self.chain)
        self.buf.log_eta.fill_(math.log(threshold) if masked else -math.inf)  # the host-tested chain masks nothing
        self.buf.valid.zero_()
        self.buf.valid[0] = True
        self.buf.alive.fill_(True)

    def _level_fn(self, t: int):
        return lambda: self.draft_level(t)

    # ------------------------------------------------------------------------------ helpers
    def _pad(self, idx: torch.Tensor) -> torch.Tensor:
        """Row indices (n,) -> (R,): the last row repeated up to the fixed rows, or up to the next
        power of two (rows="pow2": a few compiled shapes serve every tree; extra rows cost almost nothing)."""
        n = idx.shape[0]
        R = T.pow2(n) if self.rows == "pow2" else (self.rows or n)
        return idx if R == n else torch.cat([idx, idx[-1:].expand(R - n)])

    def _window(self, idx: torch.Tensor):
        """engine.tree_window for nodes idx (R,)."""
        e, b = self.model.engine, self.buf
        return self.fuse(node_window)(e.positions, e.rotary.cos, e.rotary.sin, b.base, idx, b.depths, b.ancestors)

    def _drafter(self, h, window):
        d = self.drafter
        return d(h, window) if self.call is None else self.call(d, h, window)

    def _shallow(self, idx: torch.Tensor):
        """Shallow layers over nodes idx (real rows): fill their states and the caches (< l, and the
        drafter's); return (h (1, R, D), window)."""
        rows = self._pad(idx)
        window = self._window(rows)
        with self._layers() as e:
            h = e.shallow(self.buf.tokens[rows][None], window, self.exit_layer)  # (1, R, D)
        self.states.index_copy_(1, idx, h[:, : idx.shape[0]])
        return h, window

    @contextmanager
    def _layers(self):
        """The engine, its layers called through `self.call` (compiled) meanwhile."""
        e = self.model.engine
        prev, e.call = e.call, self.call
        try:
            yield e
        finally:
            e.call = prev

    # ------------------------------------------------------------------------------ the host side
    def start(self, prompt: list[int], token: torch.Tensor, token_id: int):
        """Before the first round: the root is the first generated token (`token` on the device,
        `token_id` read already), at position len(prompt)."""
        self.buf.base.fill_(len(prompt))
        self.buf.tokens[:1].copy_(token.view(1))
        if self.branch is not None:
            self.branch.start(prompt + [token_id])

    def propose_branch(self):
        """The branch from the committed tokens: host work, then one asynchronous copy into
        `branch_in` (pinned memory on CUDA), which the round's first device step loads (`_load_branch`).
        The previous round's copy is done: the round's host read waited for it."""
        if self.branch is None:
            return
        cont = self.branch.propose()[: self.layout.branch]
        self.branch_host.zero_()
        self.branch_host[0, : len(cont)] = torch.tensor(cont, dtype=torch.long)
        self.branch_host[1, : len(cont)] = 1
        self.branch_in.copy_(self.branch_host, non_blocking=True)

    def _load_branch(self):
        if self.layout.branch:
            L = self.layout.branch
            self.buf.tokens[1 : 1 + L].copy_(self.branch_in[0])
            self.buf.valid[1 : 1 + L].copy_(self.branch_in[1].bool())

    def draft(self, budget: int) -> int:
        """Grow the drafter's levels; returns how many were drafted.

        Device early exit: every level (those past eta are masked). Host early exit: after each level
        read its confidence and stop below eta (the chain: the new draft's top-1 probability; a tree:
        the best cumulative probability of the new level, which `set_nodes` folds into `alive`), or at
        `budget` levels."""
        levels = len(self.levels)
        if not self.host_exit:
            for level in self.levels:
                level()
            return levels
        for t in range(min(levels, budget)):
            self.levels[t]()
            self.syncs += 1  # host sync, one per draft step: the paper's early exit
            if self.chain and below_eta(self.buf.prob[self.layout.block(t + 1)[0]].item(), self.threshold):
                return t + 1
            if not self.chain and not self.buf.alive.item():
                return t + 1
        return min(levels, budget)

    def device_round(self, budget: int) -> int:
        """A greedy round's device work (no host read but the early exit's): returns the levels drafted."""
        if self.whole is not None:
            self.whole()
            return len(self.levels)
        d = self.draft(budget)
        self.finish[d]()
        return d

    def read(self) -> "RoundRead":
        """The round's one host read: what was accepted, the next token, the tree. Feeds the branch proposer."""
        self.syncs += 1  # host sync, one per round: the accepted tokens (EOS test, the branch proposer)
        r = unpack(self.buf.out.tolist(), self.layout.size, self.max_depth)
        if self.branch is not None:
            self.branch.extend(r.emitted)
        return r

    def sources(self) -> tuple[str, str]:
        """The trace's names for (branch nodes, level nodes)."""
        return (self.branch.source if self.branch is not None else "", ADAPTER)

    # ------------------------------------------------------------------------------ device steps
    def draft_level(self, t: int):
        """Level t through the shallow layers and the drafter; grow level t + 1 from its top-k children."""
        if t == 0:
            self._load_branch()
        idx = self.blocks[t]
        h, window = self._shallow(idx)
        if self.drafter is None:
            return
        a = self._drafter(h, window)  # (1, R, D); writes the drafter's cache for every row
        parents = idx[:1] if t == 0 else idx  # at level 0 only the root drafts (the branch rows just fill caches)
        logits = self.model.engine.lm_head(a[0, : parents.shape[0]])  # (n, V): the target's frozen head
        self._grow(t + 1, parents, logits)

    def _grow(self, level: int, parents: torch.Tensor, logits: torch.Tensor):
        """Level `level`'s nodes from the draft logits (n, V) of `parents` (n,)."""
        new = self.blocks[level]
        if self.sampled:  # the chain under sampling: draw the draft from q, keep q for the acceptance rule
            q = self.sampler.probs(logits)  # (1, V)
            self.q.index_copy_(0, new, q)
            logp = torch.log_softmax(logits.float(), -1)
            tok = self.sampler.draw(q)  # (1,)
            own = logp.gather(-1, tok[:, None])[:, 0]
            conf = logp.exp().amax(-1)  # the draft's top-1 probability, the chain's confidence at any temperature
            set_nodes(self.buf, new, tok, parents, own, conf)
        else:
            self.fuse(grow_children)(self.buf, logits, parents, new, min(self.layout.top_k, logits.shape[-1]))

    def verify(self, d: int) -> torch.Tensor:
        """Target logits (n, V) at the first n = layout.nodes(d) nodes: shallow over level d (its states
        are missing; level 0 = the root and the branch), deep over all n at once."""
        n = self.layout.nodes(d)
        if d == 0:
            self._load_branch()  # no level drafted: nothing loaded it yet
        h, window = self._shallow(self.blocks[d])
        if self.drafter is not None:
            self.drafter.write_kv(h, window)  # the drafter's cache must cover whatever gets accepted
        nodes = self._pad(self.all_nodes[d])
        with self._layers() as e:
            return e.deep(self.states[:, nodes], self._window(nodes), self.exit_layer)[0, :n]  # (n, V)

    def _finish_fn(self, d: int):
        def finish():  # greedy: verify -> accept -> compact -> advance -> pack, all on the device
            logits = self.verify(d)
            self.fuse(accept_and_commit)(
                self.buf, logits, self.layout.nodes(d), self.max_depth, not self.layout.is_chain, self.n_nodes[d]
            )

        return finish

    def commit(self, path: torch.Tensor, n_acc: torch.Tensor, token: torch.Tensor, d: int):
        """After acceptance (path (max_depth + 1,), n_acc (1,), token (1,); d levels drafted): pack the
        round for the host, compact the caches, advance the root (`commit_round`)."""
        commit_round(self.buf, path, n_acc, token, self.layout.nodes(d), not self.layout.is_chain, self.n_nodes[d])


# ---------------------------------------------------------------------------------- the glue, fusable
def fuser(backend: str | None):
    """fn -> fn compiled with `backend` (`compiled`), or fn itself when backend is None."""
    return (lambda fn: fn) if backend is None else (lambda fn: compiled(fn, backend))


def compiled(fn, backend: str):
    """`torch.compile(fn)` (whole graph, static shapes), made once per (fn, backend) in this process and
    shared by every caller: the one compile cache (the round's glue here, the layer calls in graphs.py)."""
    key = (fn, backend)
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(fn, backend=backend, fullgraph=True, dynamic=False)
    return _COMPILED[key]


_COMPILED: dict = {}


def node_window(all_slots, cos, sin, base, nodes, depths, ancestors):
    """`engine.tree_window` for nodes (R,) of the round's tree (depths (P,), ancestors (P, P) of all nodes)."""
    return tree_window(all_slots, cos, sin, base, nodes, depths[nodes], ancestors[nodes])


def grow_children(buf: RoundBuffers, logits, parents, new, k: int):
    """Nodes `new` (w,): the w best children of `parents` (n,) by cumulative draft log-probability (the
    path's, not the child's own), each parent offering its top k; logits (n, V) are the draft's at the parents."""
    logp = torch.log_softmax(logits.float(), -1)  # (n, V)
    top, ids = logp.topk(k, dim=-1)  # (n, k)
    cand = buf.cum[parents][:, None] + top  # (n, k): cumulative log-probability of each child
    best = cand.flatten().topk(new.shape[0]).indices  # (w,): the w best, best first
    own = top.flatten()[best]
    set_nodes(buf, new, ids.flatten()[best], parents[best // k], own, own.exp())


def set_nodes(buf: RoundBuffers, new, tok, par, own, conf):
    """Write nodes `new`: token, parent, cumulative log-probability (parent's + own), confidence, ancestors,
    valid (only while the tree is above eta); then update `alive` with this level's best."""
    buf.tokens.index_copy_(0, new, tok)
    buf.parents.index_copy_(0, new, par)
    buf.cum.index_copy_(0, new, buf.cum[par] + own)
    buf.prob.index_copy_(0, new, conf)
    buf.ancestors.index_copy_(0, new, buf.ancestors[par] | buf.eye[new])
    buf.valid.index_copy_(0, new, buf.alive.repeat(new.shape[0]))  # drafted after the early exit: masked
    buf.alive &= ~below_eta(buf.cum[new].amax().view(1), buf.log_eta)  # eta's rule in log space


def accept_and_commit(buf: RoundBuffers, logits, n: int, max_depth: int, compact: bool, n_nodes):
    """`accept.greedy_accept` over the first n nodes, then `commit_round`."""
    acc = greedy_accept(buf.tree(n), logits, max_depth)
    commit_round(buf, acc.path, acc.n, acc.token, n, compact, n_nodes)


def commit_round(buf: RoundBuffers, path, n_acc, token, n: int, compact: bool, n_nodes):
    """Pack the round for the host's one read (float64 holds token ids exactly), move the accepted
    path's cache entries to consecutive slots (`tree.compaction`; every cache in `buf.caches`; not for
    a chain), advance the root past the accepted drafts and reset the tree's per-round state."""
    live = buf.valid.clone()
    live[n:] = False
    parts = [n_acc, token, n_nodes, path, buf.tokens, buf.parents, live, buf.prob]
    buf.out.copy_(torch.cat([x.double() for x in parts]))
    if compact:
        src, dst = T.compaction(path, buf.base)
        for cache in buf.caches:  # the engine's layers, the drafter's own cache
            cache.compact(src, dst)
    buf.base.add_(n_acc + 1)
    buf.tokens[:1].copy_(token)
    buf.valid[1:].zero_()
    buf.alive.fill_(True)


@dataclass
class RoundRead:
    """One round as the host reads it (drafts are the tree's nodes but the root, in node order)."""

    accepted: int  # drafts accepted
    token: int  # the target's own token closing the round
    path: list[int]  # node indices of the accepted path, root first
    tokens: list[int]  # per node of the verified tree (root first)
    parents: list[int]
    valid: list[bool]
    prob: list[float]  # per node: its draft probability (nan: the root, lookup nodes)

    @property
    def emitted(self) -> list[int]:
        return [self.tokens[i] for i in self.path[1:]] + [self.token]


def unpack(out: list[float], P: int, max_depth: int) -> RoundRead:
    """The packed round (see `commit_round`) -> RoundRead."""
    n_acc, token, n = int(out[0]), int(out[1]), int(out[2])
    o = 3
    path = [int(x) for x in out[o : o + max_depth + 1]][: n_acc + 1]
    o += max_depth + 1
    tokens = [int(x) for x in out[o : o + n]]
    parents = [int(x) for x in out[o + P : o + P + n]]
    valid = [x > 0.5 for x in out[o + 2 * P : o + 2 * P + n]]
    return RoundRead(n_acc, token, path, tokens, parents, valid, out[o + 3 * P : o + 3 * P + n])
