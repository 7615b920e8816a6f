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

1. **propose**: the host fills the lookup branch (`lookup.PromptLookup`: no device work).
   `draft_level(t)` runs the shallow layers (< l) and the adapter over the nodes of level t (level
   0: the root and the lookup branch) and grows level t + 1 from their top-k children by cumulative
   draft log-probability. With the host deciding (the paper's chain) it reads each draft's
   confidence and stops below eta; on the device, every level is drafted and the levels after the
   best cumulative confidence fell below eta are masked out (never accepted), so a round needs no
   host read before its end.
2. **verify** (`verify(d)`): the shallow layers over the nodes that have no shallow state yet (the
   last level drafted), then the deep layers (>= l) over every node at once under the tree mask:
   one target distribution per node.
3. **accept**: `accept.greedy_accept` on the device (greedy), or `accept.sample_accept` on the
   host (sampling; not captured).
4. **compact**: the accepted path's cache entries (every layer, and the adapter's) move to
   consecutive slots (`tree.compaction`); the root advances past the accepted tokens. Chains skip this.

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
from .adapter import Adapter
from .engine import tree_window
from .lookup import PromptLookup
from .models import Model

NAN = float("nan")


class RoundSteps:
    """Static buffers and steps of speculative rounds for one (model, adapter, layout).

    adapter: None drafts nothing (prompt lookup alone); then the exit layer is 0 and verification
    is the whole model. lookup: (n_max, lookup_tokens) to propose a lookup branch, or None.
    host_exit: eta is tested on the host after each draft step (else: a device mask).
    sampled: the chain under sampling draws its drafts from q (else drafts are fixed candidates).
    rows: fixed rows R (see the module docstring), "pow2" (each step padded to a power of two), or None
    (natural row counts).
    call: how layer calls run (None: directly; graphs.py passes a compiled call); backend: the
    torch.compile backend that also fuses the glue between them (tree growth, the mask, acceptance,
    compaction: a hundred tiny kernels a round otherwise), or None.
    `reset(sampler, threshold)` prepares a generation; graphs.py may swap `levels`, `finish` and
    `whole` for captured graphs of the same functions."""

    def __init__(
        self,
        model: Model,
        adapter: Adapter | None,
        layout: T.Layout,
        lookup: tuple[int, int] | None = None,
        host_exit: bool = False,
        sampled: bool = False,
        rows: int | str | None = None,
        call=None,
        backend: str | None = None,
    ):
        e, dev = model.engine, model.device
        if isinstance(rows, int) and rows < layout.size:
            raise ValueError(f"fixed rows={rows} cannot hold a tree of {layout.size} nodes; use rows >= {layout.size}")
        self.model, self.adapter, self.layout = model, adapter, layout
        self.exit_layer = adapter.exit_layer if adapter is not None else 0
        self.lookup_settings, self.host_exit, self.sampled, self.rows, self.call = (
            lookup,
            host_exit,
            sampled,
            rows,
            call,
        )
        self.fuse = fuser(backend)
        self.chain = layout.adapter_chain  # eta per draft, not per level
        P, long = layout.size, dict(dtype=torch.long, device=dev)
        self.base = torch.zeros(1, **long)  # the root's position (= its cache slot)
        self.tokens = torch.zeros(P, **long)
        self.parents = torch.tensor(layout.static_parents(), **long)
        self.depths = torch.tensor(layout.depths(), **long)
        self.ancestors = T.ancestors_from_parents(layout.static_parents()).to(dev)  # deeper levels: set as they grow
        self.valid = torch.zeros(P, dtype=torch.bool, device=dev)
        self.cum = torch.zeros(P, dtype=torch.float32, device=dev)  # cumulative draft log-probability (root 0)
        self.prob = torch.full((P,), NAN, dtype=torch.float32, device=dev)  # each draft's own draft probability
        self.alive = torch.ones(1, dtype=torch.bool, device=dev)  # above eta so far (the device's early exit)
        self.log_eta = torch.zeros(1, device=dev)
        self.states = torch.zeros(1, P, e.config.dim, dtype=model.dtype, device=dev)  # shallow states by node
        self.eye = torch.eye(P, dtype=torch.bool, device=dev)
        self.blocks = [torch.tensor(list(layout.block(t)), **long) for t in range(len(layout.levels) + 1)]
        self.q = torch.zeros(P, model.config.vocab_size, device=dev) if sampled else None  # sampled chain: q rows
        self.max_depth = layout.depth
        self.out = torch.zeros(3 + (self.max_depth + 1) + 4 * P, dtype=torch.float64, device=dev)  # the one host read
        self.n_nodes = [
            torch.tensor([float(layout.nodes(d))], dtype=torch.float64, device=dev)
            for d in range(len(layout.levels) + 1)
        ]
        self.lookup_in = torch.zeros(2, layout.lookup, **long)  # (tokens, valid) of the lookup branch
        self.lookup_host = torch.zeros(2, layout.lookup, dtype=torch.long, pin_memory=dev.type == "cuda")
        self.all_nodes = [torch.arange(layout.nodes(d), **long) for d in range(len(layout.levels) + 1)]
        self.levels = [self._level_fn(t) for t in range(len(layout.levels))]  # draft_level(t)
        self.finish = [self._finish_fn(d) for d in range(len(layout.levels) + 1)]  # verify(d) -> accept -> compact
        self.whole = None  # graphs.py: every level, then finish[-1], as one captured graph (device early exit)
        self.sampler, self.threshold, self.lookup, self.syncs = None, 0.0, None, 0

    def reset(self, sampler, threshold: float):
        """Before a generation: its sampler and eta; no host syncs counted yet."""
        self.sampler, self.threshold, self.lookup, self.syncs = sampler, threshold, None, 0
        masked = threshold > 0 and not (self.host_exit and self.chain)
        self.log_eta.fill_(math.log(threshold) if masked else -math.inf)  # the host-tested chain masks nothing
        self.valid.zero_()
        self.valid[0] = True
        self.alive.fill_(True)

    def _level_fn(self, t: int):
        return lambda: self.draft_level(t)

    # ------------------------------------------------------------------------------ helpers
    def _pad(self, idx: torch.Tensor) -> torch.Tensor:
        """Row indices (n,) -> (R,): the last row repeated up to the fixed rows, or up to the next
        power of two (rows="pow2": a few compiled shapes serve every tree; extra rows cost almost nothing)."""
        n = idx.shape[0]
        R = (1 << (n - 1).bit_length()) if self.rows == "pow2" else (self.rows or n)
        return idx if R == n else torch.cat([idx, idx[-1:].expand(R - n)])

    def _window(self, idx: torch.Tensor):
        """engine.tree_window for nodes idx (R,)."""
        e = self.model.engine
        return self.fuse(node_window)(
            e.positions, e.rotary.cos, e.rotary.sin, self.base, idx, self.depths, self.ancestors
        )

    def _adapter(self, h, window):
        a = self.adapter
        return a(h, window) if self.call is None else self.call(a, h, window)

    def _shallow(self, idx: torch.Tensor):
        """Shallow layers over nodes idx (real rows): fill their states and the caches (< l, and the
        adapter's); return (h (1, R, D), window)."""
        rows = self._pad(idx)
        window = self._window(rows)
        with self._layers() as e:
            h = e.shallow(self.tokens[rows][None], window, self.exit_layer)  # (1, R, D)
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
        self.base.fill_(len(prompt))
        self.tokens[:1].copy_(token.view(1))
        if self.lookup_settings is not None:
            self.lookup = PromptLookup(prompt + [token_id], *self.lookup_settings)

    def propose_lookup(self):
        """The lookup branch from the committed tokens: host work, then one asynchronous copy into
        `lookup_in` (pinned memory on CUDA), which the round's first device step loads (`_load_lookup`).
        The previous round's copy is done: the round's host read waited for it."""
        if self.lookup is None:
            return
        cont = self.lookup.propose()[0][: self.layout.lookup]
        self.lookup_host.zero_()
        self.lookup_host[0, : len(cont)] = torch.tensor(cont, dtype=torch.long)
        self.lookup_host[1, : len(cont)] = 1
        self.lookup_in.copy_(self.lookup_host, non_blocking=True)

    def _load_lookup(self):
        if self.layout.lookup:
            L = self.layout.lookup
            self.tokens[1 : 1 + L].copy_(self.lookup_in[0])
            self.valid[1 : 1 + L].copy_(self.lookup_in[1].bool())

    def draft(self, budget: int) -> int:
        """Grow the adapter's levels; returns how many were drafted.

        Device early exit: every level (those past eta are masked). Host early exit: after each level
        read its confidence and stop below eta (the chain: the new draft's top-1 probability; a tree:
        the best cumulative probability of the new level), or at `budget` levels."""
        levels = len(self.levels)
        if not self.host_exit:
            for level in self.levels:
                level()
            return levels
        for t in range(min(levels, budget)):
            self.levels[t]()
            self.syncs += 1  # host sync, one per draft step: the paper's early exit
            if self.chain and self.prob[self.layout.block(t + 1)[0]].item() < self.threshold:
                return t + 1
            if not self.chain and not self.alive.item():
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
        """The round's one host read: what was accepted, the next token, the tree. Feeds the lookup index."""
        self.syncs += 1  # host sync, one per round: the accepted tokens (EOS test, the lookup index)
        r = unpack(self.out.tolist(), self.layout.size, self.max_depth)
        if self.lookup is not None:
            self.lookup.extend(r.emitted)
        return r

    # ------------------------------------------------------------------------------ device steps
    def draft_level(self, t: int):
        """Level t through the shallow layers and the adapter; grow level t + 1 from its top-k children."""
        if t == 0:
            self._load_lookup()
        idx = self.blocks[t]
        h, window = self._shallow(idx)
        if self.adapter is None:
            return
        a = self._adapter(h, window)  # (1, R, D); writes the adapter's cache for every row
        parents = idx[:1] if t == 0 else idx  # at level 0 only the root drafts (the lookup rows just fill caches)
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
            set_nodes(
                new,
                tok,
                parents,
                own,
                conf,
                self.tokens,
                self.parents,
                self.cum,
                self.prob,
                self.ancestors,
                self.eye,
                self.valid,
                self.alive,
                self.log_eta,
            )
        else:
            self.fuse(grow_children)(
                logits,
                parents,
                new,
                min(self.layout.top_k, logits.shape[-1]),
                self.tokens,
                self.parents,
                self.cum,
                self.prob,
                self.ancestors,
                self.eye,
                self.valid,
                self.alive,
                self.log_eta,
            )

    def verify(self, d: int) -> torch.Tensor:
        """Target logits (n, V) at the first n = layout.nodes(d) nodes: shallow over level d (its states
        are missing; level 0 = the root and the lookup branch), deep over all n at once."""
        n = self.layout.nodes(d)
        if d == 0:
            self._load_lookup()  # no level drafted: nothing loaded it yet
        h, window = self._shallow(self.blocks[d])
        if self.adapter is not None:
            self.adapter.write_kv(h, window)  # the adapter's cache must cover whatever gets accepted
        nodes = self._pad(self.all_nodes[d])
        with self._layers() as e:
            return e.deep(self.states[:, nodes], self._window(nodes), self.exit_layer)[0, :n]  # (n, V)

    def _finish_fn(self, d: int):
        def finish():  # greedy: verify -> accept -> compact -> advance -> pack, all on the device
            logits = self.verify(d)
            self.fuse(accept_and_commit)(
                logits, self.layout.nodes(d), self.max_depth, not self.layout.is_chain, *self._state(d)
            )

        return finish

    def _state(self, d: int) -> tuple:
        stores = [self.model.engine.kv.k, self.model.engine.kv.v]
        if self.adapter is not None and self.adapter.kv is not None:
            stores += [self.adapter.kv.k, self.adapter.kv.v]
        return (
            self.tokens,
            self.parents,
            self.depths,
            self.ancestors,
            self.valid,
            self.prob,
            self.alive,
            self.base,
            self.out,
            self.n_nodes[d],
            stores,
        )

    def commit(self, path: torch.Tensor, n_acc: torch.Tensor, token: torch.Tensor, d: int):
        """After acceptance (path (max_depth + 1,), n_acc (1,), token (1,); d levels drafted): pack the
        round for the host, compact the caches, advance the root (`commit_round`)."""
        commit_round(path, n_acc, token, self.layout.nodes(d), not self.layout.is_chain, *self._state(d))


# ---------------------------------------------------------------------------------- the glue, fusable
def fuser(backend: str | None):
    """fn -> fn compiled with `backend` (one compiled version per function and shapes), or fn itself."""
    if backend is None:
        return lambda fn: fn

    def fuse(fn):
        key = (fn, backend)
        if key not in _FUSED:
            _FUSED[key] = torch.compile(fn, backend=backend, fullgraph=True, dynamic=False)
        return _FUSED[key]

    return fuse


_FUSED: dict = {}


def node_window(all_slots, cos, sin, base, nodes, depths, ancestors):
    """`engine.tree_window` for nodes (R,) of the round's tree (depths (P,), ancestors (P, P) of all nodes)."""
    return tree_window(all_slots, cos, sin, base, nodes, depths[nodes], ancestors[nodes])


def grow_children(logits, parents, new, k: int, tokens, parent_of, cum, prob, ancestors, eye, valid, alive, log_eta):
    """Nodes `new` (w,): the w best children of `parents` (n,) by cumulative draft log-probability, each
    parent offering its top k; logits (n, V) are the draft's at the parents."""
    logp = torch.log_softmax(logits.float(), -1)  # (n, V)
    top, ids = logp.topk(k, dim=-1)  # (n, k)
    cand = cum[parents][:, None] + top  # (n, k): cumulative log-probability of each child
    best = cand.flatten().topk(new.shape[0]).indices  # (w,)
    own = top.flatten()[best]
    set_nodes(
        new,
        ids.flatten()[best],
        parents[best // k],
        own,
        own.exp(),
        tokens,
        parent_of,
        cum,
        prob,
        ancestors,
        eye,
        valid,
        alive,
        log_eta,
    )


def set_nodes(new, tok, par, own, conf, tokens, parent_of, cum, prob, ancestors, eye, valid, alive, log_eta):
    """Write nodes `new`: token, parent, cumulative log-probability (parent's + own), confidence, ancestors,
    valid (only while the tree is above eta); then update `alive` with this level's best."""
    tokens.index_copy_(0, new, tok)
    parent_of.index_copy_(0, new, par)
    cum.index_copy_(0, new, cum[par] + own)
    prob.index_copy_(0, new, conf)
    ancestors.index_copy_(0, new, ancestors[par] | eye[new])
    valid.index_copy_(0, new, alive.repeat(new.shape[0]))  # drafted after the early exit: masked
    alive &= cum[new].amax().view(1) >= log_eta


def accept_and_commit(
    logits,
    n: int,
    max_depth: int,
    compact: bool,
    tokens,
    parents,
    depths,
    ancestors,
    valid,
    prob,
    alive,
    base,
    out,
    n_nodes,
    stores,
):
    """`accept.greedy_accept` over the first n nodes, then `commit_round`."""
    tree = T.Tree(tokens[:n], parents[:n], depths[:n], ancestors[:n, :n], valid[:n])
    acc = greedy_accept(tree, logits, max_depth)
    commit_round(
        acc.path,
        acc.n,
        acc.token,
        n,
        compact,
        tokens,
        parents,
        depths,
        ancestors,
        valid,
        prob,
        alive,
        base,
        out,
        n_nodes,
        stores,
    )


def commit_round(
    path,
    n_acc,
    token,
    n: int,
    compact: bool,
    tokens,
    parents,
    depths,
    ancestors,
    valid,
    prob,
    alive,
    base,
    out,
    n_nodes,
    stores,
):
    """Pack the round for the host's one read (float64 holds token ids exactly), move the accepted
    path's cache entries to consecutive slots in every store (`tree.compaction`; not for a chain),
    advance the root past the accepted drafts and reset the tree's per-round state."""
    live = valid.clone()
    live[n:] = False
    out.copy_(
        torch.cat(
            [
                n_acc.double(),
                token.double(),
                n_nodes,
                path.double(),
                tokens.double(),
                parents.double(),
                live.double(),
                prob.double(),
            ]
        )
    )
    if compact:
        src, dst = T.compaction(path, base)
        for store in stores:  # (layers, B, H, S, hd): slots on dim 3
            store.index_copy_(3, dst, store.index_select(3, src))
    base.add_(n_acc + 1)
    tokens[:1].copy_(token)
    valid[1:].zero_()
    alive.fill_(True)


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
    """The packed round (see RoundSteps.pack) -> RoundRead."""
    n_acc, token, n = int(out[0]), int(out[1]), int(out[2])
    o = 3
    path = [int(x) for x in out[o : o + max_depth + 1]][: n_acc + 1]
    o += max_depth + 1
    tokens = [int(x) for x in out[o : o + n]]
    parents = [int(x) for x in out[o + P : o + P + n]]
    valid = [x > 0.5 for x in out[o + 2 * P : o + 2 * P + n]]
    return RoundRead(n_acc, token, path, tokens, parents, valid, out[o + 3 * P : o + 3 * P + n])
