"""Losslessness: greedy Kangaroo == greedy AR token for token; sampling reproduces the target distribution."""

import math

import pytest
import torch

from kangaroo_lab import decoding, generate, new_adapter
from kangaroo_lab.data import load_minibench, training_prompts
from kangaroo_lab.decoding import Sampler, speculative_accept
from kangaroo_lab.explore import exact_marginals
from kangaroo_lab.graphs import GraphOptions
from kangaroo_lab.models import load_model

# (exit layer, variant, threshold, max_draft): early and late exits, trained-like and plain heads,
# thresholds from "always draft to gamma" to "one draft per round"
TINY_SETTINGS = [
    (1, "attention", 0.0, 1), (2, "attention", 0.6, 6), (3, "attention", 0.3, 3), (2, "attention", 1.0, 4),
    (2, "attention+ffn", 0.1, 5), (1, "linear", 0.0, 8), (3, "none", 0.05, 6),
]


def tiny_prompts(n):
    return [" ".join(q.turns[0].split()[:12]) for q in training_prompts(n, seed=3)]


@pytest.mark.parametrize("exit_layer,variant,threshold,max_draft", TINY_SETTINGS)
def test_greedy_kangaroo_equals_ar_tiny_random(tiny, exit_layer, variant, threshold, max_draft):
    adapter = new_adapter(tiny, exit_layer, variant, seed=exit_layer)
    accepted = 0
    for prompt in tiny_prompts(20):
        ar = generate(tiny, prompt, method="ar", max_new_tokens=40)
        kg = generate(tiny, prompt, adapter=adapter, threshold=threshold, max_draft=max_draft, max_new_tokens=40)
        assert kg.token_ids == ar.token_ids, prompt
        assert kg.text == ar.text
        accepted += sum(kg.draft_accepted)
    assert accepted > 0  # the comparison covered accepted drafts, not only rejections


SMOL_SETTINGS = [(2, "attention", 0.6, 6), (28, "none", 0.0, 4), (29, "attention", 0.3, 8), (15, "none", 0.6, 3)]


@pytest.mark.slow
def test_greedy_kangaroo_equals_ar_smollm2(smol):
    """24 mini-bench prompts, each under one of four (exit layer, threshold, max_draft) settings."""
    adapters = {s: new_adapter(smol, s[0], s[1]) for s in SMOL_SETTINGS}
    full_rounds = 0
    for i, q in enumerate(load_minibench()[:48:2]):
        setting = SMOL_SETTINGS[i % len(SMOL_SETTINGS)]
        ar = generate(smol, q.turns[0], method="ar", max_new_tokens=24)
        kg = generate(smol, q.turns[0], adapter=adapters[setting], threshold=setting[2], max_draft=setting[3],
                      max_new_tokens=24)
        assert kg.token_ids == ar.token_ids, (q.question_id, setting)
        full_rounds += sum(r.accepted == len(r.drafts) > 0 for r in kg.trace)
    assert full_rounds > 0  # rounds where every draft was accepted (bonus token + adapter gap) were covered


def budgets(res, max_draft, max_new_tokens):
    """Drafts allowed in each round: gamma, but never past max_new_tokens."""
    done = [1 + sum(res.accept_lengths[:i]) for i in range(res.rounds)]
    return [min(max_draft, max_new_tokens - d - 1) for d in done]


def test_early_exit_rules(tiny):
    adapter = new_adapter(tiny, 2)
    always = generate(tiny, "abc", adapter=adapter, threshold=0.0, max_draft=5, max_new_tokens=60)
    assert [len(r.drafts) for r in always.trace] == budgets(always, 5, 60)  # eta = 0: always gamma
    once = generate(tiny, "abc", adapter=adapter, threshold=1.0, max_draft=5, max_new_tokens=60)
    assert [len(r.drafts) for r in once.trace] == [min(1, b) for b in budgets(once, 5, 60)]  # eta = 1: one
    mid = generate(tiny, "abc", adapter=adapter, threshold=0.2, max_draft=5, max_new_tokens=60)
    for r, budget in zip(mid.trace, budgets(mid, 5, 60)):
        assert all(c >= 0.2 for c in r.confidences[:-1])  # each draft but the last was confident enough
        assert len(r.drafts) == budget or r.confidences[-1] < 0.2  # and the last was not, or gamma was hit


def test_result_bookkeeping(tiny):
    res = generate(tiny, "hello", adapter=new_adapter(tiny, 2), threshold=0.1, max_new_tokens=50)
    assert len(res.token_ids) == 50 and res.stop_reason == "length"
    assert sum(res.accept_lengths) == len(res.token_ids) - 1  # the first token comes from the prefill
    assert res.rounds == len(res.trace) == len(res.accept_lengths)
    assert len(res.draft_confidences) == len(res.draft_accepted) == len(res.draft_positions)
    assert all(n == r.accepted + 1 for n, r in zip(res.accept_lengths[:-1], res.trace))
    assert res.mean_accepted == pytest.approx(sum(res.accept_lengths) / res.rounds)
    assert res.seconds > 0 and res.tokens_per_second > 0


def test_stops_at_eos_like_ar(tiny):
    ar = generate(tiny, "hello", method="ar", max_new_tokens=30)
    eos = ar.token_ids[9]
    model = type(tiny)(**{**tiny.__dict__, "eos_token_ids": frozenset({eos})})
    first = ar.token_ids.index(eos)
    for method, adapter in [("ar", None), ("kangaroo", new_adapter(tiny, 1))]:
        res = generate(model, "hello", adapter=adapter, method=method, threshold=0.0, max_new_tokens=30)
        assert res.token_ids == ar.token_ids[: first + 1] and res.stop_reason == "eos"


# ------------------------------------------------------------------------------- sampling
def chi_square(samples: list[int], probs: torch.Tensor, min_expected: float = 5.0) -> tuple[float, float]:
    """Pearson's statistic of samples against exact probabilities, and its critical value at alpha = 1e-3.

    Categories expected fewer than `min_expected` times are pooled into one bin. The critical value
    uses the Wilson-Hilferty approximation of the chi-square quantile."""
    n = len(samples)
    counts = torch.bincount(torch.tensor(samples), minlength=probs.numel()).double()
    expected = probs.double() * n
    big = expected >= min_expected
    obs = torch.cat([counts[big], counts[~big].sum().view(1)])
    exp = torch.cat([expected[big], expected[~big].sum().view(1)])
    keep = exp > 0
    stat = ((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum().item()
    df = int(keep.sum()) - 1
    z = 3.0902  # standard normal quantile at 1 - 1e-3
    crit = df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3
    return stat, crit


def sample_kangaroo(model, adapter, prompt, n, **kw):
    model = type(model)(**{**model.__dict__, "eos_token_ids": frozenset()})  # no early stop: fixed length
    return [generate(model, prompt, adapter=adapter, seed=s, max_new_tokens=3, **kw).token_ids for s in range(n)]


SAMPLING = dict(temperature=0.7, top_p=0.95, threshold=0.0, max_draft=3)
N_SAMPLES = 3000


@pytest.fixture(scope="module")
def sampling_setup(tiny):
    prompt = tiny.encode("Once upon a time")
    exact = exact_marginals(tiny, prompt, Sampler(SAMPLING["temperature"], SAMPLING["top_p"], 0, tiny.device))
    return prompt, new_adapter(tiny, 2, seed=7), exact


def test_sampling_matches_target_distribution(tiny, sampling_setup):
    prompt, adapter, (m1, m2) = sampling_setup
    out = sample_kangaroo(tiny, adapter, prompt, N_SAMPLES, **SAMPLING)
    for position, exact in [(1, m1), (2, m2)]:  # tokens 2 and 3 come through the acceptance rule
        stat, crit = chi_square([t[position] for t in out], exact)
        assert stat < crit, f"token {position + 1}: chi2 {stat:.1f} >= {crit:.1f}"


def always_accept(logits, drafts, q, sampler):
    """A broken rule: accept every draft and draw the bonus token from p."""
    k = drafts.shape[0]
    return torch.tensor(k), sampler.draw(sampler.probs(logits[k]))


def greedy_residual(logits, drafts, q, sampler):
    """Another broken rule: correct acceptance test, but resample from p instead of norm(max(p - q, 0))."""
    n, _ = speculative_accept(logits, drafts, q, sampler)
    return n, sampler.draw(sampler.probs(logits[n]))


@pytest.mark.parametrize("broken", [always_accept, greedy_residual])
def test_the_same_test_catches_a_broken_rule(tiny, sampling_setup, monkeypatch, broken):
    prompt, adapter, (m1, m2) = sampling_setup
    monkeypatch.setattr(decoding, "speculative_accept", broken)
    out = sample_kangaroo(tiny, adapter, prompt, N_SAMPLES, **SAMPLING)
    stat, crit = chi_square([t[1] for t in out], m1)
    assert stat > crit, f"the broken rule {broken.__name__} went unnoticed: chi2 {stat:.1f} < {crit:.1f}"


def test_acceptance_rule_alone_reproduces_p():
    """speculative_accept on fixed p, q: the first emitted token is distributed as p_0."""
    g = torch.Generator().manual_seed(0)
    V, k, trials = 6, 3, 12000
    p = torch.softmax(torch.randn(k + 1, V, generator=g) * 1.5, -1)
    q = torch.softmax(torch.randn(k, V, generator=g) * 1.5, -1)
    sampler = Sampler(1.0, 1.0, 0, torch.device("cpu"))
    first = []
    for _ in range(trials):
        drafts = torch.multinomial(q, 1, generator=g).view(-1)
        n, nxt = speculative_accept(p.log(), drafts, q, sampler)
        first.append(int(drafts[0]) if n > 0 else int(nxt))
    stat, crit = chi_square(first, p[0])
    assert stat < crit
    wrong_stat, _ = chi_square(first, q[0])  # and the test has power: q_0 is rejected
    assert wrong_stat > crit


@pytest.mark.parametrize("fixed_rows", [True, False])
@pytest.mark.parametrize("exit_layer,variant,threshold,max_draft", TINY_SETTINGS[:4])
def test_static_graph_steps_are_lossless_too(tiny, exit_layer, variant, threshold, max_draft, fixed_rows):
    """The fixed-shape steps that CUDA graphs capture (run eagerly here, on the CPU) == AR."""
    adapter = new_adapter(tiny, exit_layer, variant, seed=exit_layer)
    graphs = GraphOptions(fixed_rows=fixed_rows)
    for prompt in tiny_prompts(8):
        ar = generate(tiny, prompt, method="ar", max_new_tokens=40)
        ar_static = generate(tiny, prompt, method="ar", max_new_tokens=40, max_draft=max_draft, cuda_graphs=graphs)
        kg = generate(tiny, prompt, adapter=adapter, threshold=threshold, max_draft=max_draft, max_new_tokens=40,
                      cuda_graphs=graphs)
        eager = generate(tiny, prompt, adapter=adapter, threshold=threshold, max_draft=max_draft, max_new_tokens=40)
        assert ar_static.token_ids == kg.token_ids == ar.token_ids, prompt
        assert [(r.drafts, r.accepted) for r in kg.trace] == [(r.drafts, r.accepted) for r in eager.trace]


def test_fixed_rows_make_bf16_kangaroo_identical_to_bf16_ar():
    """In bf16, steps over 1 row and over k+1 rows round differently; with fixed rows every step has
    the same shapes, so AR and Kangaroo compute the same bits. Late exits, gamma 8, 24 prompts: the
    long accepted runs are where a divergence would show, and a wrong padding row (a cache write at a
    wrong position) would break identity at once."""
    model = load_model("tiny-random", seed=3, dtype=torch.bfloat16)
    adapter = new_adapter(model, 3, "none")
    graphs = GraphOptions(fixed_rows=True)
    accepted_runs = 0
    for prompt in tiny_prompts(24):
        ar = generate(model, prompt, method="ar", max_new_tokens=48, max_draft=8, cuda_graphs=graphs)
        kg = generate(model, prompt, adapter=adapter, threshold=0.0, max_draft=8, max_new_tokens=48,
                      cuda_graphs=graphs)
        assert kg.token_ids == ar.token_ids, prompt
        accepted_runs += sum(n >= 3 for n in kg.accept_lengths)
    assert accepted_runs > 0


def test_layer_calls_trace_as_one_compiled_function(tiny):
    """torch.compile (backend "eager" here: tracing only) takes every layer call in one graph per
    shape, with no graph breaks; the compiled steps stay lossless."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    adapter = new_adapter(tiny, 2, seed=1)
    graphs = GraphOptions(fixed_rows=True, compile="eager")
    for prompt in tiny_prompts(3):
        ar = generate(tiny, prompt, method="ar", max_new_tokens=24, cuda_graphs=False)
        kg = generate(tiny, prompt, adapter=adapter, max_new_tokens=24, cuda_graphs=graphs)
        assert kg.token_ids == ar.token_ids
    assert counters["stats"]["unique_graphs"] <= 3  # a block, the adapter (+ one recompile at most)
    assert not counters["graph_break"]


def test_a_failing_compile_falls_back_to_plain_steps(tiny):
    """Where torch.compile cannot run (no triton, no C++ compiler) the steps run uncompiled, with a warning."""
    adapter = new_adapter(tiny, 2, seed=1)
    with pytest.warns(UserWarning, match="torch.compile \\(no-such-backend\\) failed"):
        kg = generate(tiny, "hello", adapter=adapter, max_new_tokens=12,
                      cuda_graphs=GraphOptions(compile="no-such-backend"))
    assert kg.token_ids == generate(tiny, "hello", method="ar", max_new_tokens=12).token_ids


def test_graphs_are_greedy_only(tiny):
    with pytest.raises(ValueError, match="greedy decoding only"):
        generate(tiny, "hi", adapter=new_adapter(tiny, 2), temperature=0.8, cuda_graphs=True)
