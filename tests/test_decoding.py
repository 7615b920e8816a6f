"""Losslessness: every method's greedy output == greedy AR token for token; sampling reproduces the
target distribution; the draft's caches stay consistent with an uncached recompute."""

import math

import pytest
import torch

from kangaroo_lab import accept, generate, load_adapter, new_adapter
from kangaroo_lab.questions import load_minibench
from kangaroo_lab.templates import training_prompts
from kangaroo_lab.accept import Sampler, sample_accept
from kangaroo_lab.explore import exact_marginals
from kangaroo_lab.graphs import GraphOptions
from kangaroo_lab.models import load_model
from kangaroo_lab.rounds import RoundSteps

# (exit layer, variant, threshold, max_draft): early and late exits, trained-like and plain heads,
# thresholds from "always draft to gamma" to "one draft per round"
TINY_SETTINGS = [
    (1, "attention", 0.0, 1),
    (2, "attention", 0.6, 6),
    (3, "attention", 0.3, 3),
    (2, "attention", 1.0, 4),
    (2, "attention+ffn", 0.1, 5),
    (1, "linear", 0.0, 8),
    (3, "none", 0.05, 6),
]
# (method, options): lookup lengths and n-grams; trees narrow and wide, shallow and deep, with eta on the
# device (a mask) and on the host; the hybrid with short and long lookups
TREE_SETTINGS = [
    ("pld", dict(lookup_tokens=1, n_max=1)),
    ("pld", dict(lookup_tokens=8, n_max=3)),
    ("pld", dict(lookup_tokens=16, n_max=4)),
    ("kangaroo-tree", dict(top_k=1, node_budget=4, max_draft=3)),
    ("kangaroo-tree", dict(top_k=2, node_budget=16, max_draft=4, threshold=0.0)),
    ("kangaroo-tree", dict(top_k=4, node_budget=32, max_draft=5, threshold=0.2, early_exit="device")),
    ("kangaroo-tree", dict(top_k=8, node_budget=64, max_draft=3, threshold=0.1, early_exit="host")),
    ("kangaroo-tree", dict(top_k=3, node_budget=9, max_draft=2)),
    ("kangaroo+lookup", dict(top_k=4, node_budget=16, max_draft=3, lookup_tokens=8)),
    ("kangaroo+lookup", dict(top_k=2, node_budget=12, max_draft=2, lookup_tokens=4, threshold=0.3)),
    (
        "kangaroo+lookup",
        dict(top_k=4, node_budget=40, max_draft=4, lookup_tokens=16, early_exit="host", threshold=0.05),
    ),
    ("kangaroo", dict(threshold=0.6, max_draft=6, early_exit="device")),
]


def tiny_prompts(n):
    return [" ".join(q.turns[0].split()[:12]) for q in training_prompts(n, seed=3)]


def repetitive_prompts(n):
    """Prompts with repeats, so that prompt lookup finds matches on the byte-level tiny model."""
    return [p + " | " + p for p in tiny_prompts(n)]


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


def whole_branches(res) -> int:
    """Rounds whose accepted path ends at a leaf of the round's tree (a whole branch accepted)."""
    n = 0
    for r in res.trace:
        if r.accepted:
            last = r.accepted_indices[-1]
            parents = r.parents if r.parents is not None else list(range(-1, len(r.drafts) - 1))
            n += last not in parents
    return n


@pytest.mark.parametrize("method,options", TREE_SETTINGS)
def test_greedy_trees_and_lookup_equal_ar_tiny_random(tiny, method, options):
    """Every setting on 12 prompts with repeats; a late exit without adapter drafts well enough for
    deep trees, so whole branches get accepted too."""
    adapter = new_adapter(tiny, 3, "none")
    accepted = branches = 0
    for prompt in repetitive_prompts(12):
        ar = generate(tiny, prompt, method="ar", max_new_tokens=40)
        res = generate(tiny, prompt, adapter=adapter, method=method, max_new_tokens=40, **options)
        assert res.token_ids == ar.token_ids, (prompt, method, options)
        accepted += sum(res.draft_accepted)
        branches += whole_branches(res)
    assert accepted > 0 and branches > 0


SMOL_SETTINGS = [(2, "attention", 0.6, 6), (28, "none", 0.0, 4), (29, "attention", 0.3, 8), (15, "none", 0.6, 3)]
SMOL_TREES = [  # in the order of the mini-bench's categories: each method on one copying category (summary, rag)
    ("kangaroo-tree", dict(top_k=4, node_budget=32, max_draft=4)),  # mt_bench
    ("pld", dict(lookup_tokens=4, n_max=2)),  # translation
    ("pld", dict(lookup_tokens=16)),  # summarization
    ("kangaroo-tree", dict(top_k=2, node_budget=16, max_draft=6, threshold=0.1, early_exit="host")),  # qa
    ("kangaroo+lookup", dict(top_k=8, node_budget=48, max_draft=4, lookup_tokens=16, threshold=0.05)),  # math
    ("kangaroo+lookup", dict(top_k=4, node_budget=16, max_draft=3, lookup_tokens=8)),  # rag
]
SMOL_TOKENS = 32


@pytest.fixture(scope="module")
def smol_answers(smol):
    """One mini-bench question per category and its greedy AR answer, computed once for both tests below."""
    questions = load_minibench()[3::10]
    return [(q, generate(smol, q.turns[0], method="ar", max_new_tokens=SMOL_TOKENS).token_ids) for q in questions]


@pytest.mark.slow
def test_greedy_kangaroo_equals_ar_smollm2(smol, smol_answers):
    """Four (exit layer, variant, threshold, max_draft) settings over the six categories of the
    mini-bench, one generation per category."""
    adapters = {s: new_adapter(smol, s[0], s[1]) for s in SMOL_SETTINGS}
    full_rounds = 0
    for i, (q, ar) in enumerate(smol_answers):
        setting = SMOL_SETTINGS[i % len(SMOL_SETTINGS)]
        kg = generate(
            smol,
            q.turns[0],
            adapter=adapters[setting],
            threshold=setting[2],
            max_draft=setting[3],
            max_new_tokens=SMOL_TOKENS,
        )
        assert kg.token_ids == ar, (q.question_id, setting)
        full_rounds += sum(r.accepted == len(r.drafts) > 0 for r in kg.trace)
    assert full_rounds > 0  # rounds where every draft was accepted (bonus token + adapter gap) were covered


@pytest.mark.slow
def test_greedy_trees_and_lookup_equal_ar_smollm2(smol, smol_answers):
    """The shipped adapter (trained, exit layer 2) drafting trees, prompt lookup and the hybrid: six
    settings, each on its own category of the mini-bench (every setting and every category once)."""
    adapter = load_adapter(smol)
    branches = 0
    for (q, ar), (method, options) in zip(smol_answers, SMOL_TREES, strict=True):
        res = generate(smol, q.turns[0], adapter=adapter, method=method, max_new_tokens=SMOL_TOKENS, **options)
        assert res.token_ids == ar, (q.question_id, method, options)
        branches += whole_branches(res)
    assert branches > 0


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


def test_a_draft_exactly_at_eta_does_not_stop_the_round(tiny):
    """The boundary: drafting stops once a draft's confidence falls *below* eta (confidence < eta);
    a draft whose confidence equals eta is as good as eta asks, so drafting goes on."""
    adapter = new_adapter(tiny, 2)
    free = generate(tiny, "abc", adapter=adapter, threshold=0.0, max_draft=5, max_new_tokens=30)
    c = free.trace[0].confidences[0]  # the first draft's confidence, exactly as the draft step computed it
    at = generate(tiny, "abc", adapter=adapter, threshold=c, max_draft=5, max_new_tokens=30)
    assert at.trace[0].confidences[0] == c and len(at.trace[0].drafts) > 1  # equal: go on
    above = generate(tiny, "abc", adapter=adapter, threshold=math.nextafter(c, 1.0), max_draft=5, max_new_tokens=30)
    assert len(above.trace[0].drafts) == 1  # the least float above it: stop after the first draft


def test_device_early_exit_keeps_a_level_exactly_at_eta():
    """The same boundary on the device (trees, `early_exit="device"`): a level whose best cumulative
    log-probability equals log(eta) stays valid; one float below it ends the tree."""
    from kangaroo_lab.rounds import RoundBuffers, set_nodes
    from kangaroo_lab.tree import Layout

    buf = RoundBuffers.new(Layout(0, (1, 1), 1), torch.device("cpu"), caches=[])  # the root and two levels
    buf.valid[0] = True
    buf.log_eta.fill_(math.log(0.4))
    log_eta = buf.log_eta
    set_nodes(buf, torch.tensor([1]), torch.tensor([7]), torch.tensor([0]), log_eta.clone(), log_eta.exp())
    assert buf.cum[1] == log_eta[0] and bool(buf.alive) and bool(buf.valid[1])  # exactly at eta: the tree goes on
    below = torch.nextafter(log_eta, log_eta - 1)
    set_nodes(buf, torch.tensor([2]), torch.tensor([8]), torch.tensor([0]), below, log_eta.exp())
    valid, alive = buf.valid, buf.alive
    assert bool(valid[2]) and not bool(alive)  # drafted while alive, but below eta: the levels after it are masked


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
def pooled(probs: torch.Tensor, n: int, min_expected: float = 5.0) -> torch.Tensor:
    """The categories kept apart at n samples (expected >= min_expected times); the rest form one bin."""
    return probs.double() * n >= min_expected


def critical_value(df: int) -> float:
    """The chi-square quantile at 1 - 1e-3 (Wilson-Hilferty approximation)."""
    z = 3.0902  # standard normal quantile at 1 - 1e-3
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def chi_square(samples: list[int], probs: torch.Tensor, min_expected: float = 5.0) -> tuple[float, float]:
    """Pearson's statistic of samples against exact probabilities, and its critical value at alpha = 1e-3.

    Categories expected fewer than `min_expected` times are pooled into one bin."""
    n = len(samples)
    counts = torch.bincount(torch.tensor(samples), minlength=probs.numel()).double()
    expected = probs.double() * n
    big = pooled(probs, n, min_expected)
    obs = torch.cat([counts[big], counts[~big].sum().view(1)])
    exp = torch.cat([expected[big], expected[~big].sum().view(1)])
    keep = exp > 0
    stat = ((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum().item()
    return stat, critical_value(int(keep.sum()) - 1)


def detectable_divergence(df: int, n: int, power: float = 0.9, draws: int = 200_000) -> float:
    """The chi-square divergence sum((q - p)^2 / p) over the bins that Pearson's test at n samples
    (df degrees of freedom, alpha = 1e-3) detects with probability `power`: under q the statistic is
    about noncentral chi-square with noncentrality n * divergence. Seeded Monte Carlo and bisection."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        z = torch.randn(draws, dtype=torch.float64)
        rest = torch.distributions.Chi2(torch.tensor(df - 1.0, dtype=torch.float64)).sample((draws,))
    crit, lo, hi = critical_value(df), 0.0, 10.0 * df
    for _ in range(40):
        lam = (lo + hi) / 2
        caught = ((z + math.sqrt(lam)) ** 2 + rest > crit).double().mean().item()
        lo, hi = (lam, hi) if caught < power else (lo, lam)
    return hi / n


def sample(model, adapter, prompt, n, method="kangaroo", **kw):
    model = type(model)(**{**model.__dict__, "eos_token_ids": frozenset()})  # no early stop: fixed length
    return [generate(model, prompt, adapter=adapter, method=method, seed=s, max_new_tokens=3, **kw) for s in range(n)]


SAMPLING = dict(temperature=0.7, top_p=0.95)
METHOD_SAMPLING = {  # the paper's chain (drafts drawn from q), prompt lookup, a tree (top-k siblings)
    "kangaroo": dict(threshold=0.0, max_draft=3),
    "pld": dict(lookup_tokens=3, n_max=2),
    "kangaroo-tree": dict(threshold=0.0, top_k=3, node_budget=10, max_draft=3),
}
# Power of the exact tests below (`chi_square`: pooled bins, alpha = 1e-3) at N_SAMPLES = 3000, from
# the noncentral chi-square (`detectable_divergence`): with 90% probability they fail for any
# distribution of the 2nd token whose chi-square divergence from the exact marginal over the test's
# bins is >= 0.027 (108 dof), of the 3rd token >= 0.029 (127 dof). Since that divergence is >= 4 TV^2,
# any shift of total variation >= 0.082 (2nd token) / 0.085 (3rd) between the bins is caught.
N_SAMPLES = 3000
STATED_POWER = {1: 0.027, 2: 0.029}  # position -> chi-square divergence caught with 90% power at N_SAMPLES


@pytest.fixture(scope="module")
def sampling_setup(tiny):
    prompt = tiny.encode("Once upon a time, a time")
    exact = exact_marginals(tiny, prompt, Sampler(SAMPLING["temperature"], SAMPLING["top_p"], 0, tiny.device))
    return prompt, new_adapter(tiny, 3, "none"), exact


def test_the_sampling_tests_have_their_stated_power(sampling_setup):
    """The numbers in the comment above N_SAMPLES, recomputed from the exact marginals."""
    _, _, marginals = sampling_setup
    for position, exact in zip((1, 2), marginals):
        big = pooled(exact, N_SAMPLES)
        df = int(big.sum()) + bool((~big).any()) - 1
        assert detectable_divergence(df, N_SAMPLES) == pytest.approx(STATED_POWER[position], abs=0.001)


@pytest.fixture(scope="module")
def next_logits(tiny):
    """The target's logits (V,) after a token sequence, memoised. The patched lookups below ask for
    the continuation of the same few prefixes in many samples (all start from one prompt, and the
    first token has ~100 likely values): each is computed once per test module, not once per
    proposed token of each sample."""
    memo: dict[tuple[int, ...], torch.Tensor] = {}

    def logits(seq: tuple[int, ...]) -> torch.Tensor:
        if seq not in memo:
            with torch.inference_mode():
                memo[seq] = tiny.engine.head(tiny.engine.hidden_states(torch.tensor([seq]))[-1])[0, -1]
        return memo[seq]

    return logits


@pytest.fixture
def greedy_lookup(next_logits, monkeypatch):
    """Prompt lookup whose 'match' is the target's own greedy continuation of the committed tokens.

    On the random tiny model real n-gram matches are rarely accepted, which would leave a sampling
    test without power; any proposal that depends on the committed tokens alone keeps the rule exact,
    and this one gets accepted often, so a broken rule shows."""
    from kangaroo_lab.lookup import PromptLookup

    def propose(self):
        seq = tuple(self.tokens)
        for _ in range(self.lookup_tokens):
            seq += (int(next_logits(seq).argmax()),)
        return list(seq[len(self.tokens) :]), 1

    monkeypatch.setattr(PromptLookup, "propose", propose)


@pytest.mark.parametrize("method", list(METHOD_SAMPLING))
def test_sampling_matches_target_distribution(tiny, sampling_setup, method, request):
    """Tokens 2 and 3 of 3000 samples against their exact marginals (power: see N_SAMPLES)."""
    prompt, adapter, (m1, m2) = sampling_setup
    if method == "pld":
        request.getfixturevalue("greedy_lookup")
    out = sample(tiny, adapter, prompt, N_SAMPLES, method, **SAMPLING, **METHOD_SAMPLING[method])
    assert sum(sum(r.draft_accepted) for r in out) > N_SAMPLES // 10  # drafts were proposed and accepted
    for position, exact in [(1, m1), (2, m2)]:  # tokens 2 and 3 come through the acceptance rule
        stat, crit = chi_square([r.token_ids[position] for r in out], exact)
        assert stat < crit, f"{method}, token {position + 1}: chi2 {stat:.1f} >= {crit:.1f}"


def broken_rule(update_residual: bool = True, accept_all: bool = False):
    """`sample_accept` with one mistake: the residual not updated after a rejected candidate, or every
    candidate accepted."""

    def rule(tokens, parents, valid, p, q, sampler):
        children = {}
        for i in range(1, len(tokens)):
            if valid[i]:
                children.setdefault(parents[i], []).append(i)
        node, path = 0, [0]
        while True:
            r = p[node]
            for c in children.get(node, []):
                x = tokens[c]
                u = torch.rand((), generator=sampler.generator)
                qx = q[c, x] if q is not None else 1.0
                if accept_all or u * qx < r[x]:
                    path.append(c)
                    node = c
                    break
                if update_residual:
                    r = (r - q[c]).clamp_min(0) if q is not None else r.index_fill(0, torch.tensor([x]), 0.0)
                    r = r / r.sum()
            else:
                return path, sampler.draw(r).view(1), 0

    return rule


# (method, broken rule, samples): a control whose shift is large runs on fewer samples than the exact
# test; caught there, it is caught a fortiori at N_SAMPLES (for a fixed shift the statistic grows with n).
# Measured on the 2nd token: statistic / critical value, the chi-square divergence it implies,
# (statistic - dof) / n, and the exact test's power against that divergence at N_SAMPLES:
BROKEN_RULES = {
    # every draft accepted: 428 / 92 at 1,000 samples (54 dof): divergence ~0.37, power 1.000
    "kangaroo-accept-all": ("kangaroo", broken_rule(accept_all=True), 1000),
    # a rejected draft resampled from p instead of norm(max(p - q, 0)): 230 / 159 at 3,000 (108 dof):
    # ~0.041, power 0.998; the smallest shift of these controls, so it keeps every sample
    "kangaroo-residual-not-updated": ("kangaroo", broken_rule(update_residual=False), N_SAMPLES),
    # every lookup token accepted: 534 / 50 at 500 samples (23 dof): ~1.0, power 1.000
    "pld-accept-all": ("pld", broken_rule(accept_all=True), 500),
    # siblings tried against a stale residual: 275 / 135 at 2,000 samples (88 dof): ~0.094 (347 / 159 at
    # 3,000: ~0.080), power 1.000
    "kangaroo-tree-residual-not-updated": ("kangaroo-tree", broken_rule(update_residual=False), 2000),
}


@pytest.mark.parametrize("name", list(BROKEN_RULES))
def test_the_same_test_catches_a_broken_rule(tiny, sampling_setup, monkeypatch, name, request):
    """The controls: the exact test's chi-square on the 2nd token fails once `sample_accept` is broken."""
    method, broken, n = BROKEN_RULES[name]
    prompt, adapter, (m1, m2) = sampling_setup
    if method == "pld":
        request.getfixturevalue("greedy_lookup")
    monkeypatch.setattr(accept, "sample_accept", broken)  # where Sampler.accept looks it up
    out = sample(tiny, adapter, prompt, n, method, **SAMPLING, **METHOD_SAMPLING[method])
    stat, crit = chi_square([r.token_ids[1] for r in out], m1)
    assert stat > crit, f"the broken rule went unnoticed: {name}: chi2 {stat:.1f} < {crit:.1f}"


@pytest.fixture
def rejected_then_greedy_lookup(tiny, next_logits, monkeypatch):
    """Prompt lookup that proposes, in a generation's first round, a token the target gives probability
    0 (its least likely token, outside top-p): a guaranteed rejection; in later rounds, the target's
    greedy continuation (often accepted). The 3rd generated token then always comes from round 2,
    after a rejection, which is where positions and caches must have been rewound."""
    from kangaroo_lab.lookup import PromptLookup

    sampler = Sampler(SAMPLING["temperature"], SAMPLING["top_p"], 0, tiny.device)

    def propose(self):
        self.rounds = getattr(self, "rounds", 0) + 1
        seq = tuple(self.tokens)
        for _ in range(self.lookup_tokens):
            logits = next_logits(seq)
            if self.rounds == 1 and len(seq) == len(self.tokens):
                seq += (int(logits.argmin()),)
                assert sampler.probs(logits)[seq[-1]] == 0.0  # a guaranteed rejection
            else:
                seq += (int(logits.argmax()),)
        return list(seq[len(self.tokens) :]), 1

    monkeypatch.setattr(PromptLookup, "propose", propose)


def positions_not_rewound(monkeypatch):
    """The mutant as a patch: after a round the root advances past every node verified, not only past
    the accepted ones (greedy output would break at once; sampling shows it only after a rejection)."""
    from kangaroo_lab import rounds

    commit = rounds.commit_round

    def not_rewound(buf, path, n_acc, token, n, *rest):
        commit(buf, path, n_acc, token, n, *rest)
        buf.base.add_(n - 1 - n_acc)

    monkeypatch.setattr(rounds, "commit_round", not_rewound)


AFTER_REJECTION = {  # the 3rd token always comes from round 2 (the forced lookup above)
    "pld": dict(lookup_tokens=3, n_max=1),
}


@pytest.mark.parametrize("broken", [False, True], ids=["exact", "control-positions-not-rewound"])
@pytest.mark.parametrize("method", list(AFTER_REJECTION))
def test_sampling_after_a_rejection_matches_target_distribution(
    tiny, sampling_setup, monkeypatch, method, broken, request
):
    """The 3rd token, drawn in a round that follows a rejection, is distributed as the target's
    (exact marginal; power: see N_SAMPLES); and the same test fails when positions are not rewound
    after the rejection (statistic 335 / 182 at 3,000 samples, 127 dof: chi-square divergence ~0.069, power 1.000)."""
    prompt, adapter, (_, m2) = sampling_setup
    if method == "pld":
        request.getfixturevalue("rejected_then_greedy_lookup")
    if broken:
        positions_not_rewound(monkeypatch)
    out = sample(tiny, adapter, prompt, N_SAMPLES, method, **SAMPLING, **AFTER_REJECTION[method])
    later = [r for r in out if r.trace[0].accepted == 0 and len(r.trace) > 1]
    assert len(later) == N_SAMPLES  # every 3rd token came after a rejection
    assert sum(r.trace[1].accepted > 0 for r in later) > N_SAMPLES // 20  # through the acceptance rule too
    stat, crit = chi_square([r.token_ids[2] for r in out], m2)
    if broken:
        assert stat > crit, f"positions not rewound went unnoticed on {method}: chi2 {stat:.1f} < {crit:.1f}"
    else:
        assert stat < crit, f"{method}, token 3 after a rejection: chi2 {stat:.1f} >= {crit:.1f}"


def first_emitted(path, token, tokens) -> int:
    return tokens[path[1]] if len(path) > 1 else int(token)


def test_acceptance_rule_alone_reproduces_p():
    """sample_accept on fixed p: the first emitted token is distributed as p_0, for a chain of drafts
    drawn from q and for fixed sibling candidates (point masses, tried one after another)."""
    g = torch.Generator().manual_seed(0)
    V, trials = 6, 12000
    p = torch.softmax(torch.randn(4, V, generator=g) * 1.5, -1)
    q = torch.softmax(torch.randn(4, V, generator=g) * 1.5, -1)
    sampler = Sampler(1.0, 1.0, 0, torch.device("cpu"))
    chain, siblings = [], []
    q_by_node = torch.cat([torch.zeros(1, V), q[:3]])  # row c: the distribution node c's token was drawn from
    for _ in range(trials):
        drafts = [torch.multinomial(q[i], 1, generator=g).item() for i in range(3)]
        path, token, _ = sample_accept([0, *drafts], [-1, 0, 1, 2], [True] * 4, p, q_by_node, sampler)
        chain.append(first_emitted(path, token, [0, *drafts]))
        candidates = [0, 2, 5, 1]  # three siblings below the root, their order fixed
        path, token, _ = sample_accept(candidates, [-1, 0, 0, 0], [True] * 4, p, None, sampler)
        siblings.append(first_emitted(path, token, candidates))
    for first in (chain, siblings):
        stat, crit = chi_square(first, p[0])
        assert stat < crit
        wrong_stat, _ = chi_square(first, (p[0] + q[0]) / 2)  # and the test has power
        assert wrong_stat > crit
    assert len(set(siblings)) == V  # the residual after rejected siblings reaches every token


# ------------------------------------------------------------------------------- draft caches
def record_root_drafts(monkeypatch) -> list:
    """Patch RoundSteps so that each round's first draft step records the root's draft logits."""
    seen = []
    grow = RoundSteps._grow

    def recording(self, level, parents, logits):
        if level == 1:
            seen.append(logits[0].clone())
        return grow(self, level, parents, logits)

    monkeypatch.setattr(RoundSteps, "_grow", recording)
    return seen


def uncached_draft_logits(model, adapter, seq: list[int]) -> torch.Tensor:
    """The draft's logits after `seq`, recomputed without any cache: shallow layers and adapter over
    the whole sequence at once."""
    with torch.inference_mode():
        h = model.engine.hidden_states(torch.tensor([seq]), upto=adapter.exit_layer)[-1]
        return model.engine.lm_head(adapter(h, start=None)[0, -1])


def draft_cache_errors(model, adapter, monkeypatch, method, cuda_graphs=None, **options) -> list[float]:
    """Per round: max |cached draft logits - uncached recompute| at the round's root."""
    seen = record_root_drafts(monkeypatch)
    res = generate(
        model,
        "abcabc hello abcabc hello",
        adapter=adapter,
        method=method,
        max_new_tokens=40,
        cuda_graphs=cuda_graphs,
        **options,
    )
    errors, done = [], 1  # the prefill emitted the first token
    for logits, r in zip(seen, res.trace):
        errors.append(
            float((logits - uncached_draft_logits(model, adapter, res.prompt_ids + res.token_ids[:done])).abs().max())
        )
        done += r.accepted + 1
    return errors


# eager steps, and the steps CUDA graphs capture (run eagerly on the CPU) with natural and fixed rows
CACHE_PATHS = [None, GraphOptions(bucket_rows=False), GraphOptions(fixed_rows=20)]


@pytest.mark.parametrize("graphs", CACHE_PATHS, ids=["eager", "graphs", "graphs-fixed-rows"])
@pytest.mark.parametrize(
    "method,options",
    [
        ("kangaroo", dict(threshold=0.0, max_draft=4)),
        ("kangaroo", dict(threshold=0.0, max_draft=1)),
        ("kangaroo-tree", dict(top_k=3, node_budget=16, max_draft=4)),
        ("kangaroo+lookup", dict(top_k=2, node_budget=16, max_draft=3, lookup_tokens=6)),
    ],
)
def test_cached_draft_distributions_equal_an_uncached_recompute(tiny, monkeypatch, method, options, graphs):
    """At every round the draft at the root, computed from the caches (shallow layers and adapter,
    filled while drafting, verifying and compacting), equals the draft recomputed over the committed
    sequence from scratch."""
    adapter = new_adapter(tiny, 3, "attention", seed=4)
    errors = draft_cache_errors(tiny, adapter, monkeypatch, method, graphs, **options)
    assert len(errors) > 5 and max(errors) <= 1e-4, errors


def drop_last_level_adapter_write(monkeypatch):
    """The mutant as a patch: verification computes the last level's shallow states but skips the
    adapter's KV write for them (the eager and the captured steps share `RoundSteps.verify`)."""
    verify = RoundSteps.verify

    def without_adapter_write(self, d):
        drafter, self.drafter = self.drafter, None  # verify writes the drafter's cache only with a drafter
        try:
            return verify(self, d)
        finally:
            self.drafter = drafter

    monkeypatch.setattr(RoundSteps, "verify", without_adapter_write)


@pytest.mark.parametrize("graphs", CACHE_PATHS, ids=["eager", "graphs", "graphs-fixed-rows"])
@pytest.mark.parametrize(
    "method,options",
    [
        ("kangaroo", dict(threshold=0.0, max_draft=1)),
        ("kangaroo-tree", dict(top_k=3, node_budget=4, max_draft=1)),
    ],
)
def test_a_missing_adapter_cache_write_is_caught(tiny, monkeypatch, method, options, graphs):
    """The control: verification skips the adapter's KV write for the last level of drafts (one level
    per round here, so every accepted draft is a last one). Greedy output is still exact (it costs
    acceptance, not losslessness), but the cached drafts drift from a recompute: in the eager and the
    captured steps, for the chain and the tree."""
    adapter = new_adapter(tiny, 3, "attention", seed=4)
    drop_last_level_adapter_write(monkeypatch)
    ar = generate(tiny, "abcabc hello abcabc hello", method="ar", max_new_tokens=40)
    res = generate(
        tiny,
        "abcabc hello abcabc hello",
        adapter=adapter,
        method=method,
        max_new_tokens=40,
        cuda_graphs=graphs,
        **options,
    )
    assert res.token_ids == ar.token_ids and sum(res.draft_accepted) > 0
    errors = draft_cache_errors(tiny, adapter, monkeypatch, method, graphs, **options)
    assert max(errors) > 1e-3, errors  # 10x the tolerance of the test above (which sees ~1e-6)


STATIC_SETTINGS = [("kangaroo", dict(threshold=t, max_draft=g)) for _, _, t, g in TINY_SETTINGS[:4]] + [
    ("pld", dict(lookup_tokens=8)),
    ("kangaroo-tree", dict(top_k=3, node_budget=20, max_draft=4, threshold=0.1)),
    ("kangaroo+lookup", dict(top_k=2, node_budget=20, max_draft=3, lookup_tokens=6, early_exit="host", threshold=0.05)),
]


ROWS = [GraphOptions(fixed_rows=64), GraphOptions(), GraphOptions(bucket_rows=False)]
STATIC_RUNS = [(m, o, g) for m, o in STATIC_SETTINGS for g in ROWS] + [
    (m, o, GraphOptions(fixed_rows=True)) for m, o in STATIC_SETTINGS if m == "kangaroo"
]  # True: the chain's rows


@pytest.mark.parametrize("method,options,graphs", STATIC_RUNS, ids=str)
def test_static_graph_steps_are_lossless_too(tiny, method, options, graphs):
    """The steps that CUDA graphs capture, with fixed, power-of-two or natural rows (run eagerly here,
    on the CPU) == AR, and round for round the same trees as the plain steps."""
    adapter = new_adapter(tiny, 3, "none")
    for prompt in repetitive_prompts(6):
        ar = generate(tiny, prompt, method="ar", max_new_tokens=40)
        ar_static = generate(
            tiny, prompt, method="ar", max_new_tokens=40, max_draft=options.get("max_draft", 6), cuda_graphs=graphs
        )
        static = generate(
            tiny, prompt, adapter=adapter, method=method, max_new_tokens=40, cuda_graphs=graphs, **options
        )
        eager = generate(tiny, prompt, adapter=adapter, method=method, max_new_tokens=40, **options)
        assert ar_static.token_ids == static.token_ids == ar.token_ids, prompt
        assert [(r.drafts, r.parents, r.accepted) for r in static.trace] == [
            (r.drafts, r.parents, r.accepted) for r in eager.trace
        ]


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
        kg = generate(model, prompt, adapter=adapter, threshold=0.0, max_draft=8, max_new_tokens=48, cuda_graphs=graphs)
        assert kg.token_ids == ar.token_ids, prompt
        accepted_runs += sum(n >= 3 for n in kg.accept_lengths)
    assert accepted_runs > 0


def test_fixed_rows_make_bf16_trees_identical_to_bf16_ar():
    """The same for a tree with a lookup branch: every step over 32 rows, in AR too."""
    model = load_model("tiny-random", seed=3, dtype=torch.bfloat16)
    adapter = new_adapter(model, 3, "none")
    graphs = GraphOptions(fixed_rows=32)
    options = dict(top_k=3, node_budget=26, max_draft=4, lookup_tokens=8)
    branches = 0
    for prompt in repetitive_prompts(12):
        ar = generate(model, prompt, method="ar", max_new_tokens=48, cuda_graphs=graphs)
        res = generate(
            model, prompt, adapter=adapter, method="kangaroo+lookup", max_new_tokens=48, cuda_graphs=graphs, **options
        )
        assert res.token_ids == ar.token_ids, prompt
        branches += whole_branches(res)
    assert branches > 0


def test_layer_calls_trace_as_one_compiled_function(tiny):
    """torch.compile (backend "eager" here: tracing only) takes every layer call, and each piece of
    a round's glue (the mask, tree growth, acceptance + compaction), in one graph per shape, with no
    graph breaks; the compiled steps stay lossless."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    adapter = new_adapter(tiny, 2, seed=1)
    graphs = GraphOptions(fixed_rows=32, compile="eager")
    for prompt in tiny_prompts(3):
        ar = generate(tiny, prompt, method="ar", max_new_tokens=24, cuda_graphs=False)
        res = generate(tiny, prompt, adapter=adapter, method="kangaroo-tree", max_new_tokens=24, cuda_graphs=graphs)
        assert res.token_ids == ar.token_ids
    # the block and the adapter over 32 rows; the mask; tree growth from the root (1 parent -> 4 nodes),
    # level 1 (4 -> 6) and the next levels (6 -> 6); acceptance + compaction: one graph each, built
    # during the capture and never again
    assert counters["stats"]["unique_graphs"] <= 7
    assert not counters["graph_break"]


def test_a_failing_compile_falls_back_to_plain_steps(tiny):
    """Where torch.compile cannot run (no triton, no C++ compiler) the steps run uncompiled, with a warning."""
    adapter = new_adapter(tiny, 2, seed=1)
    with pytest.warns(UserWarning, match="torch.compile \\(no-such-backend\\) failed"):
        kg = generate(
            tiny, "hello", adapter=adapter, max_new_tokens=12, cuda_graphs=GraphOptions(compile="no-such-backend")
        )
    assert kg.token_ids == generate(tiny, "hello", method="ar", max_new_tokens=12).token_ids


def test_graphs_are_greedy_only(tiny):
    with pytest.raises(ValueError, match="greedy decoding only"):
        generate(tiny, "hi", adapter=new_adapter(tiny, 2), temperature=0.8, cuda_graphs=True)


def test_captured_steps_do_not_keep_dropped_adapters_alive(tiny):
    """The captured steps are kept with their adapter: a process that loads adapters one after another
    keeps only the live ones (and their graphs), so its memory stays flat."""
    import gc
    import weakref

    refs = []
    for seed in range(4):
        adapter = new_adapter(tiny, 2, seed=seed)
        for method in ("kangaroo", "kangaroo-tree"):
            generate(tiny, "hello", adapter=adapter, method=method, max_new_tokens=8, cuda_graphs=GraphOptions())
        refs.append(weakref.ref(adapter))
    kept = adapter
    del adapter
    gc.collect()
    assert [r() is None for r in refs] == [True, True, True, False]  # the last one is still in use
    res = generate(tiny, "hello", adapter=kept, max_new_tokens=8, cuda_graphs=GraphOptions())  # reused, still exact
    assert res.token_ids == generate(tiny, "hello", method="ar", max_new_tokens=8).token_ids
