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
tensor). On CUDA each layer call is also compiled (`torch.compile`, one compiled function shared
by all layers), which fuses the small element-wise kernels. On a CPU the same functions simply
run eagerly, which is how the tests check them.

Fixed rows (`rows`): in bf16, a matrix multiply over 1 row and one over k+1 rows may round the
same row differently, so greedy Kangaroo can part from greedy AR at a near-tie of the top-2 logits.
With `rows=R` every step (AR, draft, verify) runs R rows: the real ones, then copies of the last
real row (same token, same position, so their cache writes are identical). Every kernel then sees
the same shapes in AR and in Kangaroo and computes each row the same way: the outputs match bit
for bit. The price is R-row steps where 1 row would do (small: these steps are launch-bound).
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class GraphOptions:
    """How the greedy steps are built. `generate(..., cuda_graphs=GraphOptions(...))`.

    fixed_rows: run every step over max_draft + 1 rows, so that bf16 Kangaroo matches bf16 AR bit
        for bit (module docstring); False (default) runs each step over its natural token count,
        which keeps AR's one-token step as fast as it can be.
    compile: torch.compile backend for the layer calls ("inductor"), False for none; None means
        "inductor" on CUDA and none elsewhere."""

    fixed_rows: bool = False
    compile: str | bool | None = None

    def backend(self, device: torch.device) -> str | None:
        if self.compile is None:
            return "inductor" if device.type == "cuda" else None
        return "inductor" if self.compile is True else (self.compile or None)


def compiled_call(backend: str = "inductor"):
    """`torch.compile`d `module(*args)`: one compiled function serves every layer of the same shapes."""
    if backend not in _COMPILED:
        cfg = torch._dynamo.config
        for limit in ("recompile_limit", "cache_size_limit"):  # one entry per (module type, row count)
            if hasattr(cfg, limit):
                setattr(cfg, limit, max(getattr(cfg, limit), 64))
        _COMPILED[backend] = torch.compile(_call, backend=backend, fullgraph=True, dynamic=False)
    return _COMPILED[backend]


def _call(module, *args):
    return module(*args)


_COMPILED: dict = {}


class GreedyGraphs:
    """Static buffers and captured greedy steps for one (model, adapter, max_draft, cache size, rows).

    rows: None runs each step over its natural number of tokens (1 to draft, k+1 to verify k
    drafts); an int R >= max_draft + 1 runs every step over R rows (module docstring: bf16 identity).
    backend: call the layers through `torch.compile` with this backend (None: plain calls)."""

    def __init__(self, model: Model, adapter: Adapter | None, max_draft: int, rows: int | None = None,
                 backend: str | None = None):
        e, dev = model.engine, model.device
        if rows is not None and rows < max_draft + 1:
            raise ValueError(f"rows={rows} cannot hold a round of max_draft={max_draft} drafts + 1")
        self.model, self.adapter, self.max_draft, self.rows = model, adapter, max_draft, rows
        self.call = compiled_call(backend) if backend else None
        long = dict(dtype=torch.long, device=dev)
        self.token = torch.zeros(1, rows or 1, **long)  # the next input token (copied to every row)
        self.pos = torch.zeros(1, **long)  # draft step position
        self.slot = torch.zeros(1, **long)  # draft step index within the round
        self.round_pos = torch.zeros(1, **long)  # position of the round's first token
        self.drafts = torch.zeros(max_draft + 1, **long)
        self.states = torch.zeros(1, rows or max_draft + 1, e.config.dim, dtype=model.dtype, device=dev)
        self.confidence = torch.zeros(1, dtype=torch.float32, device=dev)
        self.out = torch.zeros(2, **long)  # (accepted drafts, next token)
        pool = torch.cuda.graph_pool_handle() if dev.type == "cuda" else None
        with torch.inference_mode():  # AR needs the full step only; Kangaroo the draft and verify steps
            if adapter is None:
                self.ar_step = self._capture(self._ar_step, pool)
            else:
                self.draft_step = self._capture(self._draft_step, pool)
                self.verify = [self._capture(self._verify_fn(k), pool) for k in range(max_draft + 1)]

    def _capture(self, fn, pool) -> Captured:
        engine = self.model.engine
        engine.call = self.call  # layers go through the compiled call while the graph is recorded
        try:
            return Captured(fn, self.model.device, pool)
        finally:
            engine.call = None

    def _rows(self, pos: torch.Tensor) -> torch.Tensor:
        """(1,) position -> the step's positions: (1,), or (R,) copies of it with fixed rows."""
        return pos if self.rows is None else pos.expand(self.rows)

    def _adapter(self, h: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.adapter(h, positions) if self.call is None else self.call(self.adapter, h, positions)

    def _ar_step(self):
        logits = self.model.engine(self.token, self._rows(self.pos))[:, 0]  # (1, V): row 0 is the real one
        nxt = logits.argmax(-1)
        self.out[1:].copy_(nxt)
        self.token.copy_(nxt.view(1, 1).expand_as(self.token))
        self.pos.add_(1)

    def _draft_step(self):
        e, l = self.model.engine, self.adapter.exit_layer
        positions = self._rows(self.pos)
        h = e.shallow(self.token, positions, l)  # (1, R, D); all rows alike
        self.states.index_copy_(1, self.slot, h[:, :1])
        logits = e.lm_head(self._adapter(h, positions)[:, 0])  # (1, V): the target's frozen head
        conf, draft = torch.softmax(logits.float(), -1).max(-1)  # (1,)
        self.drafts.index_copy_(0, self.slot, draft)
        self.confidence.copy_(conf)
        self.token.copy_(draft.view(1, 1).expand_as(self.token))
        self.pos.add_(1)
        self.slot.add_(1)

    def _verify_fn(self, k: int):
        n_rows = self.rows or k + 1
        offsets = torch.arange(n_rows, device=self.token.device).clamp(max=k)  # rows past k repeat row k

        def verify():
            e, l = self.model.engine, self.adapter.exit_layer
            last = self.round_pos + k  # (1,): the last draft's position
            h = e.shallow(self.token, self._rows(last), l)  # (1, R or 1, D)
            self.states[:, k:n_rows].copy_(h[:, :1].expand(-1, n_rows - k, -1))
            self.adapter.write_kv(h, self._rows(last))
            target = e.deep(self.states[:, :n_rows], self.round_pos + offsets, l)[0].argmax(-1)  # (n_rows,)
            n = (target[:k] == self.drafts[:k]).long().cumprod(0).sum().view(1)  # accepted drafts
            nxt = target.gather(0, n)  # indexing with a 0-dim tensor would sync (and break capture)
            self.out.copy_(torch.cat([n, nxt]))
            self.token.copy_(nxt.view(1, 1).expand_as(self.token))
        return verify

    # ------------------------------------------------------------------ the host side of a round
    def start(self, token: torch.Tensor, pos: int):
        self.token.copy_(token.view(1, 1).expand_as(self.token))
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


def greedy_graphs(model: Model, adapter: Adapter | None, max_draft: int,
                  options: GraphOptions = GraphOptions()) -> GreedyGraphs:
    """The captured steps for this model, adapter, gamma and options, built once and then reused
    (AR's and each adapter's side by side) until a cache they were captured over is reallocated."""
    rows = max_draft + 1 if options.fixed_rows else None  # AR and Kangaroo with the same gamma: same rows
    backend = options.backend(model.device)
    cache = model.engine.__dict__.setdefault("_graphs", {})
    for k, (g, lens) in list(cache.items()):
        if lens != _cache_lens(model, g.adapter):
            del cache[k]  # captured over caches that have since been reallocated
    key = (id(adapter), adapter and adapter.exit_layer, max_draft, rows, backend)  # the entry keeps `adapter` alive
    if key not in cache:
        cache[key] = (_build(model, adapter, max_draft, rows, backend), _cache_lens(model, adapter))
    return cache[key][0]


def _build(model: Model, adapter: Adapter | None, max_draft: int, rows: int | None, backend: str | None):
    """GreedyGraphs; if torch.compile cannot run here (no triton, no compiler), the same steps uncompiled."""
    try:
        return GreedyGraphs(model, adapter, max_draft, rows, backend)
    except Exception as e:  # compilation happens in the warm-up call, before any graph is recorded
        if backend is None:
            raise
        import warnings

        warnings.warn(f"torch.compile ({backend}) failed, so the captured steps run uncompiled (about half "
                      f"the speed): {type(e).__name__}: {str(e)[:200]}. GraphOptions(compile=False) "
                      "skips the attempt.", stacklevel=3)
        return GreedyGraphs(model, adapter, max_draft, rows, None)


def _cache_lens(model: Model, adapter: Adapter | None) -> tuple[int, int]:
    return model.engine.cache_len, adapter.cache_len if adapter is not None else 0
