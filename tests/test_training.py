"""Self-distillation and adapter training, on tiny-random on the CPU."""

import json
import os
import subprocess
import sys

import pytest
import torch

from kangaroo_lab import generate, load_adapter, new_adapter
from kangaroo_lab.adapter import VARIANTS, shipped_adapter_dir
from kangaroo_lab.distill import read_corpus_file, self_distill
from kangaroo_lab.questions import Question, load_minibench
from kangaroo_lab.templates import training_prompts
from kangaroo_lab.training import CHECKPOINT, TrainConfig, load_corpus, split_corpus, train_adapter

SMALL = dict(batch_size=8, eval_every=20, warmup=5, lr=3e-3, eval_sequences=32, accept_prompts=2, accept_tokens=8)


@pytest.fixture(scope="module")
def corpus(tiny, tmp_path_factory):
    """Answers of tiny-random to 80 short prompts of ours (each trimmed to 8 words)."""
    questions = [
        Question(q.question_id, q.category, tuple(" ".join(t.split()[:8]) for t in q.turns))
        for q in training_prompts(80, seed=5)
    ]
    return self_distill(
        tiny, questions, tmp_path_factory.mktemp("corpus") / "c.jsonl", max_new_tokens=40, batch_size=40, progress=False
    )


def test_self_distillation_writes_the_models_own_greedy_answers(tiny, corpus):
    header, examples = read_corpus_file(corpus)
    assert header["model"] == "tiny-random" and len(examples) > 80  # second turns of mt_bench chats too
    e = examples[0]
    ar = generate(tiny, list(e.prompt_ids), method="ar", max_new_tokens=40)
    assert list(e.response_ids) == ar.token_ids  # batched left-padded HF generate == our AR, greedy


def test_self_distillation_resumes(tiny, corpus, tmp_path):
    partial = tmp_path / "c.jsonl"
    lines = corpus.read_text().splitlines()
    partial.write_text("\n".join(lines[:30]) + "\n")  # as if interrupted after 29 answers
    questions = [
        Question(q.question_id, q.category, tuple(" ".join(t.split()[:8]) for t in q.turns))
        for q in training_prompts(80, seed=5)
    ]
    self_distill(tiny, questions, partial, max_new_tokens=40, batch_size=40, progress=False)
    _, again = read_corpus_file(partial)
    _, full = read_corpus_file(corpus)
    assert sorted(e.example_id for e in again) == sorted(e.example_id for e in full)
    assert len(again) == len(full)  # nothing answered twice


def test_training_lowers_the_loss_and_beats_the_untrained_adapter(tiny, corpus, tmp_path):
    adapter = train_adapter(tiny, corpus, tmp_path, TrainConfig(exit_layer=2, steps=60, **SMALL), progress=False)
    report = json.loads((tmp_path / "report.json").read_text())
    curve = (tmp_path / "curves.csv").read_text().splitlines()
    first, last = (dict(zip(curve[0].split(","), line.split(","))) for line in (curve[1], curve[-1]))
    assert float(last["loss"]) < float(first["loss"]) - 0.05
    assert float(last["top1"]) > float(first["top1"]) + 0.05  # step 0 is the untrained adapter
    assert report["heldout"]["top1"] == pytest.approx(float(last["top1"]))
    assert len(report["accept_by_position"]) == 6 and report["versions"]["torch"] == torch.__version__
    again = load_adapter(tiny, tmp_path)
    assert again.meta.training["steps"] == 60 and adapter.exit_layer == again.exit_layer == 2


def test_none_variant_is_evaluated_not_trained(tiny, corpus, tmp_path):
    train_adapter(tiny, corpus, tmp_path, TrainConfig(variant="none", steps=50, **SMALL), progress=False)
    assert json.loads((tmp_path / "report.json").read_text())["steps"] == 0


def test_resume_from_a_checkpoint(tiny, corpus, tmp_path, monkeypatch):
    config = TrainConfig(steps=12, checkpoint_every=5, **{**SMALL, "eval_every": 4})
    from kangaroo_lab import adapter as adapter_module

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # the run dies after step 12, before saving; checkpoint of step 10 is left

    monkeypatch.setattr(adapter_module.Adapter, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        train_adapter(tiny, corpus, tmp_path, config, progress=False)
    assert torch.load(tmp_path / CHECKPOINT, weights_only=False)["step"] == 10
    monkeypatch.undo()
    train_adapter(tiny, corpus, tmp_path, config, progress=False)
    steps = [int(line.split(",")[0]) for line in (tmp_path / "curves.csv").read_text().splitlines()[1:]]
    assert steps == [0, 4, 8, 12] and not (tmp_path / CHECKPOINT).exists()


def test_train_reads_several_corpora_as_one_from_the_command_line(corpus, tmp_path, capsys):
    """`kangaroo-lab train --data A B`: a JSONL corpus and an NPZ archive (binary: no UTF-8 check) read as one."""
    from kangaroo_lab.cli import main
    from kangaroo_lab.distill import read_corpus_file, save_corpus_npz

    header, examples = read_corpus_file(corpus)
    archive = save_corpus_npz(header, examples[:30], tmp_path / "more.npz")
    argv = ["train", "--model", "tiny-random", "--data", str(corpus), str(archive), "--out", str(tmp_path / "a")]
    assert main([*argv, "--steps", "2", "--batch-size", "4", "--eval-every", "2", "--warmup", "1"]) == 0
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["corpus"]["file"] == "c.jsonl, more.npz"
    assert report["train_examples"] + report["heldout_examples"] == len(examples) + 30


def test_a_resumed_run_reports_the_minutes_and_tokens_of_every_segment(tiny, corpus, tmp_path, monkeypatch):
    from kangaroo_lab import adapter as adapter_module

    config = TrainConfig(steps=6, checkpoint_every=5, **SMALL)
    monkeypatch.setattr(adapter_module.Adapter, "save", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        train_adapter(tiny, corpus, tmp_path, config, progress=False)
    monkeypatch.undo()
    state = torch.load(tmp_path / CHECKPOINT, weights_only=False)
    assert 0 < state["progress"]["minutes"] < 5 and state["progress"]["tokens_seen"] > 0
    state["progress"] = {"minutes": 42.0, "tokens_seen": 10**9}  # as if the first segment had been long
    torch.save(state, tmp_path / CHECKPOINT)
    train_adapter(tiny, corpus, tmp_path, config, progress=False)
    report = json.loads((tmp_path / "report.json").read_text())
    assert 42.0 <= report["minutes"] < 47  # not just this segment
    assert 10**9 < report["tokens_seen"] < 10**9 + 1000  # counted from the checkpoint, not the last evaluation


def test_resuming_a_checkpoint_of_another_config_fails(tiny, corpus, tmp_path, monkeypatch):
    from kangaroo_lab import adapter as adapter_module

    monkeypatch.setattr(adapter_module.Adapter, "save", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        train_adapter(tiny, corpus, tmp_path, TrainConfig(steps=6, checkpoint_every=5, **SMALL), progress=False)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="another run.*exit_layer.*delete the checkpoint"):
        train_adapter(tiny, corpus, tmp_path, TrainConfig(exit_layer=3, steps=6, **SMALL), progress=False)


# ------------------------------------------------------------------------------- bad input
def test_corpus_of_another_tokenizer(tiny, corpus, tmp_path):
    lines = corpus.read_text().splitlines()
    header = json.loads(lines[0])
    other = tmp_path / "other.jsonl"
    other.write_text("\n".join([json.dumps({**header, "tokenizer": "49152:abcdef", "model": "smollm2"})] + lines[1:]))
    with pytest.raises(ValueError, match="another tokenizer.*kangaroo-lab distill"):
        load_corpus(other, tiny)


def test_empty_missing_and_foreign_corpus(tiny, corpus, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text(corpus.read_text().splitlines()[0] + "\n")
    with pytest.raises(ValueError, match="holds no answers"):
        load_corpus(empty, tiny)
    with pytest.raises(FileNotFoundError, match="kangaroo-lab distill"):
        load_corpus(tmp_path / "absent.jsonl", tiny)
    foreign = tmp_path / "questions.jsonl"
    foreign.write_text('{"question_id": 1, "category": "qa", "turns": ["hi"]}\n')
    with pytest.raises(ValueError, match="not a Kangaroo Lab corpus"):
        load_corpus(foreign, tiny)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(corpus.read_text().splitlines()[0] + '\n{"id": "x#1"}\n')
    with pytest.raises(ValueError, match="line 2"):
        load_corpus(broken, tiny)


def test_exit_layer_out_of_range(tiny, corpus, tmp_path):
    with pytest.raises(ValueError, match="1 <= exit_layer <= 3"):
        train_adapter(tiny, corpus, tmp_path, TrainConfig(exit_layer=4, steps=1, **SMALL), progress=False)


def test_batch_too_big_for_memory_says_what_to_do(tiny, corpus, tmp_path, monkeypatch):
    from kangaroo_lab import training

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 12.00 GiB")

    monkeypatch.setattr(training, "distill_step", out_of_memory)
    monkeypatch.setattr(training, "evaluate", lambda *a, **k: {"loss": 0.0, "top1": 0.0, "expected_accept": 0.0})
    with pytest.raises(RuntimeError, match="does not fit in memory; use a smaller --batch-size"):
        train_adapter(tiny, corpus, tmp_path, TrainConfig(steps=3, **SMALL), progress=False)


def test_split_keeps_conversations_together(tiny, corpus):
    train, held = split_corpus(load_corpus(corpus, tiny), 0.2)
    conv = lambda e: e.example_id.rsplit("#", 1)[0]  # noqa: E731
    assert not {conv(e) for e in train} & {conv(e) for e in held} and held


def test_data_parallel_under_accelerate_launch(corpus, tmp_path):
    """`accelerate launch --num_processes 2` runs the same training code data-parallel.

    Without a GPU, accelerate's `--multi_gpu` launcher starts 2 CPU processes over gloo (MULTI_CPU);
    its `--cpu` flag would start just one."""
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        "2",
        "--multi_gpu",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "kangaroo_lab.cli",
        "train",
        "--model",
        "tiny-random",
        "--device",
        "cpu",
        "--data",
        str(corpus),
        "--out",
        str(out),
        "--steps",
        "8",
        "--batch-size",
        "8",
        "--eval-every",
        "4",
        "--warmup",
        "2",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["processes"] == 2 and report["steps"] == 8


# ------------------------------------------------------------------------------- shipped adapters
SHIPPED = [
    (2, "attention"),
    (1, "attention"),
    (3, "attention"),
    (4, "attention"),
    (6, "attention"),
    (2, "attention+ffn"),
    (2, "linear"),
    (2, "none"),
]


@pytest.mark.slow
def test_shipped_adapters_load_and_stay_lossless(smol):
    prompt = "Give three tips for keeping a small garden healthy."
    ar = generate(smol, prompt, method="ar", max_new_tokens=24)
    for exit_layer, variant in SHIPPED:
        assert (shipped_adapter_dir(smol.name, exit_layer, variant) / "adapter.json").is_file()
        adapter = load_adapter(smol, exit_layer=exit_layer, variant=variant)
        assert adapter.variant == variant and adapter.meta.training["device"]
        kg = generate(smol, prompt, adapter=adapter, max_new_tokens=24)
        assert kg.token_ids == ar.token_ids, (exit_layer, variant)
    assert {v for _, v in SHIPPED} == set(VARIANTS)


@pytest.mark.slow
def test_shipped_default_adapter_drafts_far_better_than_an_untrained_one(smol):
    trained, untrained = load_adapter(smol), new_adapter(smol, 2)
    rates = []
    for adapter in (trained, untrained):
        res = [
            generate(smol, q.turns[0], adapter=adapter, threshold=0.0, max_draft=1, max_new_tokens=48)
            for q in load_minibench()[::20]
        ]  # three categories of the mini-bench
        accepted = [a for r in res for a in r.draft_accepted]
        rates.append(sum(accepted) / len(accepted))
    assert rates[0] > 0.3 > 0.15 > rates[1]
