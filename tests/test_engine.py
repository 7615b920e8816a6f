"""The engine against transformers' reference implementation, on the same weights."""

import json

import pytest
import torch

from kangaroo_lab import Model, load_model
from kangaroo_lab.engine import PRESETS, ModelConfig, build_engine, random_state_dict
from kangaroo_lab.models import tiny_tokenizer

TOL = 1e-4


def hf_parity(model: Model, prompt_ids: list[int], steps: int = 8) -> float:
    """Max |engine - HF| over the prompt's logits and `steps` cached one-token decode steps."""
    hf = model.to_hf()
    ids = torch.tensor([prompt_ids])
    model.engine.setup_cache(len(prompt_ids) + steps + 1)
    with torch.inference_mode():
        ours = model.engine(ids, 0)
        worst = (hf(ids).logits - ours).abs().max().item()
        for _ in range(steps):
            nxt = ours[:, -1:].argmax(-1)
            ids = torch.cat([ids, nxt], 1)
            ours = model.engine(nxt, ids.shape[1] - 1)
            worst = max(worst, (hf(ids).logits[:, -1:] - ours).abs().max().item())
    return worst


def test_tiny_random_matches_transformers(tiny):
    assert hf_parity(tiny, tiny.encode("The kangaroo hops across the plain.")) <= TOL


@pytest.mark.slow
def test_smollm2_matches_transformers(smol):
    assert smol.config.n_layers == 30 and smol.config.dim == 576 and smol.config.tie_embeddings
    assert hf_parity(smol, smol.encode("Explain why the sky is blue in two sentences.")) <= TOL


@pytest.mark.parametrize(
    "variant",
    [
        dict(model_type="qwen2", attention_bias=True),
        dict(model_type="mistral"),
        dict(
            rope_scaling={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            }
        ),
        dict(rope_scaling={"rope_type": "linear", "factor": 2.0}, tie_embeddings=True),
    ],
)
def test_llama_family_variants_match_transformers(variant):
    config = ModelConfig(**{**PRESETS["tiny-random"].as_dict(), **variant})
    engine = build_engine(config, random_state_dict(config, seed=1), "cpu", torch.float32)
    tok = tiny_tokenizer()
    model = Model("variant", config, engine, tok, frozenset({tok.eos_token_id}))
    assert hf_parity(model, list(range(3, 90))) <= TOL  # 87 tokens: past the llama3 original context


def test_shallow_then_deep_equals_full_pass_at_every_exit(tiny):
    ids = torch.tensor([tiny.encode("one two three four five")])
    e = tiny.engine
    e.setup_cache(64)
    with torch.inference_mode():
        full = e(ids, 0)
        for l in range(1, tiny.config.n_layers):
            assert torch.equal(e.deep(e.shallow(ids, 0, l), 0, l), full)
        uncached = e.head(e.hidden_states(ids)[-1])
    assert (uncached - full).abs().max() <= 1e-5


def test_chunked_cached_steps_equal_one_pass(tiny):
    """Writing the cache in pieces (as drafting and verification do) gives the same logits."""
    ids = torch.tensor([list(range(10, 40))])
    e = tiny.engine
    e.setup_cache(64)
    with torch.inference_mode():
        full = e(ids, 0)
        pieces = [e(ids[:, a:b], a) for a, b in [(0, 7), (7, 8), (8, 13), (13, 30)]]
    assert (torch.cat(pieces, 1) - full).abs().max() <= 1e-5


def test_local_folder_loads_like_the_original(tmp_path, tiny):
    """A Hugging Face folder (config.json + safetensors + tokenizer) loads through load_model."""
    hf = tiny.to_hf()
    hf.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    again = load_model(str(tmp_path), device="cpu")
    ids = torch.tensor([tiny.encode("hello")])
    tiny.engine.setup_cache(32)
    again.engine.setup_cache(32)
    with torch.inference_mode():
        assert torch.equal(again.engine(ids, 0), tiny.engine(ids, 0))
    assert again.encode("hello") == tiny.encode("hello")


def test_unsupported_architecture_names_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "vocab_size": 10}))
    with pytest.raises(ValueError, match="llama, mistral, qwen2"):
        load_model(str(tmp_path), device="cpu")


@pytest.mark.parametrize("name", ["no-such-model", "gpt2"])
def test_unknown_model_name(name):
    with pytest.raises(ValueError, match="tiny-random"):
        load_model(name, device="cpu")


def test_missing_or_corrupt_gguf(tmp_path):
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        load_model(str(tmp_path / "absent.gguf"), device="cpu")
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ValueError, match="could not read"):
        load_model(str(bad), device="cpu")


def test_tiny_random_is_seeded():
    a, b, c = (load_model("tiny-random", device="cpu", seed=s) for s in (0, 0, 1))
    assert torch.equal(a.engine.lm_head.weight, b.engine.lm_head.weight)
    assert not torch.equal(a.engine.lm_head.weight, c.engine.lm_head.weight)


def test_static_shape_steps_equal_eager_steps(tiny):
    """Positions given as a device tensor (what CUDA graphs capture) == positions given as an int."""
    from kangaroo_lab import new_adapter

    e, adapter = tiny.engine, new_adapter(tiny, 2)
    ids = torch.tensor([list(range(20, 52))])
    outs = {}
    for mode in ("eager", "static"):
        e.setup_cache(64)
        adapter.setup_cache(64)
        e.layers[0].self_attn.kv_cache.k.fill_(7.0)  # stale garbage beyond the written positions must stay masked
        with torch.inference_mode():
            e(ids[:, :20], 0)
            adapter(e.shallow(ids[:, :20], 0, 2), 0)
            steps = []
            for a, b in [(20, 21), (21, 25), (25, 26), (26, 32)]:
                start = a if mode == "eager" else torch.arange(a, b)
                h = e.shallow(ids[:, a:b], start, 2)
                steps += [e.deep(h, start, 2), tiny.engine.lm_head(adapter(h, start))]
        outs[mode] = steps
    for eager, static in zip(outs["eager"], outs["static"]):
        assert (eager - static).abs().max() <= 1e-5
