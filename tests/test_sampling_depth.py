"""Tree sampling over many rounds: every emitted token follows the target's conditional distribution.

The chi-square tests in test_decoding.py compare the 2nd and 3rd generated tokens with exact
marginals (an enumeration over the tiny vocabulary), so their generations are three tokens long
and end after one or two rounds. A mistake that needs an earlier round's tree (a node keeping a
stale ancestor row from it, a wrong mask after compaction) or a path two drafts deep cannot show
there. Here generations are long, and each token is checked against the target's exact
distribution given the tokens before it (one forward over the whole sequence):

* the randomised probability integral transform (PIT): with the tokens of p_j ordered by
  probability and F_j their cumulative sum, u_j = F_j(x_j-) + V_j * p_j(x_j), V_j ~ U(0, 1) drawn
  independently. When every x_j ~ p_j given the past, the u_j are independent U(0, 1) (each is
  uniform given everything before it), however the rounds grouped the tokens. Pearson's
  chi-square over 20 equal bins of u tests that. A token drawn from q_j != p_j puts density
  q_j(x) / p_j(x) on x's interval of u, so the bins see where the sampled tokens are too often
  likely or unlikely;
* the nucleus: a token outside the target's top-p set has probability 0: never emitted.
"""

import math

import pytest
import torch

from kangaroo_lab import generate, new_adapter
from kangaroo_lab.accept import Sampler
from kangaroo_lab.explore import chi_square

TEMPERATURE, TOP_P = 0.4, 0.95  # peaked: siblings are tried after a likely first child was rejected
PROMPTS = ["Once upon a time, a time", "The cat sat on the mat. The cat", "abc abc abc", "Hello, my name is"]
N_GENERATIONS, NEW_TOKENS, BINS = 200, 24, 20
DEPTH_SAMPLING = {  # the paper's chain (drafts drawn from q), the adapter's tree (top-k siblings), the hybrid
    "kangaroo": dict(threshold=0.0, max_draft=3),
    "kangaroo-tree": dict(threshold=0.0, top_k=3, node_budget=10, max_draft=3),
    "kangaroo+lookup": dict(threshold=0.0, top_k=3, node_budget=16, max_draft=3, lookup_tokens=4),
}


def exact_next_logits(model, prompt_ids: list[int], token_ids: list[int]) -> torch.Tensor:
    """(len(token_ids), V): the target's logits for each generated token given the prompt and the
    tokens before it, from one uncached forward over the whole sequence."""
    e, n = model.engine, len(prompt_ids)
    with torch.inference_mode():
        logits = e.head(e.hidden_states(torch.tensor([prompt_ids + token_ids]))[-1])[0]  # (n + L, V)
    return logits[n - 1 : n - 1 + len(token_ids)]


def uniform_bins(u: torch.Tensor) -> tuple[float, int, float]:
    """Pearson's chi-square of u in [0, 1) over BINS equal bins against the uniform: (statistic, dof, p-value)."""
    counts = torch.bincount((u * BINS).long().clamp(max=BINS - 1), minlength=BINS)
    return chi_square(counts, torch.full((BINS,), 1 / BINS))


def randomised_pit(p: torch.Tensor, tokens: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """p (L, V), tokens (L,) -> u (L,): F(x-) + V * p(x), tokens ordered by probability (most likely first)."""
    p = p.double()
    order = p.argsort(dim=-1, descending=True, stable=True)  # (L, V)
    rank = order.argsort(dim=-1).gather(-1, tokens[:, None])  # (L, 1): each token's place in that order
    sorted_p = p.gather(-1, order)
    below = (sorted_p.cumsum(-1) - sorted_p).gather(-1, rank)[:, 0]  # F(x-): mass of the likelier tokens
    v = torch.rand(len(tokens), generator=generator, dtype=torch.float64)
    return below + v * p.gather(-1, tokens[:, None])[:, 0]


def outside_nucleus(p: torch.Tensor, tokens: torch.Tensor, margin: float = 1e-4) -> int:
    """p (L, V) untruncated (top_p = 1): tokens whose likelier tokens already hold TOP_P + margin of
    the mass, outside the target's nucleus by more than rounding could explain (the tree's and this
    forward's logits differ by ~1e-6)."""
    p = p.double()
    likelier = (p * (p > p.gather(-1, tokens[:, None]))).sum(-1)  # (L,)
    return int((likelier > TOP_P + margin).sum())


@pytest.fixture(scope="module")
def depth_adapter(tiny):
    return new_adapter(tiny, 3, "none")  # a late exit without adapter: drafts the target often accepts


@pytest.mark.parametrize("method", list(DEPTH_SAMPLING))
def test_deep_tree_sampling_matches_the_targets_conditionals(tiny, depth_adapter, method):
    """300 tree-sampled generations of 24 tokens (6,900 checked tokens): rounds after the first
    accept paths two and three drafts deep, and every token is checked against its exact conditional.

    Power (20 bins, alpha = 1e-3, critical value 43.8): 90% power against any shift of the PIT's
    binned distribution with chi-square divergence >= 0.0087 from uniform (so any total variation
    >= 0.047 between the bins), noncentral chi-square with 19 dof. For scale: with the residual not
    renormalised after a rejected sibling (`sample_accept`), the statistic is about 2-3x the critical
    value here (the marginal test of test_decoding.py, at temperature 0.7, does not notice it); a
    node keeping a stale ancestor row from the previous round's tree emits tokens outside the
    target's nucleus."""
    model = type(tiny)(**{**tiny.__dict__, "eos_token_ids": frozenset()})  # no early stop: fixed length
    results = [
        generate(
            model,
            PROMPTS[s % len(PROMPTS)],
            adapter=depth_adapter,
            method=method,
            seed=s,
            max_new_tokens=NEW_TOKENS,
            temperature=TEMPERATURE,
            top_p=TOP_P,
            **DEPTH_SAMPLING[method],
        )
        for s in range(N_GENERATIONS)
    ]
    deep = sum(r.accepted >= 2 for res in results for r in res.trace[1:])  # rounds after the first
    assert deep > N_GENERATIONS, f"only {deep} later rounds accepted two drafts or more"
    sampler = Sampler(TEMPERATURE, TOP_P, 0, tiny.device)
    untruncated = Sampler(TEMPERATURE, 1.0, 0, tiny.device)
    generator = torch.Generator().manual_seed(0)
    u, outside = [], 0
    for res in results:
        tokens = torch.tensor(res.token_ids[1:])  # the first token comes from the prefill
        logits = exact_next_logits(tiny, res.prompt_ids, res.token_ids)[1:]
        outside += outside_nucleus(untruncated.probs(logits), tokens)
        u.append(randomised_pit(sampler.probs(logits), tokens, generator))
    u = torch.cat(u)
    assert len(u) == N_GENERATIONS * (NEW_TOKENS - 1)
    stat, dof, p_value = uniform_bins(u)
    assert outside == 0 and p_value > 1e-3, (
        f"{method}: {outside} tokens outside the target's top-p set; PIT chi2 {stat:.1f} ({dof} dof), p = {p_value:.2g}"
    )


def test_randomised_pit_is_uniform_and_sees_a_wrong_distribution():
    """The transform itself, on made-up distributions: draws from p give uniform u; draws from a
    mixture that moves 10% of the mass to p's least likely tokens do not."""
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(2000, 50, generator=g) * 2, -1)  # (L, V): one distribution per token
    x = torch.multinomial(p, 1, generator=g)[:, 0]
    u = randomised_pit(p, x, g)
    assert uniform_bins(u)[2] > 1e-3 and abs(u.mean().item() - 0.5) < 4 * math.sqrt(1 / 12 / len(u))
    tail = (p < p.median(-1, keepdim=True).values).double()
    q = 0.9 * p + 0.1 * tail / tail.sum(-1, keepdim=True)
    assert uniform_bins(randomised_pit(p, torch.multinomial(q, 1, generator=g)[:, 0], g))[2] < 1e-3
