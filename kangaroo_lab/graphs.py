"""Greedy decoding steps with fixed shapes, captured as CUDA graphs.

A one-token step of a small model is hundreds of tiny kernels; launched one by one from Python,
the launches cost more than the arithmetic. Here each step reads and writes static buffers
(positions, tokens, shallow states, drafts) so that its shapes never change, and is captured once
as a CUDA graph and then replayed:

* `draft_step`:  shallow(token) -> adapter -> LM head -> (confidence, draft). The draft becomes the
  next step's input token and its shallow state goes to `states[slot]`, all on the device.
* `verify[k]`:   shallow(last draft) + deep over `states[:k+1]` -> greedy acceptance -> `out` =
  (accepted drafts, next token); the next token becomes the next round's first input.
* `ar_step`:     one full step, for the autoregressive baseline.

Attention then spans the whole static cache under a mask (`engine.cache_window` with a position
tensor). On a CPU the same functions simply run eagerly, which is how the tests check them.
"""

from __future__ import annotations

import torch

from .adapter import Adapter
from .models import Model


class Captured:
    """A function over static buffers, replayed as one CUDA graph (called directly off CUDA)."""

    def __init__(self, fn, device: torch.device, pool=None):
        self.fn, self.graph = fn, None
        if device.type == "cuda":
            stream = torch.cuda.Stream(device)
            stream.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(stream):
                fn()  # warm-up: allocator, cuBLAS workspaces (writes land in buffers reset later)
            torch.cuda.current_stream(device).wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, pool=pool):
                fn()

    def __call__(self):
        if self.graph is None:
            self.fn()
        else:
            self.graph.replay()


class GreedyGraphs:
    """Static buffers and captured greedy steps for one (model, adapter, max_draft, cache size)."""

    def __init__(self, model: Model, adapter: Adapter | None, max_draft: int):
        e, dev = model.engine, model.device
        self.model, self.adapter, self.max_draft = model, adapter, max_draft
        long = dict(dtype=torch.long, device=dev)
        self.token = torch.zeros(1, 1, **long)  # the next input token
        self.pos = torch.zeros(1, **long)  # draft step position
        self.slot = torch.zeros(1, **long)  # draft step index within the round
        self.round_pos = torch.zeros(1, **long)  # position of the round's first token
        self.drafts = torch.zeros(max_draft + 1, **long)
        self.states = torch.zeros(1, max_draft + 1, e.config.dim, dtype=model.dtype, device=dev)
        self.confidence = torch.zeros(1, dtype=torch.float32, device=dev)
        self.out = torch.zeros(2, **long)  # (accepted drafts, next token)
        pool = torch.cuda.graph_pool_handle() if dev.type == "cuda" else None
        with torch.inference_mode():  # AR needs the full step only; Kangaroo the draft and verify steps
            if adapter is None:
                self.ar_step = Captured(self._ar_step, dev, pool)
            else:
                self.draft_step = Captured(self._draft_step, dev, pool)
                self.verify = [Captured(self._verify_fn(k), dev, pool) for k in range(max_draft + 1)]

    def _ar_step(self):
        logits = self.model.engine(self.token, self.pos)[:, -1]  # (1, V)
        nxt = logits.argmax(-1)
        self.out[1:].copy_(nxt)
        self.token.copy_(nxt.view(1, 1))
        self.pos.add_(1)

    def _draft_step(self):
        e, l = self.model.engine, self.adapter.exit_layer
        h = e.shallow(self.token, self.pos, l)  # (1, 1, D)
        self.states.index_copy_(1, self.slot, h)
        conf, draft = torch.softmax(e.lm_head(self.adapter(h, self.pos)[:, -1]).float(), -1).max(-1)  # (1,)
        self.drafts.index_copy_(0, self.slot, draft)
        self.confidence.copy_(conf)
        self.token.copy_(draft.view(1, 1))
        self.pos.add_(1)
        self.slot.add_(1)

    def _verify_fn(self, k: int):
        offsets = torch.arange(k + 1, device=self.token.device)

        def verify():
            e, l = self.model.engine, self.adapter.exit_layer
            last = self.round_pos + k  # (1,): the last draft's position
            h = e.shallow(self.token, last, l)  # (1, 1, D)
            self.states[:, k:k + 1].copy_(h)
            self.adapter.write_kv(h, last)
            target = e.deep(self.states[:, :k + 1], self.round_pos + offsets, l)[0].argmax(-1)  # (k+1,)
            n = (target[:k] == self.drafts[:k]).long().cumprod(0).sum().view(1)  # accepted drafts
            nxt = target.gather(0, n)  # indexing with a 0-dim tensor would sync (and break capture)
            self.out.copy_(torch.cat([n, nxt]))
            self.token.copy_(nxt.view(1, 1))
        return verify

    # ------------------------------------------------------------------ the host side of a round
    def start(self, token: torch.Tensor, pos: int):
        self.token.copy_(token.view(1, 1))
        self.pos.fill_(pos)

    def draft(self, pos: int, budget: int, threshold: float) -> list[float]:
        self.pos.fill_(pos)
        self.round_pos.fill_(pos)
        self.slot.zero_()
        confidences = []
        for _ in range(budget):
            self.draft_step()
            confidences.append(self.confidence.item())  # host sync, one per draft step: early exit
            if confidences[-1] < threshold:
                break
        return confidences

    def verify_round(self, k: int) -> tuple[int, int, list[int]]:
        self.verify[k]()
        n, nxt, *drafts = torch.cat([self.out, self.drafts[:k]]).tolist()  # host sync: one per round
        return n, nxt, drafts

    def next_ar_token(self) -> int:
        self.ar_step()
        return int(self.out[1].item())  # host sync: one per token (EOS test)


def greedy_graphs(model: Model, adapter: Adapter | None, max_draft: int) -> GreedyGraphs:
    """The captured steps for this model, adapter, gamma and cache, built once and then reused."""
    key = (id(adapter), adapter and adapter.exit_layer, max_draft, model.engine.cache_len,
           adapter.cache_len if adapter is not None else 0)
    cache = model.engine.__dict__.setdefault("_graphs", {})
    for stale in [k for k in cache if k[3:] != key[3:]]:
        del cache[stale]  # captured over caches that have since been reallocated
    if key not in cache:
        cache[key] = GreedyGraphs(model, adapter, max_draft)
    return cache[key]
