"""The acceptance rules: which of a round's drafts the target keeps, and the token it adds.

Greedy (`greedy_accept`): keep the deepest node whose whole path the target's argmax agrees with.
Sampling (`sample_accept`): recursive rejection sampling down the tree. Both end with one token
of the target's own: a correction, or the bonus token after a fully accepted branch. `Sampler`
holds the target's temperature / top-p warping and the seeded draws (decoding, acceptance and
self-distillation use the same one). A chain is a tree with one branch: no special case.

Everything here is plain tensor code over a round's tree (`tree.Tree`); the greedy rule has no host
sync, so the captured rounds (`rounds.py`, `graphs.py`) run it on the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .options import DecodeOptions
from .tree import Tree, deepest, path_to, reachable


class Sampler:
    """Temperature / top-p warping and seeded draws. temperature == 0 means greedy."""

    def __init__(
        self,
        temperature: float,
        top_p: float,
        seed: int,
        device: torch.device,
        generator: torch.Generator | None = None,
    ):
        """Draws come from a new generator seeded with `seed`, or from `generator` when given (seeded by
        its owner: self-distillation draws from torch's default one, which `torch.manual_seed` seeds)."""
        self.temperature, self.top_p = temperature, top_p
        self.greedy = temperature == 0.0
        self.generator = generator if generator is not None else torch.Generator(device).manual_seed(seed)

    @classmethod
    def from_options(cls, opts: DecodeOptions, device: torch.device) -> "Sampler":
        """The sampler (and so the acceptance rule) a generation with options `opts` runs with."""
        return cls(opts.temperature, opts.top_p, opts.seed, device)

    def accept(self, tokens: list[int], parents: list[int], valid: list[bool], p: torch.Tensor, q):
        """A sampled round's acceptance on the host: recursive rejection sampling (`sample_accept`).
        Greedy rounds accept on the device instead (`greedy_accept`, inside the captured round)."""
        return sample_accept(tokens, parents, valid, p, q, self)

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


# ------------------------------------------------------------------------------------ acceptance
@dataclass
class Accepted:
    """What the target accepted in a round, on the device."""

    path: torch.Tensor  # (max_depth + 1,) node indices from the root down, by depth (entries past n: 0)
    n: torch.Tensor  # (1,) drafts accepted
    token: torch.Tensor  # (1,) the target's own token after them


def greedy_accept(tree: Tree, logits: torch.Tensor, max_depth: int) -> Accepted:
    """logits (P, V): the target's logits at every node of `tree` (each predicts the token after it).

    A node matches when it is valid and its token is the target's argmax at its parent. Accept the
    deepest node whose whole path from the root matches (for a chain: the longest prefix of drafts
    the target agrees with); the next token is the target's argmax there: a correction, or the
    bonus token after a fully accepted branch. No host sync: gather and index_select, never a
    0-dim index."""
    target = logits.argmax(-1)  # (P,)
    match = tree.valid & (tree.tokens == target.gather(0, tree.parents.clamp(min=0)))
    match = match | (tree.parents < 0)  # the root is committed already
    best = deepest(reachable(match, tree.ancestors), tree.depths)  # (1,)
    return Accepted(
        path_to(best, tree.ancestors, tree.depths, max_depth), tree.depths.gather(0, best), target.gather(0, best)
    )


def sample_accept(
    tokens: list[int], parents: list[int], valid: list[bool], p: torch.Tensor, q: torch.Tensor | None, sampler: Sampler
) -> tuple[list[int], torch.Tensor, int]:
    """Recursive rejection sampling down a tree (SpecInfer, Miao et al. 2023; EAGLE). p: (n, V) the
    target's distribution at each node (temperature and top-p applied); q: (n, V) the distribution
    each node's token was drawn from, or None when every node is a fixed candidate (a point mass:
    top-k children, lookup tokens). Returns (path of node indices from the root, next token, host syncs).

    At node c, with r = p_c, try c's valid children x_1, x_2, ... in order:
        accept x_i with prob min(1, r(x_i) / q_i(x_i)); else r <- norm(max(r - q_i, 0))
        (a point mass: accept with prob r(x_i); else r(x_i) <- 0 and renormalise).
    The first accepted child becomes c and the walk goes on; when every child is rejected (or c
    has none) the next token is drawn from r. For a chain with q this is speculative sampling
    (Leviathan et al. 2023; Chen et al. 2023). The emitted tokens follow p exactly, whatever the tree:
    each rejection removes from r exactly the mass the rejected candidate could have taken."""
    children: dict[int, list[int]] = {}
    for i in range(1, len(tokens)):
        if valid[i]:
            children.setdefault(parents[i], []).append(i)
    node, path, syncs = 0, [0], 0
    while True:
        r = p[node]  # (V,)
        for c in children.get(node, []):
            x = tokens[c]
            u = torch.rand((), generator=sampler.generator, device=p.device)
            if q is None:  # a point mass at x
                accept = u < r[x]
                residual = r.index_fill(0, torch.tensor([x], device=p.device), 0.0)
            else:  # x was drawn from q_c
                accept = u * q[c, x] < r[x]  # u < r/q, without dividing by zero
                residual = (r - q[c]).clamp_min(0.0)
            syncs += 1
            if accept.item():  # host sync, one per candidate tried: sampling runs eagerly
                path.append(c)
                node = c
                break
            total = residual.sum()
            r = torch.where(total > 0, residual / total, r)  # r == q to rounding: nothing left to remove
        else:
            return path, sampler.draw(r).view(1), syncs
