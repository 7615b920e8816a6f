"""Token trees: the layout, the acceptance rule on hand-made trees, the tree mask against running
each path as a plain chain, and KV compaction against an autoregressive pass (CPU, fp32)."""

import pytest
import torch

from kangaroo_lab import generate, new_adapter
from kangaroo_lab.accept import greedy_accept
from kangaroo_lab.lookup import PromptLookup
from kangaroo_lab.tree import Layout, Tree, ancestors_from_parents, compaction, plan

TOL = 1e-5


# ------------------------------------------------------------------------------------ layout
def test_plan_fills_the_budget_level_by_level():
    assert plan(7, 6, 1, 0, drafted=True) == Layout(0, (1,) * 6, 1)  # the paper's chain: gamma = 6
    assert plan(9, 0, 1, 8, drafted=False) == Layout(8, (), 1)  # prompt lookup: the root + 8 tokens
    tree = plan(32, 4, 4, 0, drafted=True)
    assert tree.levels == (4, 7, 7, 7) and tree.size == 26  # 31 // 4 = 7 per level; level 1: the root's 4 children
    assert plan(32, 4, 2, 0, drafted=True).levels == (2, 4, 7, 7)  # at most top_k times the level above
    hybrid = plan(16, 3, 4, 8, drafted=True)
    assert hybrid == Layout(8, (2, 2, 2), 4) and hybrid.size == 15
    assert plan(3, 6, 4, 0, drafted=True).levels == (1, 1)  # a tight budget caps the depth
    for layout in (tree, hybrid, plan(64, 6, 8, 16, drafted=True)):
        assert layout.size <= 64 and len(layout.depths()) == len(layout.static_parents()) == layout.size
        assert [layout.depths()[i] for i in layout.block(1)] == [1] * layout.levels[0]


def test_layout_blocks_and_chains():
    layout = Layout(3, (2, 4), 2)
    assert (
        list(layout.block(0)) == [0, 1, 2, 3]
        and list(layout.block(1)) == [4, 5]
        and list(layout.block(2)) == [6, 7, 8, 9]
    )
    assert layout.depths() == [0, 1, 2, 3, 1, 1, 2, 2, 2, 2] and layout.depth == 3
    assert layout.static_parents() == [-1, 0, 1, 2, 0, 0, -1, -1, -1, -1]
    assert layout.nodes(0) == 4 and layout.nodes(2) == 10
    assert Layout(0, (1, 1, 1), 1).is_chain and Layout(8, (), 1).is_chain
    assert not layout.is_chain and not Layout(2, (1,), 1).is_chain  # two branches below the root


def test_ancestors_include_the_node_itself():
    anc = ancestors_from_parents([-1, 0, 0, 1, 3, 2])
    assert anc[4].tolist() == [True, True, False, True, True, False]
    assert anc[5].tolist() == [True, False, True, False, False, True]


# ------------------------------------------------------------------------------------ acceptance
def logits_for(targets: list[int], V: int = 8) -> torch.Tensor:
    """Logits (P, V) whose argmax at node i is targets[i]."""
    return torch.nn.functional.one_hot(torch.tensor(targets), V).float()


def test_greedy_accept_takes_the_deepest_matching_path():
    #        0
    #     /  |  \
    #    1   2   3        tokens 5, 6, 5
    #    |   |
    #    4   5            tokens 1, 2
    #        |
    #        6            token 3
    tree = Tree.from_parents([9, 5, 6, 5, 1, 2, 3], [-1, 0, 0, 0, 1, 2, 5])
    acc = greedy_accept(tree, logits_for([6, 1, 2, 0, 0, 3, 4]), max_depth=3)
    assert acc.path.tolist() == [0, 2, 5, 6] and int(acc.n) == 3 and int(acc.token) == 4  # a whole branch + bonus
    acc = greedy_accept(tree, logits_for([5, 1, 0, 0, 7, 0, 0]), max_depth=3)
    assert acc.path.tolist()[:3] == [0, 1, 4] and int(acc.n) == 2 and int(acc.token) == 7
    acc = greedy_accept(tree, logits_for([7, 0, 0, 0, 0, 0, 0]), max_depth=3)
    assert int(acc.n) == 0 and int(acc.token) == 7  # nothing matches: the target's own token
    # nodes 1 and 3 carry the same token: equally deep paths -> the lower index
    acc = greedy_accept(tree, logits_for([5, 0, 0, 0, 0, 0, 0]), max_depth=3)
    assert acc.path.tolist()[:2] == [0, 1] and int(acc.n) == 1


def test_invalid_nodes_are_never_accepted():
    tree = Tree.from_parents([9, 5, 1], [-1, 0, 1], valid=[True, True, False])
    acc = greedy_accept(tree, logits_for([5, 1, 4]), max_depth=2)
    assert int(acc.n) == 1 and int(acc.token) == 1  # node 2 would match, but it is masked (after eta, or padding)


def test_a_chain_accepts_the_longest_agreeing_prefix():
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        drafts = torch.randint(0, 4, (5,), generator=g)
        target = torch.randint(0, 4, (6,), generator=g)
        acc = greedy_accept(Tree.chain([0, *drafts.tolist()]), logits_for(target.tolist(), 4), max_depth=5)
        n = int((target[:-1] == drafts).long().cumprod(0).sum())
        assert int(acc.n) == n and int(acc.token) == int(target[n]) and acc.path.tolist()[: n + 1] == list(range(n + 1))


def test_compaction_moves_the_path_to_consecutive_slots():
    src, dst = compaction(torch.tensor([0, 4, 9, 0]), torch.tensor([100]))
    assert src.tolist() == [100, 104, 109, 100] and dst.tolist() == [100, 101, 102, 103]


# ------------------------------------------------------------------------------------ the tree mask
def test_tree_pass_equals_each_path_run_as_a_chain(tiny):
    """One pass over a tree (tree_window) == each root-to-node path run alone as a chain, for every node."""
    e = tiny.engine
    prompt = tiny.encode("The kangaroo")
    parents = [-1, 0, 0, 1, 1, 2, 3, 3, 6, 8]
    tree = Tree.from_parents([40 + 3 * i for i in range(len(parents))], parents)
    base = len(prompt)
    e.setup_cache(128)
    with torch.inference_mode():
        e(torch.tensor([prompt]), 0)  # the committed prefix
        e.layers[1].self_attn.kv_cache.k[..., base:, :].fill_(9.0)  # stale garbage in the tree's slots
        nodes = torch.arange(len(parents))
        window = e.tree_window(torch.tensor([base]), nodes, tree.depths, tree.ancestors)
        logits = e(tree.tokens[None], window)[0]  # (P, V)
        for i in range(len(parents)):
            path = [j for j in range(i + 1) if tree.ancestors[i, j]]
            e(torch.tensor([prompt]), 0)
            chain = e(tree.tokens[path][None], base)[0, -1]
            assert (chain - logits[i]).abs().max() <= TOL, f"node {i}, path {path}"


@pytest.mark.parametrize(
    "method,options",
    [
        ("kangaroo-tree", dict(top_k=3, node_budget=20, max_draft=4)),
        ("kangaroo+lookup", dict(top_k=2, node_budget=24, max_draft=3, lookup_tokens=6)),
    ],
)
def test_caches_after_tree_rounds_equal_an_autoregressive_pass(tiny, method, options):
    """After generating with trees (compaction in every round), every layer's KV cache and the adapter's
    hold, at each committed position, what one plain pass over the committed tokens computes."""
    adapter = new_adapter(tiny, 3, "attention", seed=2)
    res = generate(
        tiny, "abcabcabc abcabcabc abc", adapter=adapter, method=method, max_new_tokens=40, threshold=0.0, **options
    )
    # some accepted paths did not lie at consecutive slots already, so compaction moved entries
    assert any(r.path and r.path != list(range(len(r.path))) for r in res.trace)
    seq = res.prompt_ids + res.token_ids[:-1]  # every committed token but the newest is in the caches
    T = len(seq)
    e = tiny.engine
    k, v = e.kv.k[..., :T, :].clone(), e.kv.v[..., :T, :].clone()
    ak, av = adapter.kv.k[..., :T, :].clone(), adapter.kv.v[..., :T, :].clone()
    with torch.inference_mode():
        h = e.shallow(torch.tensor([seq]), 0, adapter.exit_layer)
        adapter(h, 0)
        e.deep(h, 0, adapter.exit_layer)
    assert (e.kv.k[..., :T, :] - k).abs().max() <= TOL and (e.kv.v[..., :T, :] - v).abs().max() <= TOL
    assert (adapter.kv.k[..., :T, :] - ak).abs().max() <= TOL and (adapter.kv.v[..., :T, :] - av).abs().max() <= TOL


# ------------------------------------------------------------------------------------ prompt lookup
def test_lookup_proposes_what_followed_the_latest_longest_match():
    lookup = PromptLookup([1, 2, 3, 4, 5, 1, 2], n_max=3, lookup_tokens=4)
    assert lookup.propose() == ([3, 4, 5, 1], 2)  # (1, 2) occurred before, followed by 3 4 5 1
    lookup.extend([9, 1, 2])
    assert lookup.propose() == ([9, 1, 2], 2)  # the latest occurrence of (1, 2) wins
    lookup.extend([9])
    assert lookup.propose() == ([1, 2, 9], 3)  # (1, 2, 9) matched: the longest n-gram first
    assert PromptLookup([1, 2, 3], 3, 4).propose() == ([], 0)  # nothing repeats
    assert PromptLookup([7, 7, 7], 2, 3).propose() == ([7], 2)  # only what exists after the match


@pytest.mark.parametrize(
    "n_max,lookup_tokens,message",
    [
        (0, 4, "n_max must be >= 1"),
        (2, 0, "lookup_tokens must be >= 1"),
    ],
)
def test_lookup_settings_are_checked(n_max, lookup_tokens, message):
    with pytest.raises(ValueError, match=message):
        PromptLookup([1, 2], n_max, lookup_tokens)
