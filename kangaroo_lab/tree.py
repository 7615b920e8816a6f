"""A round's token tree: where its nodes live, who descends from whom, and the accepted path.

A speculative round verifies a tree of candidate tokens at once. Node 0 is the round's root: the
newest committed token, not yet run through the model. The other nodes are candidates for the
tokens after it; a chain (the paper's Kangaroo, prompt lookup) is a tree with one branch.

    node:     0      1    2    3   |  4    5    6    7   |  8    9   10   11
              root | branch        | level 1             | level 2  ...
    depth:    0      1    2    3      1    1    1    1      2    2    2    2

Every node has a fixed index for the whole generation (`Layout`): the root, then the branch (a
chain below the root, proposed on the host: the lookup branch), then the drafted levels (the
adapter's), `levels[t]` nodes at depth t + 1 (`proposers.py` says who fills which part).
Node i is written to cache slot `root position + i` and rotated as position `root position +
depth(i)`; it attends to the committed cache and to its ancestors (`ancestors[i]`, itself
included). After verification the accepted path (root, then one node per depth) moves to
consecutive slots (`compaction`), so the cache again holds the committed sequence by position.

Everything here is plain tensor code with static shapes (no host syncs): the same functions run
eagerly on a CPU and inside captured CUDA graphs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Layout:
    """Static shape of every round's tree: `branch` nodes in a chain below the root (a host
    proposer's: the lookup branch), then `levels[t]` drafted nodes at depth t + 1, each level grown
    from the one above by `top_k` children per node (level 1 from the root)."""

    branch: int = 0
    levels: tuple[int, ...] = ()
    top_k: int = 1

    @property
    def size(self) -> int:
        """P: nodes in the tree, root included (the rows of a full verification)."""
        return 1 + self.branch + sum(self.levels)

    @property
    def depth(self) -> int:
        """The deepest node's depth: the most drafts a round can accept."""
        return max(self.branch, len(self.levels))

    @property
    def adapter_chain(self) -> bool:
        """The paper's chain: one draft per level and no branch (its eta tests each draft)."""
        return self.branch == 0 and bool(self.levels) and all(w == 1 for w in self.levels)

    @property
    def is_chain(self) -> bool:
        """One branch only: every path already lies at consecutive slots, nothing to compact."""
        return (self.branch == 0 and all(w == 1 for w in self.levels)) or not self.levels

    def block(self, level: int) -> range:
        """Node indices of level `level` (1-based); level 0 is the root and the branch."""
        if level == 0:
            return range(0, 1 + self.branch)
        start = 1 + self.branch + sum(self.levels[: level - 1])
        return range(start, start + self.levels[level - 1])

    def nodes(self, levels_drafted: int) -> int:
        """Nodes verified when `levels_drafted` levels exist."""
        return 1 + self.branch + sum(self.levels[:levels_drafted])

    def depths(self) -> list[int]:
        return [0] + list(range(1, self.branch + 1)) + [t + 1 for t, w in enumerate(self.levels) for _ in range(w)]

    def static_parents(self) -> list[int]:
        """Parents known before the round: the branch and level 1 (children of the root); deeper
        nodes get theirs while the tree grows (-1 until then)."""
        parents = [-1] + list(range(self.branch))  # branch node i hangs below node i - 1 (node 0: the root)
        for t, w in enumerate(self.levels):
            parents += [0 if t == 0 else -1] * w
        return parents


def plan(node_budget: int, max_depth: int, top_k: int, branch: int, drafted: bool) -> Layout:
    """The layout of at most `node_budget` nodes (root included): first the branch (`branch` nodes,
    when > 0), then up to `max_depth` drafted levels (when `drafted`), of equal width where the
    budget allows, a level never wider than `top_k` times the one above."""
    branch = min(branch, node_budget - 1)
    room = node_budget - 1 - branch
    depth = min(max_depth, room) if drafted else 0
    width = room // depth if depth else 0
    levels, above = [], 1
    for _ in range(depth):
        above = min(width, above * top_k)
        levels.append(above)
    return Layout(branch, tuple(levels), top_k)


def pow2(n: int) -> int:
    """The power of two at or above n (n >= 1): the row buckets of compiled steps (1, 2, 4, ...)."""
    return 1 << (n - 1).bit_length()


def ancestors_from_parents(parents: list[int]) -> torch.Tensor:
    """(P, P) bool: row i marks node i and its ancestors. Parents must precede their children."""
    P = len(parents)
    anc = torch.eye(P, dtype=torch.bool)
    for i, p in enumerate(parents):
        if p >= 0:
            anc[i] |= anc[p]
    return anc


def reachable(match: torch.Tensor, ancestors: torch.Tensor) -> torch.Tensor:
    """(P,) bool: the node and every ancestor of it matched (match: (P,) bool, the root True)."""
    return ~(ancestors & ~match[None, :]).any(-1)


def deepest(ok: torch.Tensor, depths: torch.Tensor) -> torch.Tensor:
    """(1,) index of the deepest node with ok[i], the lowest index among equals (the root if none)."""
    P = ok.shape[0]
    score = torch.where(ok, depths * P + (P - 1 - torch.arange(P, device=ok.device)), -1)
    return score.argmax().view(1)


def path_to(node: torch.Tensor, ancestors: torch.Tensor, depths: torch.Tensor, max_depth: int) -> torch.Tensor:
    """(max_depth + 1,) node indices on the path root -> `node`, by depth; positions past the
    node's depth hold 0 (the root), which the caller ignores."""
    on_path = ancestors.index_select(0, node)[0]  # (P,)
    levels = torch.arange(max_depth + 1, device=depths.device)
    at = on_path[None, :] & (depths[None, :] == levels[:, None])  # (max_depth + 1, P): one True per row up to the depth
    return at.long().argmax(-1)  # the one True of each row; rows past the depth have none: 0


def compaction(path: torch.Tensor, base: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Slots to copy (src -> dst) so that the accepted path lies at consecutive positions from
    the root's slot `base` (1,). Entries past the accepted depth copy the root onto slots beyond
    the committed sequence: harmless, those slots are stale and get overwritten."""
    return base + path, base + torch.arange(path.shape[0], device=path.device)


class Tree:
    """A round's tree as tensors (views of the round's static buffers, or built for a test):
    tokens, parents (-1 for the root), depths (P,), ancestors (P, P) bool, valid (P,) bool.
    Invalid nodes (padding, a lookup without a match, levels grown after the confidence fell
    below eta) are verified with the rest but can never be accepted."""

    def __init__(self, tokens, parents, depths, ancestors, valid):
        self.tokens, self.parents, self.depths, self.ancestors, self.valid = tokens, parents, depths, ancestors, valid

    @classmethod
    def from_parents(
        cls, tokens: list[int], parents: list[int], valid: list[bool] | None = None, device=None
    ) -> "Tree":
        """A tree from Python lists (parents before children; the root's parent is -1)."""
        depths = []
        for p in parents:
            depths.append(0 if p < 0 else depths[p] + 1)
        valid = [True] * len(tokens) if valid is None else valid
        t = lambda x, dtype=torch.long: torch.tensor(x, dtype=dtype, device=device)  # noqa: E731
        return cls(t(tokens), t(parents), t(depths), ancestors_from_parents(parents).to(device), t(valid, torch.bool))

    @classmethod
    def chain(cls, tokens: list[int], device=None) -> "Tree":
        """The root followed by drafts tokens[1:], one below the other."""
        return cls.from_parents(tokens, list(range(-1, len(tokens) - 1)), device=device)

    def __len__(self) -> int:
        return self.tokens.shape[0]
