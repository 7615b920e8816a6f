"""What fills a round's tree, and the method table: each decoding method is one row.

A round's tree (`tree.Layout`) has two kinds of parts, each filled by a proposer:

* a **branch**: a chain of tokens below the root, proposed on the host from the tokens committed
  so far, with no model (`LookupBranch`: prompt lookup; a retrieval index would be another);
* **levels**: children grown level by level on the device from the nodes' shallow states by a
  drafter (the Kangaroo adapter + the target's LM head: `AdapterLevels`; heads would be another).

A method is a row of `METHOD_TABLE`: which proposers fill its tree, whether its levels branch (a
tree) or not (a chain), its default options, its label and colour. Decoding, the benchmarks, the
plots and the CLI read this table; none of them spells a method's name to decide what it does.
Adding a way to draft is one proposer here (or in a module of its own) plus one row.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Protocol

import torch

from .lookup import PromptLookup
from .options import DEFAULTS, DecodeOptions
from .tree import Layout, plan


# ------------------------------------------------------------------------------------ proposers
class LookupBranch:
    """The lookup branch: the tokens that followed the latest earlier occurrence of the newest
    n-gram of the committed tokens (`lookup.PromptLookup`), host work only."""

    source = "lookup"  # what the trace calls its nodes

    def __init__(self, opts: DecodeOptions):
        self.n_max, self.length = opts.n_max, opts.lookup_tokens
        self.index: PromptLookup | None = None

    def start(self, tokens: Iterable[int]):
        """Before the first round: the prompt and the first generated token."""
        self.index = PromptLookup(tokens, self.n_max, self.length)

    def extend(self, tokens: Iterable[int]):
        """After a round: the tokens it committed."""
        self.index.extend(tokens)

    def propose(self) -> list[int]:
        """At most `length` tokens to verify below the root ([] without a match)."""
        return self.index.propose()[0][: self.length]


class Drafter(Protocol):
    """What drafts a round's levels on the device (the Kangaroo adapter, `adapter.Adapter`; heads would
    be another). From the shallow states h (B, T, D) at layer `exit_layer` of a level's nodes it returns
    hidden states (B, T, D) for the target's LM head, writing its own cache for every node it sees
    (`start`: a position, or a tree window); `write_kv` writes that cache alone (verification: the
    last level's nodes); `compact` moves cache slots after a tree round; `cache_version` changes
    whenever `setup_cache` reallocates (captured graphs over the old cache are stale)."""

    exit_layer: int
    cache_version: int

    def __call__(self, h: torch.Tensor, start) -> torch.Tensor: ...
    def write_kv(self, h: torch.Tensor, start) -> None: ...
    def setup_cache(self, max_len: int) -> None: ...
    def compact(self, src: torch.Tensor, dst: torch.Tensor) -> None: ...


BRANCHES = {"lookup": LookupBranch}  # branch proposer name -> class (built from the options)
ADAPTER = "adapter"  # the levels' source: the Kangaroo adapter drafts them (rounds.RoundSteps.draft_level)


# ------------------------------------------------------------------------------------ the table
@dataclass(frozen=True)
class Method:
    """One row of the method table.

    branch: the branch proposer's name (`BRANCHES`), or None; levels: the adapter drafts levels
    (the method needs an adapter); tree: levels keep `top_k` children per node within `node_budget`
    nodes (else one draft per level: a chain); defaults: the options it runs with unless told
    otherwise; options: which `DecodeOptions` fields it reads (the CLI's help says so);
    engine: a decoding method of ours (`generate`); False for a benchmark comparison row."""

    name: str
    label: str
    colour: str
    branch: str | None = None
    levels: bool = False
    tree: bool = False
    defaults: DecodeOptions = DEFAULTS
    options: tuple[str, ...] = ()
    engine: bool = True

    @property
    def needs_adapter(self) -> bool:
        return self.levels

    @property
    def speculative(self) -> bool:
        return self.levels or self.branch is not None

    def layout(self, opts: DecodeOptions) -> Layout | None:
        """The tree every round proposes (`tree.Layout`); None for autoregressive decoding."""
        if not self.speculative:
            return None
        branch = opts.lookup_tokens if self.branch else 0
        if not self.tree:  # a chain: the branch, or max_draft adapter drafts one below the other
            depth = opts.max_draft if self.levels else 0
            return plan(branch + depth + 1, depth, 1, branch, drafted=self.levels)
        if opts.node_budget < branch + 2:
            raise ValueError(
                f"node_budget={opts.node_budget} leaves no room for the adapter's drafts: {self.name} needs "
                f"node_budget >= {branch + 2} (the root{', the lookup branch' if branch else ''} and one draft)"
            )
        return plan(opts.node_budget, opts.max_draft, opts.top_k, branch, drafted=True)

    def branch_proposer(self, opts: DecodeOptions):
        """A fresh branch proposer for one generation, or None."""
        return BRANCHES[self.branch](opts) if self.branch else None


_CHAIN = ("threshold", "max_draft", "early_exit")
_TREE = _CHAIN + ("top_k", "node_budget")
_LOOKUP = ("n_max", "lookup_tokens")
# Defaults: the fastest setting of each method in the tree sweep on an H200 (README, "Trees and lookup";
# figures/data/bench/sweep_tree.csv). On the device, eta can only mask nodes, never save work, so the
# trees' default is eta = 0 and their depth is the knob.
_TREE_DEFAULTS = replace(DEFAULTS, threshold=0.0, max_draft=2, top_k=4, early_exit="device")
METHOD_TABLE: dict[str, Method] = {
    m.name: m
    for m in [
        Method("ar", "autoregressive (ar)", "#7f7f7f"),  # grey: the baseline
        # blue: the paper's chain, with the paper's settings
        Method("kangaroo", "Kangaroo (chain)", "#1f77b4", levels=True, options=_CHAIN),
        Method(
            "pld",
            "prompt lookup (pld)",
            "#ff7f0e",  # orange: prompt lookup on our engine
            branch="lookup",
            defaults=replace(DEFAULTS, lookup_tokens=32, n_max=3),
            options=_LOOKUP,
        ),
        Method(
            "kangaroo-tree",
            "Kangaroo tree",
            "#2ca02c",  # green: the adapter drafts a token tree
            levels=True,
            tree=True,
            defaults=replace(_TREE_DEFAULTS, node_budget=64),
            options=_TREE,
        ),
        Method(
            "kangaroo+lookup",
            "Kangaroo tree + lookup",
            "#9467bd",  # purple: the adapter's tree + the lookup branch, one verification
            branch="lookup",
            levels=True,
            tree=True,
            defaults=replace(_TREE_DEFAULTS, node_budget=48, lookup_tokens=16),
            options=_TREE + _LOOKUP,
        ),
        # Benchmark comparison rows (bench/ runs them): not decoding methods of `generate`.
        Method("kangaroo-noadapter", "Kangaroo, no adapter", "#9ecae1", levels=True, options=_CHAIN, engine=False),
        Method("hf", "transformers (hf)", "#3f3f3f", engine=False),  # dark grey: transformers' own baseline
        Method("hf-pld", "transformers prompt lookup (hf-pld)", "#fdae6b", engine=False),
        Method("hf-earlyexit", "early-exit assisted (hf-earlyexit)", "#8c564b", engine=False),
    ]
}
METHODS = tuple(m.name for m in METHOD_TABLE.values() if m.engine)  # what `generate` runs
METHOD_DEFAULTS = {name: METHOD_TABLE[name].defaults for name in METHODS}
ADAPTER_METHODS = tuple(m for m in METHODS if METHOD_TABLE[m].needs_adapter)
TREE_METHODS = tuple(m for m in METHODS if METHOD_TABLE[m].tree)  # the ones with a node budget
LOOKUP_METHODS = tuple(m for m in METHODS if METHOD_TABLE[m].branch == "lookup")
DEFAULT_METHOD = "kangaroo"  # the paper's method
HEADLINE_METHOD = "kangaroo+lookup"  # our fastest greedy method on the mini-bench (README, "Results")
BASELINE = "ar"


def method(name: str) -> Method:
    """The table's row for a decoding method; a ValueError naming the choices otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {METHODS}")
    return METHOD_TABLE[name]


def options_for(name: str, options: DecodeOptions | None = None, **overrides) -> DecodeOptions:
    """The options a method runs with: `options` (default: the method's defaults), then `overrides`
    (None values are ignored). Validated here."""
    base = options if options is not None else method(name).defaults
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def method_layout(name: str, opts: DecodeOptions) -> Layout | None:
    """The tree every round of method `name` proposes (`tree.Layout`); None for `ar`."""
    return METHOD_TABLE[name].layout(opts)
