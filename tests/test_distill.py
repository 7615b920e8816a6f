"""Self-distillation on our engine (distill.py) and the multi-step training objective, on tiny-random."""

import dataclasses
import json
import math
import random

import pytest
import torch

from kangaroo_lab import generate, new_adapter
from kangaroo_lab.distill import (
    BatchDecoder,
    Example,
    merge_corpora,
    read_corpus_file,
    save_corpus_npz,
    self_distill,
)
from kangaroo_lab.questions import Question
from kangaroo_lab.training import distill_step, make_batch, reach_weights


def _prompts(tiny, n, seed=0, low=3, high=40):
    rng = random.Random(seed)
    return [[rng.randrange(3, tiny.config.vocab_size) for _ in range(rng.randint(low, high))] for _ in range(n)]


def test_batched_greedy_answers_equal_single_prompt_greedy_decoding(tiny):
    """Left-padded rows of different lengths, a part-filled batch, two cache widths: each row's answer
    is the one `generate(method="ar")` gives for that prompt alone, token for token."""
    prompts = _prompts(tiny, 7) + _prompts(tiny, 2, seed=1, low=150, high=200)  # a second, wider bucket
    dec = BatchDecoder(tiny, 4, 24, 256)
    answers = dec.answer(prompts[:4]) + dec.answer(prompts[4:7]) + dec.answer(prompts[7:])
    for p, a in zip(prompts, answers):
        assert a == generate(tiny, p, method="ar", max_new_tokens=24).token_ids


def test_rows_end_at_their_own_eos(tiny):
    """With a token that AR emits mid-answer declared EOS, that row stops there (EOS kept), others go on."""
    prompts = _prompts(tiny, 3, seed=2)
    eos = generate(tiny, prompts[0], method="ar", max_new_tokens=24).token_ids[5]
    model = dataclasses.replace(tiny, eos_token_ids=frozenset({eos}))
    answers = BatchDecoder(model, 4, 24, 64).answer(prompts)
    for p, a in zip(prompts, answers):
        assert a == generate(model, p, method="ar", max_new_tokens=24).token_ids
    assert answers[0][-1] == eos and len(answers[0]) <= 6


def test_sampled_first_tokens_follow_the_tempered_top_p_distribution(tiny):
    """Chi-square of 2,000 first tokens (one prompt in every row) against softmax(logits / T) cut to top-p."""
    from test_decoding import chi_square

    prompt = _prompts(tiny, 1, seed=3)[0]
    temperature, top_p, rows = 0.8, 0.9, 400
    with torch.no_grad():
        tiny.engine.setup_cache(64)
        logits = tiny.engine(torch.tensor([prompt]), 0)[0, -1].double()
    p = torch.softmax(logits / temperature, -1)
    sorted_p, order = p.sort(descending=True)
    keep = order[(sorted_p.cumsum(0) - sorted_p) < top_p]
    target = torch.zeros_like(p)
    target[keep] = p[keep]
    target /= target.sum()
    dec = BatchDecoder(tiny, rows, 1, 64, temperature=temperature, top_p=top_p)
    firsts = [a[0] for seed in range(5) for a in dec.answer([prompt] * rows, seed=seed)]
    assert all(target[t] > 0 for t in firsts)  # nothing outside the top-p set
    stat, crit = chi_square(firsts, target)
    assert stat < crit, f"chi2 {stat:.1f} >= {crit:.1f}"
    stat, crit = chi_square(firsts, torch.softmax(logits, -1))  # control: the untempered distribution is told apart
    assert stat > crit


def test_the_decoder_refuses_what_it_cannot_hold(tiny):
    with pytest.raises(ValueError, match="context"):
        BatchDecoder(tiny, 2, 600, tiny.config.max_seq_len)
    dec = BatchDecoder(tiny, 2, 8, 32)
    with pytest.raises(ValueError, match="1 to 2 prompts"):
        dec.answer(_prompts(tiny, 3))
    with pytest.raises(ValueError, match="longer than"):
        dec.answer(_prompts(tiny, 1, low=200, high=200))
    with pytest.raises(ValueError, match="temperature"):
        BatchDecoder(tiny, 2, 8, 32, temperature=float("nan"))


def test_our_engine_and_transformers_write_the_same_greedy_corpus(tiny, tmp_path):
    questions = [Question(f"q{i}", "qa", (" ".join(["word"] * (i + 1)) + "?",)) for i in range(6)]
    ours = self_distill(tiny, questions, tmp_path / "ours.jsonl", max_new_tokens=16, batch_size=4, progress=False)
    theirs = self_distill(
        tiny, questions, tmp_path / "hf.jsonl", max_new_tokens=16, batch_size=4, progress=False, engine="transformers"
    )
    assert read_corpus_file(ours)[1] == read_corpus_file(theirs)[1]
    stats = json.loads((tmp_path / "ours.jsonl.stats.jsonl").read_text())
    assert stats["engine"] == "ours" and stats["answers"] == 6 and stats["response_tokens"] > 0


def test_resuming_with_another_seed_is_refused(tiny, tmp_path):
    questions = [Question("q", "qa", ("Why?",))]
    path = self_distill(tiny, questions, tmp_path / "c.jsonl", max_new_tokens=8, progress=False)
    with pytest.raises(ValueError, match="seed=0; this run asks for seed=1"):
        self_distill(tiny, questions, path, max_new_tokens=8, seed=1, progress=False)


def test_npz_corpus_round_trip_and_a_damaged_archive(tmp_path):
    header = {"format": "kangaroo-lab-corpus/1", "model": "m", "tokenizer": "t"}
    examples = [Example("a#1", "qa", (1, 2, 3), (4, 5)), Example("b#1", "rag", (70000,), ())]
    path = save_corpus_npz(header, examples, tmp_path / "c.npz")
    assert read_corpus_file(path) == (header, examples)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match="not a readable corpus archive"):
        read_corpus_file(path)


def test_greedy_and_sampled_answers_merge_into_one_corpus(tiny, tmp_path):
    from kangaroo_lab.training import split_corpus

    questions = [Question(f"q{i}", "qa", (f"Question number {i}?",)) for i in range(30)]
    greedy = self_distill(tiny, questions, tmp_path / "g.jsonl", max_new_tokens=6, progress=False)
    sampled = self_distill(
        tiny, questions, tmp_path / "s.jsonl", max_new_tokens=6, temperature=0.7, top_p=0.95, seed=1, progress=False
    )
    header, examples = read_corpus_file(merge_corpora([greedy, sampled], tmp_path / "mix.npz"))
    assert header["temperature"] == "mixed" and [h["file"] for h in header["parts"]] == ["g.jsonl", "s.jsonl"]
    assert len(examples) == 60 and examples[:30] == read_corpus_file(greedy)[1]
    train, held = split_corpus(examples, 0.2)
    assert {e.example_id for e in train}.isdisjoint(e.example_id for e in held)  # a prompt's answers stay together


def test_merging_corpora_of_two_tokenizers_is_refused(tmp_path):
    a = save_corpus_npz({"format": "kangaroo-lab-corpus/1", "model": "m", "tokenizer": "t1"}, [], tmp_path / "a.npz")
    b = save_corpus_npz({"format": "kangaroo-lab-corpus/1", "model": "n", "tokenizer": "t2"}, [], tmp_path / "b.npz")
    with pytest.raises(ValueError, match="another tokenizer.*merge corpora of one model only"):
        merge_corpora([a, b], tmp_path / "m.npz")
    with pytest.raises(ValueError, match="no corpora to merge"):
        merge_corpora([], tmp_path / "m.npz")


# ----------------------------------------------------------------------------------- multi-step training
def test_reach_weights_equal_a_brute_force_unroll():
    """w[t] = sum over the rounds starting j < k tokens earlier of decay^j x the chance all j drafts before t were accepted."""
    torch.manual_seed(0)
    accept = torch.rand(3, 9)
    accept[:, :2] = 0  # the prompt: no round starts before the answer... but t=2 may start one
    k, decay = 4, 0.7
    brute = torch.zeros_like(accept)
    for b in range(3):
        for t in range(9):
            for j in range(k):
                if t - j < 0:
                    continue
                brute[b, t] += decay**j * math.prod(float(accept[b, t - m]) for m in range(1, j + 1))
    assert torch.allclose(reach_weights(accept, k, decay), brute, atol=1e-6)
    assert torch.equal(reach_weights(accept, 1, decay), torch.ones_like(accept))


def test_unrolled_loss_is_teacher_forcing_reweighted(tiny):
    """unroll=1 is the plain soft cross-entropy; unroll=4 weights the same per-position losses, so it
    lies between their min and max and its gradient is non-zero."""
    examples = [Example(f"e{i}#1", "qa", tuple(p[:10]), tuple(p[10:])) for i, p in enumerate(_prompts(tiny, 4, low=30))]
    tokens, mask = make_batch(examples, 64, 0, "cpu")
    adapter = new_adapter(tiny, 2, seed=1).float().requires_grad_(True)
    one = distill_step(tiny, adapter, tokens, mask, 2)
    four = distill_step(tiny, adapter, tokens, mask, 2, unroll=4)
    assert torch.isclose(one["loss"], one["ce"])
    assert float(four["ce"]) == pytest.approx(float(one["ce"]))
    four["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in adapter.parameters())


def test_drafts_see_the_teacher_forced_inputs_on_every_path_that_can_be_accepted(tiny):
    """Why unrolling on its own outputs changes no input in Kangaroo: a draft whose earlier drafts in
    its round were all accepted has exactly the draft distribution that teacher forcing computes on
    the final sequence (the shallow layers are the target's own)."""
    adapter = new_adapter(tiny, 2, seed=3)
    prompt = _prompts(tiny, 1, seed=4, low=12, high=12)[0]
    res = generate(tiny, prompt, adapter=adapter, method="kangaroo", threshold=0.0, max_draft=4, max_new_tokens=40)
    seq = torch.tensor([prompt + res.token_ids])
    with torch.no_grad():
        states = tiny.engine.hidden_states(seq, upto=2)
        q = torch.softmax(tiny.engine.lm_head(adapter(states[2], start=None)).float(), -1)[0]  # (T, V)
    at, checked = len(prompt), 0  # the prefill emits the first token; rounds draft from its state on
    for r in res.trace:
        for i in range(min(r.accepted + 1, len(r.drafts), len(q) - at)):  # accepted drafts, the first rejected one
            assert r.drafts[i] == int(q[at + i].argmax())
            assert r.confidences[i] == pytest.approx(float(q[at + i].max()), abs=1e-5)
            checked += 1
        at += r.accepted + 1
    assert checked > len(res.trace)  # some rounds accepted drafts


def test_scoring_several_adapters_at_once_equals_scoring_each(tiny):
    """evaluate_many shares the target's forward pass; the numbers are those of one evaluate per adapter."""
    from kangaroo_lab.training import evaluate, evaluate_many

    examples = [
        Example(f"e{i}#1", "qa" if i % 2 else "rag", tuple(p[:8]), tuple(p[8:]))
        for i, p in enumerate(_prompts(tiny, 6, low=20))
    ]
    adapters = {"l2": new_adapter(tiny, 2, seed=1), "l1": new_adapter(tiny, 1, seed=2)}
    together = evaluate_many(tiny, adapters, examples, 4, 64, by_category=True)
    for name, a in adapters.items():
        alone = evaluate(tiny, a, examples, a.exit_layer, 4, 64, by_category=True)
        by_category = alone.pop("top1_by_category")
        assert together[name].pop("top1_by_category") == pytest.approx(by_category)
        assert together[name] == pytest.approx(alone)
        assert set(by_category) == {"qa", "rag"}


def test_a_corpus_cut_mid_line_resumes(tiny, tmp_path, capsys):
    """kill -9 while an answer is being written leaves half a line: the resume drops it and answers again."""
    questions = [Question(f"q{i}", "qa", (f"Question number {i}?",)) for i in range(4)]
    full = self_distill(tiny, questions, tmp_path / "full.jsonl", max_new_tokens=8, progress=False)
    cut = tmp_path / "cut.jsonl"
    text = full.read_text()
    cut.write_text(text[: text.rindex("\n", 0, len(text) - 1) + 15])  # the last answer half-written
    self_distill(tiny, questions, cut, max_new_tokens=8, progress=False)
    assert "dropped a half-written last line" in capsys.readouterr().err
    assert read_corpus_file(cut)[1] == read_corpus_file(full)[1]
