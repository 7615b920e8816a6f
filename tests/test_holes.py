"""Holes found by fault probes (issue 16, section 5): each test here failed before its fix.

Everything runs on the seeded tiny-random model in temporary folders."""

import json
import math
import re
import struct

import pytest

from kangaroo_lab import generate, models
from kangaroo_lab.engine import with_prefix
from kangaroo_lab.models import load_model


# ------------------------------------------------------------------------- the converted-model cache
@pytest.fixture
def cache(tiny, tmp_path, monkeypatch):
    """(the .gguf path to load, its cache folder, a list counting conversions); `convert_gguf` writes
    the tiny model through `models.write_cache`, as tests/test_cache.py does."""
    monkeypatch.setenv("KANGAROO_LAB_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "little.gguf"
    gguf.write_bytes(b"GGUF stand-in")
    conversions = []

    def convert(path, folder, stamp=None):
        conversions.append(folder)
        sd, config = with_prefix(tiny.engine.state_dict()), tiny.config.to_hf()
        return models.write_cache(folder, sd, config, tiny.tokenizer, stamp or models._file_stamp(path))

    monkeypatch.setattr(models, "convert_gguf", convert)
    return gguf, tmp_path / "cache" / "little", conversions


def same_as_tiny(tiny, model):
    ref = generate(tiny, "hello", method="ar", max_new_tokens=12).token_ids
    return generate(model, "hello", method="ar", max_new_tokens=12).token_ids == ref


def tensor_bytes(path, name):
    """(start, end) byte offsets of tensor `name`'s data in a safetensors file."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    begin, end = json.loads(data[8 : 8 + n])[name]["data_offsets"]
    return 8 + n + begin, 8 + n + end


@pytest.mark.parametrize("damage", ["nan", "scaled"])
def test_damaged_weights_that_pass_the_sampled_checksum_are_rebuilt(tiny, cache, capsys, damage):
    """Before: NaN weights where the sampled checksum does not look loaded silently and generated
    token 0 forever; plausible garbage (a block of weights x 100) generated other text."""
    gguf, folder, conversions = cache
    load_model(str(gguf), device="cpu")
    weights = folder / "model.safetensors"
    start, end = tensor_bytes(weights, "model.layers.1.mlp.down_proj.weight")
    data = bytearray(weights.read_bytes())
    mid = (start + end) // 2 // 4 * 4
    if damage == "nan":
        data[mid : mid + 4096] = b"\xff" * 4096  # 1024 float32 NaNs
    else:
        block = struct.unpack(f"<{1024}f", data[mid : mid + 4096])
        data[mid : mid + 4096] = struct.pack(f"<{1024}f", *(100 * x for x in block))
    weights.write_bytes(bytes(data))
    source = json.loads((folder / "source.json").read_text())  # damage the sampled checksum cannot see
    (folder / "source.json").write_text(json.dumps({**source, "weights": models.weights_digest(weights)}))
    capsys.readouterr()
    model = load_model(str(gguf), device="cpu")
    err = capsys.readouterr().err
    assert f"the cached copy of little in {folder}" in err and "converting again" in err, err
    assert ("NaN" in err) == (damage == "nan") and "fixed prompt" in err
    assert len(err.strip().splitlines()) == 1, err  # one line (the stand-in conversion prints none)
    assert len(conversions) == 2 and same_as_tiny(tiny, model)


@pytest.mark.parametrize("lost", ["chat_template.jinja", "tokenizer.json"])
def test_a_cache_without_its_tokenizer_files_is_rebuilt(tiny, cache, capsys, lost):
    """Before: without chat_template.jinja the cache loaded silently with no chat template, so a
    prompt went in without the model's turn markers and the model answered nothing (without
    tokenizer.json it was rebuilt, after a six-line message from transformers)."""
    gguf, folder, conversions = cache
    load_model(str(gguf), device="cpu")
    (folder / lost).unlink()
    capsys.readouterr()
    model = load_model(str(gguf), device="cpu")
    err = capsys.readouterr().err
    assert f"is incomplete: {lost}" in err and "converting again" in err, err
    assert len(conversions) == 2 and model.tokenizer.chat_template == tiny.tokenizer.chat_template
    assert model.encode("hello") == tiny.encode("hello")


def test_a_cache_whose_tokenizer_lost_its_template_another_way_is_rebuilt(tiny, cache, capsys, monkeypatch):
    """Files intact, template gone all the same (e.g. another transformers reads it from elsewhere)."""
    gguf, folder, conversions = cache
    load_model(str(gguf), device="cpu")
    from transformers import AutoTokenizer

    real = AutoTokenizer.from_pretrained

    def without_template(*a, **k):
        tok = real(*a, **k)
        if len(conversions) == 1:
            tok.chat_template = None
        return tok

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", without_template)
    capsys.readouterr()
    model = load_model(str(gguf), device="cpu")
    assert "lost its chat template" in capsys.readouterr().err
    assert len(conversions) == 2 and model.tokenizer.chat_template


def test_the_output_fingerprint_sees_small_damage_and_ignores_rounding(tiny):
    from kangaroo_lab.engine import build_engine

    want = models.output_fingerprint(tiny.engine)
    assert models.fingerprint_problem(want, want) is None
    sd = {k: v.clone() for k, v in tiny.engine.state_dict().items()}
    again = models.output_fingerprint(build_engine(tiny.config, sd))
    assert models.fingerprint_problem(again, want) is None
    sd["layers.2.self_attn.o_proj.weight"][:4] = 0  # 4 of 64 rows of one matrix
    damaged = models.output_fingerprint(build_engine(tiny.config, sd))
    assert "other outputs" in models.fingerprint_problem(damaged, want)


# ------------------------------------------------------------------------- adapter weights
@pytest.fixture
def saved_adapter(tiny, tmp_path):
    from kangaroo_lab import new_adapter

    return new_adapter(tiny, 2, seed=1).save(tmp_path / "ad")


def test_an_adapter_with_nan_weights_is_refused_naming_the_file(tiny, tmp_path):
    """Before: loaded, and drafted from NaN (every draft rejected, or worse on a GPU)."""
    import torch

    from kangaroo_lab import load_adapter, new_adapter
    from kangaroo_lab.adapter import WEIGHTS_FILE

    adapter = new_adapter(tiny, 2, seed=1)
    with torch.no_grad():
        adapter.self_attn.o_proj.weight[0, 0] = float("inf")
    folder = adapter.save(tmp_path / "ad")
    with pytest.raises(ValueError, match=rf"{WEIGHTS_FILE} holds NaN or inf weights \(in self_attn\.o_proj"):
        load_adapter(tiny, folder)


def test_an_adapter_records_the_sha256_of_its_weights_and_checks_it(tiny, saved_adapter):
    """Before: a weights file replaced or damaged in a way safetensors still reads loaded silently."""
    import hashlib

    from kangaroo_lab import load_adapter, new_adapter
    from kangaroo_lab.adapter import META_FILE, WEIGHTS_FILE

    weights = saved_adapter / WEIGHTS_FILE
    meta = json.loads((saved_adapter / META_FILE).read_text())
    assert meta["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert load_adapter(tiny, saved_adapter).meta.weights_sha256 == meta["weights_sha256"]
    new_adapter(tiny, 2, seed=2).save(saved_adapter.parent / "other")  # same shapes, other weights
    weights.write_bytes((saved_adapter.parent / "other" / WEIGHTS_FILE).read_bytes())
    with pytest.raises(ValueError, match=rf"{WEIGHTS_FILE} is corrupt: its sha256 differs.*retrain"):
        load_adapter(tiny, saved_adapter)


def test_an_adapter_saved_before_checksums_still_loads(tiny, saved_adapter):
    from kangaroo_lab import load_adapter
    from kangaroo_lab.adapter import META_FILE

    meta = json.loads((saved_adapter / META_FILE).read_text())
    del meta["weights_sha256"]
    (saved_adapter / META_FILE).write_text(json.dumps(meta, indent=1))
    assert load_adapter(tiny, saved_adapter).meta.weights_sha256 == ""


def test_every_shipped_adapter_carries_the_sha256_of_its_weights():
    import hashlib
    from pathlib import Path

    from kangaroo_lab.adapter import META_FILE, WEIGHTS_FILE, shipped_adapter_dir

    folders = sorted(Path(shipped_adapter_dir("smollm2-135m-instruct")).parent.iterdir())
    assert len(folders) >= 8
    for folder in folders:
        meta = json.loads((folder / META_FILE).read_text())
        assert meta["weights_sha256"] == hashlib.sha256((folder / WEIGHTS_FILE).read_bytes()).hexdigest(), folder


# ------------------------------------------------------------------------- prompts
@pytest.mark.parametrize(
    "messages,message",
    [
        ([{"role": "user", "content": "hi"}, "and then?"], r"chat message 2 must be a dict like"),
        ([{"role": "user"}], r"chat message 1 must be a dict like"),
        ([{"role": "human", "content": "hi"}], r"chat message 1 has role 'human'; a role is one of system, user"),
        ([{"role": "user", "content": ["hi"]}], r"chat message 1: content must be text \(a str\), got list"),
        ([{"role": "system", "content": "x"}, {"role": "user", "content": None}], r"chat message 2: content"),
    ],
)
def test_chat_messages_are_validated(tiny, messages, message):
    """Before: the chat template rendered whatever it was given ("None", a list's repr, an unknown role)."""
    with pytest.raises(ValueError, match=message):
        generate(tiny, messages, method="ar", max_new_tokens=2)


def test_good_chat_messages_still_work(tiny):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert tiny.encode(messages) == tiny.encode(messages)
    assert len(generate(tiny, messages, method="ar", max_new_tokens=3).token_ids) == 3


@pytest.mark.parametrize("shape", [(2, 5), (1, 5), ()])
def test_a_tensor_prompt_that_is_not_one_sequence_is_refused(tiny, shape):
    """Before: flattened, so two prompts (2, 5) ran as one of 10 tokens."""
    import torch

    ids = torch.arange(3, 3 + math.prod(shape)).reshape(shape)
    with pytest.raises(ValueError, match=rf"shape \(T,\); got shape {re.escape(str(tuple(shape)))}"):
        generate(tiny, ids, method="ar", max_new_tokens=2)
    assert tiny.encode(torch.arange(3, 8)) == [3, 4, 5, 6, 7]


@pytest.mark.parametrize("prompt", ["caf\udce9", "\ud800 alone"])
def test_a_prompt_with_a_lone_surrogate_is_refused_clearly(tiny, prompt):
    """Before: a UnicodeEncodeError traceback from inside the tokenizer."""
    with pytest.raises(ValueError, match="the prompt is not valid text: character [0-9]+ is a lone surrogate"):
        generate(tiny, prompt, method="ar", max_new_tokens=2)
    with pytest.raises(ValueError, match="chat message 1 is not valid text"):
        tiny.encode([{"role": "user", "content": prompt}])


SPEC_LINE = '{"question_id": %d, "category": "qa", "turns": [%s]}\n'


@pytest.mark.parametrize(
    "body,line",
    [
        ((SPEC_LINE % (1, '"fine"') + SPEC_LINE % (2, '"caf\\ud800"')).encode(), 2),  # a JSON escape
        ((SPEC_LINE % (1, '"fine"') + SPEC_LINE % (2, '"ok"') + SPEC_LINE % (3, '"caf\xe9"')).encode("latin-1"), 3),
        (b'{"prompt": "one"}\n{"prompt": "t\\udc80wo"}\n', 2),
        (b'"one"\n"two"\n"thr\xffee"\n', 3),
    ],
)
def test_a_question_file_with_bad_text_names_the_file_and_line(tmp_path, body, line):
    """Before: invalid UTF-8 raised a bare UnicodeDecodeError; a lone surrogate (a JSON escape) loaded
    and broke the tokenizer mid-bench."""
    from kangaroo_lab.questions import load_questions

    path = tmp_path / "q.jsonl"
    path.write_bytes(body)
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}, line {line}: .*(not UTF-8|lone surrogate)"):
        load_questions(path)


def test_a_sharegpt_file_with_a_lone_surrogate_names_the_item(tmp_path):
    from kangaroo_lab.questions import load_questions

    path = tmp_path / "s.json"
    path.write_text(
        json.dumps(
            [
                {"conversations": [{"from": "human", "value": "ok"}]},
                {"conversations": [{"from": "human", "value": "\ud800"}]},
            ]
        )
    )
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}, item 2: the message of 'human' is not valid text"):
        load_questions(path)


# ------------------------------------------------------------------------- self-distillation
def _questions(n, text="Question number {i}?"):
    from kangaroo_lab.questions import Question

    return [Question(f"q{i}", "qa", (text.format(i=i),)) for i in range(n)]


def test_distill_refuses_to_resume_with_other_questions(tiny, tmp_path):
    """Before: the answers were found by question id only, so another questions file with the same ids
    was skipped without a word and the corpus kept the first file's answers."""
    from kangaroo_lab.distill import read_corpus_file, self_distill

    path = self_distill(tiny, _questions(3), tmp_path / "c.jsonl", max_new_tokens=4, progress=False)
    assert read_corpus_file(path)[0]["questions_sha256"]
    with pytest.raises(ValueError, match=r"c\.jsonl answers other questions than this run's.*write to another file"):
        self_distill(tiny, _questions(3, "Another {i}?"), path, max_new_tokens=4, progress=False)
    with pytest.raises(ValueError, match="answers other questions"):  # a superset is other questions too
        self_distill(tiny, _questions(4), path, max_new_tokens=4, progress=False)
    self_distill(tiny, _questions(3), path, max_new_tokens=4, progress=False)  # the same ones resume
    assert len(read_corpus_file(path)[1]) == 3


def test_distill_resumes_a_corpus_from_before_the_questions_hash(tiny, tmp_path):
    from kangaroo_lab.distill import read_corpus_file, self_distill

    path = self_distill(tiny, _questions(2), tmp_path / "c.jsonl", max_new_tokens=4, progress=False)
    header, *lines = path.read_text().splitlines(keepends=True)
    old = {k: v for k, v in json.loads(header).items() if k != "questions_sha256"}
    path.write_text(json.dumps(old) + "\n" + lines[0])  # one answer of two, no hash
    self_distill(tiny, _questions(2), path, max_new_tokens=4, progress=False)
    assert len(read_corpus_file(path)[1]) == 2


def test_distill_counts_and_reports_prompts_over_the_limit(tiny, tmp_path, capsys):
    """Before: a prompt over max_prompt_tokens (or the context less max_new_tokens) was dropped silently,
    with the later turns of its conversation."""
    from kangaroo_lab.distill import read_corpus_file, self_distill
    from kangaroo_lab.questions import Question

    questions = [Question("short", "qa", ("Why?", "And?")), Question("long", "mt_bench", ("word " * 60, "And?"))]
    path = self_distill(tiny, questions, tmp_path / "c.jsonl", max_new_tokens=4, max_prompt_tokens=100, progress=False)
    err = capsys.readouterr().err
    assert "skipped 1 turn(s) whose prompt is over 100 tokens and 1 later turn(s)" in err, err
    assert [e.example_id for e in read_corpus_file(path)[1]] == ["short#1", "short#2"]
    stats = json.loads((tmp_path / "c.jsonl.stats.jsonl").read_text())
    assert (stats["skipped_too_long"], stats["skipped_later_turns"], stats["answers"]) == (1, 1, 2)
    self_distill(tiny, questions[:1], tmp_path / "d.jsonl", max_new_tokens=4, progress=False)
    assert "skipped" not in capsys.readouterr().err


def test_distill_names_the_question_whose_text_breaks_the_tokenizer(tiny, tmp_path):
    from kangaroo_lab.distill import self_distill
    from kangaroo_lab.questions import Question

    questions = [Question("fine", "qa", ("Why?",)), Question("broken", "qa", ("caf\udce9?",))]
    with pytest.raises(ValueError, match=r"question 'broken', turn 1: chat message 1 is not valid text"):
        self_distill(tiny, questions, tmp_path / "c.jsonl", max_new_tokens=4, progress=False)


def _old_pick(self, logits):
    """distill's own temperature / top-p copy before it used accept.Sampler (kept here to compare draws)."""
    import torch

    if self.temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / self.temperature, dim=-1)
    if self.top_p < 1:
        sorted_p, order = probs.sort(-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < self.top_p
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_p * keep)
    noise = torch.empty_like(probs).exponential_()
    return (probs / noise).argmax(-1)


@pytest.mark.parametrize("temperature,top_p", [(0.0, 1.0), (0.8, 1.0), (0.8, 0.9), (1.3, 0.5)])
def test_the_batch_decoder_draws_through_the_sampler_the_same_tokens_as_before(tiny, temperature, top_p, monkeypatch):
    from kangaroo_lab.accept import Sampler
    from kangaroo_lab.distill import BatchDecoder

    prompts = [[3 + (7 * i + j) % 250 for j in range(5 + i)] for i in range(8)]
    dec = BatchDecoder(tiny, 8, 12, 64, temperature=temperature, top_p=top_p)
    assert isinstance(dec.sampler, Sampler)
    new = [dec.answer(prompts, seed=seed) for seed in range(6)]
    monkeypatch.setattr(BatchDecoder, "_pick", _old_pick)
    old = [dec.answer(prompts, seed=seed) for seed in range(6)]
    assert new == old
    assert temperature == 0 or len({tuple(map(tuple, a)) for a in new}) > 1  # the seeds do draw


# ------------------------------------------------------------------------- training
def test_train_with_max_len_below_every_example_says_so(tiny, tmp_path):
    """Before: "0 examples are too few to keep 5% held out; distill more"."""
    from kangaroo_lab.distill import CORPUS_FORMAT, Example, save_corpus_npz, tokenizer_signature
    from kangaroo_lab.training import TrainConfig, train_adapter

    header = {"format": CORPUS_FORMAT, "model": tiny.name, "tokenizer": tokenizer_signature(tiny)}
    examples = [Example(f"q{i}#1", "qa", tuple(range(3, 3 + 20 + i)), (5, 6, 7)) for i in range(11)]
    corpus = save_corpus_npz(header, examples, tmp_path / "c.npz")
    config = TrainConfig(max_len=24, steps=1, eval_every=1, eval_sequences=2, accept_prompts=1, accept_tokens=4)
    message = r"--max-len\) 24 is below every example: the shortest prompt is 20 tokens.* --max-len 38 all of them"
    with pytest.raises(ValueError, match=message):
        train_adapter(tiny, corpus, tmp_path / "out", config, progress=False)


# ------------------------------------------------------------------------- the corpora registry
def test_the_corpora_registry_is_a_packaged_asset_that_parsers_read():
    """Before: about 440 lines of corpora.py were the registry written as code."""
    import fnmatch
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    from kangaroo_lab import corpora

    root = Path(corpora.__file__).parent
    registry = json.loads((root / "assets" / corpora.REGISTRY_FILE).read_text())
    assert [e["name"] for e in registry["sources"]] == list(corpora.SOURCES)
    for entry in registry["sources"]:
        source = corpora.SOURCES[entry["name"]]
        assert corpora.PARSERS[entry["parser"]] is source.parse and source.commit == entry["commit"]
    assert sum(len(s.files) for s in corpora.SOURCES.values()) == 1158
    assert len(corpora.T0_TEMPLATES) == 139
    pyproject = tomllib.loads((root.parent / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["kangaroo_lab"]
    assert any(fnmatch.fnmatch(f"assets/{corpora.REGISTRY_FILE}", p) for p in patterns)
    assert len((root / "corpora.py").read_text().splitlines()) < 700
