"""Decoding options: one dataclass, validated on construction, with the paper's defaults.

Each method's own defaults are a row of the method table (`proposers.py`); the CLI and the
benchmarks read them from there, so no default is declared twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from .engine import as_int

EARLY_EXITS = ("host", "device")


@dataclass(frozen=True)
class DecodeOptions:
    """Every decoding option, with the defaults of the paper's `kangaroo`; each method's own defaults
    are in its row of the method table (`proposers.METHOD_TABLE`; the CLI and the benchmarks read them there)."""

    threshold: float = 0.6  # eta: stop drafting once the draft's confidence falls below it (< eta; == eta goes on)
    max_draft: int = 6  # gamma: at most this many drafts per round (a tree: its depth)
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int = 0
    top_k: int = 4  # trees: children kept per node (and the most nodes per level, times the level above)
    node_budget: int = 32  # trees: at most this many nodes verified per round, the root included
    n_max: int = 3  # lookup: the longest n-gram matched (then shorter ones down to 1)
    lookup_tokens: int = 8  # lookup: at most this many tokens proposed after a match
    early_exit: str = "host"  # where eta stops a round's drafting: "host" (a read per draft) or "device" (a mask)

    def __post_init__(self):
        for f in fields(self):  # numpy integers from sweeps are fine
            if f.type == "int" and as_int(getattr(self, f.name)) is not None:
                object.__setattr__(self, f.name, as_int(getattr(self, f.name)))
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold (eta) must lie in [0, 1], got {self.threshold}; 0.6 is a good start")
        for name, what in [
            ("max_draft", "max_draft (gamma)"),
            ("max_new_tokens", "max_new_tokens"),
            ("top_k", "top_k (children per node)"),
            ("node_budget", "node_budget (nodes per round)"),
            ("n_max", "n_max (longest n-gram looked up)"),
            ("lookup_tokens", "lookup_tokens (tokens proposed per match)"),
        ]:
            value = getattr(self, name)
            if as_int(value) is None or value < 1:
                raise ValueError(f"{what} must be an integer >= 1, got {value!r}")
        check_sampling(self.temperature, self.top_p, self.seed)
        if self.early_exit not in EARLY_EXITS:
            raise ValueError(f"early_exit must be one of {EARLY_EXITS}, got {self.early_exit!r}")


def check_sampling(temperature: float, top_p: float = 1.0, seed: int = 0):
    """The sampling arguments every entry point takes (generate, the CLI, self-distillation): a ValueError
    that says what is wrong, instead of silent greedy decoding (negative or NaN temperature), uniform
    sampling (infinite temperature) or an overflow deep inside torch (a seed beyond 64 bits)."""
    if not (math.isfinite(temperature) and temperature >= 0.0):
        raise ValueError(f"temperature must be >= 0 (0 = greedy) and finite, got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must lie in (0, 1], got {top_p}")
    if as_int(seed) is None or not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an integer in [0, 2**64), got {seed!r}")


DEFAULTS = DecodeOptions()


def below_eta(confidence, threshold: float):
    """Early exit #2, the one rule: drafting stops after a draft whose confidence is below eta
    (< eta stops; exactly eta goes on). Elementwise on floats, tensors, arrays and pandas Series;
    the device's mask tests the same rule in log space (`log cum < log eta`)."""
    return confidence < threshold
