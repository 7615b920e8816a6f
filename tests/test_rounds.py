"""The round's device steps, checked where a bug costs only speed: outputs stay exact, so the
losslessness tests cannot see a worse tree, a lost lookup branch or a stale ancestor row."""

import math

import pytest
import torch

from kangaroo_lab import generate, load_adapter, new_adapter
from kangaroo_lab.accept import greedy_accept
from kangaroo_lab.lookup import PromptLookup
from kangaroo_lab.rounds import RoundBuffers, RoundSteps, grow_children
from kangaroo_lab.tree import Layout, Tree, ancestors_from_parents

CPU = torch.device("cpu")


# ------------------------------------------------------------------------------- tree growth
def hand_made_level() -> tuple[RoundBuffers, torch.Tensor]:
    """The root, level 1 = nodes 1 and 2 (cumulative draft probabilities 0.6 and 0.3), room for 3
    nodes at level 2; the draft's distributions at nodes 1 and 2 over a vocabulary of 5."""
    buf = RoundBuffers.new(Layout(0, (2, 3), 2), CPU, caches=[])
    buf.valid[:3] = True
    buf.parents[1:3] = 0
    buf.ancestors[:3, :3] = ancestors_from_parents([-1, 0, 0])
    buf.cum[1:3] = torch.tensor([math.log(0.6), math.log(0.3)])
    buf.log_eta.fill_(-math.inf)
    p = torch.tensor([[0.50, 0.35, 0.10, 0.03, 0.02], [0.01, 0.02, 0.02, 0.55, 0.40]])
    return buf, p.log()


def test_grow_children_keeps_the_best_paths_not_the_best_children():
    """Level 2 holds the 3 children with the highest path probability, best first: node 1's tokens 0
    (0.6 * 0.5 = 0.30) and 1 (0.6 * 0.35 = 0.21), then node 2's token 3 (0.3 * 0.55 = 0.165). Ranking
    by a child's own probability would keep node 2's token 4 (0.40) instead of node 1's token 1, and
    keeping the worst would pick other tokens again."""
    buf, logits = hand_made_level()
    new = torch.tensor([3, 4, 5])
    grow_children(buf, logits, torch.tensor([1, 2]), new, k=2)
    assert buf.tokens[new].tolist() == [0, 1, 3]
    assert buf.parents[new].tolist() == [1, 1, 2]
    assert buf.cum[new].exp().tolist() == pytest.approx([0.30, 0.21, 0.165], rel=1e-5)
    assert buf.prob[new].tolist() == pytest.approx([0.50, 0.35, 0.55], rel=1e-5)  # each draft's own probability
    expected = ancestors_from_parents([-1, 0, 0, 1, 1, 2])
    assert torch.equal(buf.ancestors, expected)
    assert buf.valid.tolist() == [True] * 6 and bool(buf.alive)


def test_grow_children_overwrites_an_earlier_rounds_ancestor_rows():
    """Rows of level 2 left from an earlier round (another parent) must not survive the new growth."""
    buf, logits = hand_made_level()
    buf.ancestors[3:6] = True  # stale: every node looked like an ancestor
    grow_children(buf, logits, torch.tensor([1, 2]), torch.tensor([3, 4, 5]), k=2)
    assert torch.equal(buf.ancestors, ancestors_from_parents([-1, 0, 0, 1, 1, 2]))


# ------------------------------------------------------------------------------- acceptance
def test_greedy_accept_never_takes_a_child_of_a_rejected_parent():
    """Node 3 matches the target's argmax at its parent 1, but node 1 itself was rejected: the round
    accepts node 2 (the only matching path) and closes with the target's token at node 2."""
    V = 10
    tree = Tree.from_parents([5, 1, 2, 3], [-1, 0, 0, 1])
    logits = torch.zeros(4, V)
    logits[0, 2] = 1  # at the root the target wants 2: node 2 matches, node 1 (token 1) does not
    logits[1, 3] = 1  # at node 1 it wants 3: node 3 would match, under a rejected parent
    logits[2, 7] = 1  # at node 2 it wants 7: the closing token
    acc = greedy_accept(tree, logits, max_depth=2)
    assert int(acc.n) == 1 and acc.path[:2].tolist() == [0, 2] and int(acc.token) == 7


# ------------------------------------------------------------------------------- whole rounds
def check_every_round(monkeypatch, check) -> list:
    """Patch RoundSteps.read so that `check(steps, read)` runs after every round's host read."""
    read, seen = RoundSteps.read, []

    def checked(self):
        r = read(self)
        seen.append(check(self, r))
        return r

    monkeypatch.setattr(RoundSteps, "read", checked)
    return seen


def ancestor_rows_match_parents(steps, r) -> bool:
    """The device's ancestor mask over the round's verified nodes equals the one rebuilt from their parents."""
    n = len(r.tokens)
    return torch.equal(steps.buf.ancestors[:n, :n].cpu(), ancestors_from_parents(r.parents))


TREES = [
    ("kangaroo-tree", dict(top_k=3, node_budget=16, max_draft=4)),
    ("kangaroo+lookup", dict(top_k=2, node_budget=16, max_draft=3, lookup_tokens=6)),
]


@pytest.mark.parametrize("temperature", [0.0, 1.0], ids=["greedy", "sampling"])
@pytest.mark.parametrize("method,options", TREES, ids=[m for m, _ in TREES])
def test_the_device_ancestor_mask_matches_the_parents_every_round(tiny, monkeypatch, method, options, temperature):
    seen = check_every_round(monkeypatch, ancestor_rows_match_parents)
    adapter = new_adapter(tiny, 2, "attention", seed=4)
    res = generate(tiny, "abcabc hello abcabc", adapter=adapter, method=method, max_new_tokens=40,
                   temperature=temperature, **options)  # fmt: skip
    assert len(seen) == len(res.trace) > 5 and all(seen)
    assert max(len(r.path or []) for r in res.trace) >= 1  # some round accepted drafts


@pytest.fixture(scope="module")
def smol_adapter(smol):
    return load_adapter(smol)


def test_the_hybrids_lookup_branch_is_what_prompt_lookup_proposes(smol, smol_adapter):
    """In every round of `kangaroo+lookup`, its lookup drafts are exactly `PromptLookup.propose()`
    over the tokens committed so far, and some of them get accepted: a hybrid that silently lost
    its branch (or proposed from stale tokens) would still be exact, only slower."""
    options = dict(n_max=3, lookup_tokens=8, node_budget=24, max_draft=2, top_k=4)
    prompt = "Repeat after me, word for word: the quick brown fox jumps over the lazy dog. The quick brown fox"
    res = generate(smol, prompt, adapter=smol_adapter, method="kangaroo+lookup", max_new_tokens=48, **options)
    done, lookup_accepted = 1, 0  # the prefill emitted the first token
    for r in res.trace:
        committed = res.prompt_ids + res.token_ids[:done]
        proposed = PromptLookup(committed, options["n_max"], options["lookup_tokens"]).propose()[0]
        drafted = [t for t, s in zip(r.drafts, r.sources) if s == "lookup"]
        assert drafted == proposed, f"round after {done} tokens: drafted {drafted}, lookup proposes {proposed}"
        lookup_accepted += sum(r.sources[i] == "lookup" for i in r.path)
        done += r.accepted + 1
    assert lookup_accepted >= 5, "the lookup branch never helped: the test has no power"
