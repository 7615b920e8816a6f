"""Decoding steps with fixed shapes, captured as CUDA graphs.

A one-token step of a small model is hundreds of tiny kernels; launched one by one from Python,
the launches cost more than the arithmetic. Every step here reads and writes static buffers
(positions, tokens, the round's tree, shallow states), so its shapes never change; it is captured
once as a CUDA graph and then replayed:

* `ARGraph.step`: one full step, for the autoregressive baseline;
* the speculative rounds of `rounds.RoundSteps`: each draft level and each `finish[d]` (verify the
  tree of d levels -> accept -> compact); with the early exit on the device, the whole round (every
  level, then finish) is one graph, so a round is one replay and one host read.

Attention spans the whole static cache under a mask (`engine.cache_window` / `engine.tree_window`).
On CUDA each layer call is also compiled (`torch.compile`, one compiled function shared by all
layers of the same shape), which fuses the small element-wise kernels. On a CPU the same functions
simply run eagerly, which is how the tests check them.

Fixed rows (`GraphOptions(fixed_rows=...)`): in bf16, a matrix multiply over 1 row and one over k+1
rows may round the same row differently, so greedy speculation can part from greedy AR at a near-tie
of the top-2 logits. With R fixed rows every step (AR, draft, verify) runs R rows, the real ones,
then copies of the last real row (same token, same slot, same position: identical cache writes).
Every kernel then sees the same shapes in AR and in the speculative method and computes each row
the same way: the outputs match bit for bit. The price is R-row steps where 1 row would do.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from .models import Model
from .proposers import Drafter
from .rounds import RoundSteps, compiled
from .tree import Layout


class Captured:
    """A function over static buffers, replayed as one CUDA graph (called directly off CUDA)."""

    def __init__(self, fn, device: torch.device, pool=None):
        self.fn, self.graph = fn, None
        if device.type == "cuda":
            stream = torch.cuda.Stream(device)
            stream.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(stream):
                fn()  # warm-up: allocator, cuBLAS workspaces, compilation (writes land in buffers reset later)
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
    """How the captured steps are built. `generate(..., cuda_graphs=GraphOptions(...))`.

    fixed_rows: False (default) runs each step over its natural row count, which keeps AR's
        one-token step as fast as it can be; an int R runs every step over R rows, so that bf16
        speculation matches bf16 AR bit for bit (module docstring; pass the same R to both, at least
        the method's tree size); True means max_draft + 1 rows (the paper's chain: its tree size).
    compile: torch.compile backend for the layer calls ("inductor"), False for none; None means
        "inductor" on CUDA and none elsewhere.
    bucket_rows (without fixed rows): pad each speculative step's rows up to a power of two, so that
        every tree shape reuses a few compiled kernels (1, 2, 4, ..., 128 rows; a step over 25 or 32
        rows costs about the same). AR's one-row step is never padded."""

    fixed_rows: bool | int = False
    compile: str | bool | None = None
    bucket_rows: bool = True

    def backend(self, device: torch.device) -> str | None:
        if self.compile is None:
            return "inductor" if device.type == "cuda" else None
        return "inductor" if self.compile is True else (self.compile or None)

    def rows(self, chain_rows: int) -> int | None:
        """Fixed rows, if any: an int as given; True: `chain_rows` (max_draft + 1)."""
        if self.fixed_rows is True:
            return chain_rows
        return int(self.fixed_rows) or None

    def round_rows(self, tree_size: int) -> int | str | None:
        """Rows of the speculative steps: fixed (True: the tree's size), "pow2" buckets, or natural (None)."""
        if self.fixed_rows:
            return self.rows(tree_size)
        return "pow2" if self.bucket_rows else None


def compiled_call(backend: str = "inductor"):
    """`torch.compile`d `module(*args)`: one compiled function serves every layer of the same shapes."""
    cfg = torch._dynamo.config
    for limit in ("recompile_limit", "cache_size_limit"):  # one entry per (module type, row count)
        if hasattr(cfg, limit):
            setattr(cfg, limit, max(getattr(cfg, limit), 256))
    return compiled(_call, backend)


def _call(module, *args):
    return module(*args)


class ARGraph:
    """The autoregressive step over static buffers: (token, position) -> next token, captured."""

    def __init__(self, model: Model, rows: int | None = None, backend: str | None = None):
        dev = model.device
        self.model, self.rows = model, rows
        self.call = compiled_call(backend) if backend else None
        self.token = torch.zeros(1, rows or 1, dtype=torch.long, device=dev)  # copied to every row
        self.pos = torch.zeros(1, dtype=torch.long, device=dev)
        self.out = torch.zeros(1, dtype=torch.long, device=dev)
        with torch.inference_mode():
            self.step = capture(model, self._step, self.call)

    def _step(self):
        positions = self.pos if self.rows is None else self.pos.expand(self.rows)
        logits = self.model.engine(self.token, positions)[:, 0]  # (1, V): row 0 is the real one
        nxt = logits.argmax(-1)
        self.out.copy_(nxt)
        self.token.copy_(nxt.view(1, 1).expand_as(self.token))
        self.pos.add_(1)

    def start(self, token: torch.Tensor, pos: int):
        self.token.copy_(token.view(1, 1).expand_as(self.token))
        self.pos.fill_(pos)

    def next_ar_token(self) -> int:
        self.step()
        return int(self.out.item())  # host sync: one per token (EOS test)


def capture(model: Model, fn, call=None, pool=None) -> Captured:
    """Captured(fn) with the engine's layers called through `call` while it is recorded."""
    engine = model.engine
    engine.call = call
    try:
        return Captured(fn, model.device, pool)
    finally:
        engine.call = None


def ar_graph(model: Model, rows: int | None, options: GraphOptions = GraphOptions()) -> ARGraph:
    """The captured AR step for this model and rows, built once (see `_cached`)."""
    backend = options.backend(model.device)
    return _cached(model, None, ("ar", rows, backend), lambda b: ARGraph(model, rows, b), backend)


def captured_round_steps(
    model: Model,
    drafter: Drafter | None,
    layout: Layout,
    host_exit: bool,
    options: GraphOptions = GraphOptions(),
):
    """`rounds.RoundSteps` with every step captured (greedy), built once per (model, drafter,
    layout, early exit, rows, backend) and reused until a cache it was captured over is
    reallocated or the drafter is dropped (`_cached`). Device early exit: the whole round is one graph.
    The branch's proposer is host work, given to `reset` per generation: not part of the graphs."""
    rows = options.round_rows(layout.size)
    backend = options.backend(model.device)

    def build(backend):
        call = compiled_call(backend) if backend else None
        steps = RoundSteps(model, drafter, layout, host_exit=host_exit, rows=rows, call=call, backend=backend)
        pool = torch.cuda.graph_pool_handle() if model.device.type == "cuda" else None
        with torch.inference_mode():
            if host_exit:
                steps.levels = [capture(model, f, call, pool) for f in steps.levels]
                steps.finish = [capture(model, f, call, pool) for f in steps.finish]
            else:
                levels, finish = steps.levels, steps.finish[-1]
                steps.whole = capture(model, lambda: [f() for f in [*levels, finish]], call, pool)
        return steps

    key = ("round", drafter and drafter.exit_layer, layout, host_exit, rows, backend)
    return _cached(model, drafter, key, build, backend)


def _cached(model: Model, drafter: Drafter | None, key, build, backend):
    """Captured steps, built once and kept until a cache they were captured over is reallocated.

    Steps that use a drafter (an adapter) are kept on it (keyed by the engine), so that they go when it
    goes: a process that loads adapters one after another does not keep every one alive (with its
    captured graphs and buffers). The steps reference the drafter and the model, so while an entry
    lives the ids in its key are unique. The AR steps are kept on the engine."""
    owner = drafter if drafter is not None else model.engine
    cache = owner.__dict__.setdefault("_graphs", {})
    key = (id(model.engine), *key)
    for k, (_, a, versions) in list(cache.items()):
        if k[0] == key[0] and versions != _cache_versions(model, a):
            del cache[k]  # captured over caches that have since been reallocated
    if key not in cache:
        cache[key] = (_build(build, backend), drafter, _cache_versions(model, drafter))
    return cache[key][0]


def _build(build, backend):
    """build(backend); if torch.compile cannot run here (no triton, no compiler), build(None), with a warning."""
    try:
        return build(backend)
    except Exception as e:  # compilation happens in the warm-up call, before any graph is recorded
        if backend is None:
            raise
        warnings.warn(
            f"torch.compile ({backend}) failed, so the captured steps run uncompiled (about half "
            f"the speed): {type(e).__name__}: {str(e)[:200]}. GraphOptions(compile=False) "
            "skips the attempt.",
            stacklevel=4,
        )
        return build(None)


def _cache_versions(model: Model, drafter: Drafter | None) -> tuple[int, int]:
    """Each cache allocation gets a new version (`setup_cache`): graphs captured over an older one are stale."""
    return model.engine.cache_version, drafter.cache_version if drafter is not None else 0
