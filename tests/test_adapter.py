"""The adapter: its size, its forward passes, and saving / loading with the checks that guard them."""

import json
from dataclasses import asdict

import pytest
import torch

from kangaroo_lab import load_adapter, load_model, new_adapter
from kangaroo_lab.adapter import META_FILE, VARIANTS, WEIGHTS_FILE


def scramble(adapter, seed=0, std=0.3):
    """Random weights everywhere, so no output can match by coincidence with the initialisation
    (`linear` starts at zero, `none` starts as the model's own final norm).

    The values are exact in bf16, so saving in bf16 or fp32 loses nothing and a round trip can be exact."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapter.parameters():
            w = torch.randn(p.shape, generator=g) * std + (1.0 if p.ndim == 1 else 0.0)
            p.copy_(w.bfloat16().float())
    return adapter


def shallow_states(model, exit_layer, n=30):
    ids = torch.tensor([list(range(10, 10 + n))])
    with torch.inference_mode():
        return model.engine.hidden_states(ids, upto=exit_layer)[exit_layer]  # (1, n, D)


@pytest.fixture(scope="module")
def tiny_seed1():
    return load_model("tiny-random", device="cpu", seed=1)


# ------------------------------------------------------------------------------ size
@pytest.mark.slow
def test_attention_adapter_size_for_smollm2(smol):
    """The paper's adapter for SmolLM2: q, k, v, o (576 x 576 each) and two norms."""
    assert new_adapter(smol, 2).num_parameters() == 4 * 576**2 + 2 * 576 == 1_328_256


def expected_size(c, variant):
    attn = 4 * c.dim * c.n_heads * c.head_dim  # q, k, v, o with as many KV heads as query heads
    return {
        "attention": attn + 2 * c.dim,  # input norm + output norm
        "attention+ffn": attn + 3 * c.dim * c.ffn_dim + 3 * c.dim,  # + SwiGLU, + its norm
        "linear": c.dim * c.dim + c.dim,  # W + output norm
        "none": c.dim,  # output norm only
    }[variant]


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_sizes(tiny, variant):
    assert new_adapter(tiny, 2, variant).num_parameters() == expected_size(tiny.config, variant)


# ------------------------------------------------------------------------------ forward
@pytest.fixture(scope="module")
def tiny_with_final_norm():
    """tiny-random with a non-trivial final norm (its own is all ones, like a fresh RMSNorm)."""
    model = load_model("tiny-random", device="cpu", seed=0)
    with torch.no_grad():
        model.engine.norm.weight.copy_(torch.rand(model.config.dim, generator=torch.Generator().manual_seed(0)) + 0.5)
    return model


@pytest.mark.parametrize("exit_layer", [1, 2, 3])
def test_untrained_none_adapter_is_plain_early_exit(tiny_with_final_norm, exit_layer):
    """`none` = exit at layer l, final norm, LM head: the same logits as the model's own head on h_l."""
    model = tiny_with_final_norm
    h = shallow_states(model, exit_layer)
    adapter = new_adapter(model, exit_layer, "none")
    with torch.inference_mode():
        ours = model.engine.lm_head(adapter(h, start=None))
        assert torch.equal(ours, model.engine.head(h))


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_chunks_equal_uncached_pass(tiny, variant):
    """Drafting feeds the adapter one piece at a time through its KV cache; training runs it uncached."""
    h = shallow_states(tiny, 2)
    adapter = scramble(new_adapter(tiny, 2, variant), seed=1)
    adapter.setup_cache(64)
    with torch.inference_mode():
        full = adapter(h, start=None)
        pieces = [adapter(h[:, a:b], a) for a, b in [(0, 7), (7, 8), (8, 13), (13, 30)]]
    assert (torch.cat(pieces, 1) - full).abs().max() <= 1e-5


# ------------------------------------------------------------------------------ save / load
TRAINING = {"steps": 1200, "loss": 1.875, "prompts": "kangaroo-lab corpus", "lr": [1e-3, 1e-5]}


@pytest.mark.parametrize("variant", VARIANTS)
def test_save_load_round_trip(tiny, tmp_path, variant):
    adapter = scramble(new_adapter(tiny, 3, variant), seed=2)
    folder = adapter.save(tmp_path / "ad", training=TRAINING)
    h = shallow_states(tiny, 3)
    with torch.inference_mode():
        want = adapter(h, start=None)
    for path in (folder, folder / WEIGHTS_FILE):  # the folder, or a file inside it
        again = load_adapter(tiny, path)
        assert (again.exit_layer, again.variant, again.meta.training) == (3, variant, TRAINING)
        assert asdict(again.meta) == asdict(adapter.meta)
        with torch.inference_mode():
            assert torch.equal(again(h, start=None), want)


def test_no_shipped_adapter_says_how_to_get_one(tiny):
    with pytest.raises(FileNotFoundError, match=r"`kangaroo-lab train`.*new_adapter"):
        load_adapter(tiny)


@pytest.mark.slow
def test_adapter_of_another_model_shape(tiny, smol, tmp_path):
    new_adapter(tiny, 2).save(tmp_path)
    with pytest.raises(ValueError, match=r"trained for 'tiny-random'"):
        load_adapter(smol, tmp_path)


def test_adapter_of_other_weights_same_shape(tiny, tiny_seed1, tmp_path):
    """Same config, other weights: strict loading refuses; strict=False is the way out it names."""
    new_adapter(tiny, 2).save(tmp_path)
    with pytest.raises(ValueError, match=r"weights differ.*strict=False"):
        load_adapter(tiny_seed1, tmp_path)
    assert load_adapter(tiny_seed1, tmp_path, strict=False).exit_layer == 2


@pytest.fixture
def saved(tiny, tmp_path):
    """A valid adapter folder to break in various ways."""
    return new_adapter(tiny, 2).save(tmp_path / "ad")


@pytest.mark.parametrize("missing", [META_FILE, WEIGHTS_FILE])
def test_missing_file_is_named(tiny, saved, missing):
    (saved / missing).unlink()
    with pytest.raises(FileNotFoundError, match=missing):
        load_adapter(tiny, saved)


def test_missing_folder(tiny, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere.*adapter\.json"):
        load_adapter(tiny, tmp_path / "nowhere")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_weights(tiny, saved, damage):
    weights = saved / WEIGHTS_FILE
    data = weights.read_bytes()
    weights.write_bytes(b"\x07not a safetensors file\xff" * 20 if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt"):
        load_adapter(tiny, saved)


def edit_meta(folder, **changes):
    meta = json.loads((folder / META_FILE).read_text())
    (folder / META_FILE).write_text(json.dumps({**meta, **changes}))


def test_meta_not_json(tiny, saved):
    (saved / META_FILE).write_text("{exit_layer: 2,")
    with pytest.raises(ValueError, match="not a valid adapter description"):
        load_adapter(tiny, saved)


def test_meta_with_unknown_key(tiny, saved):
    edit_meta(saved, learning_rate=1e-3)
    with pytest.raises(ValueError, match="not a valid adapter description.*learning_rate"):
        load_adapter(tiny, saved)


@pytest.mark.parametrize("exit_layer", [4, 9])
def test_meta_exit_layer_beyond_the_model(tiny, saved, exit_layer):
    edit_meta(saved, exit_layer=exit_layer)
    with pytest.raises(ValueError, match=r"1 <= exit_layer <= 3"):
        load_adapter(tiny, saved)


def test_meta_variant_that_does_not_match_the_weights(tiny, saved):
    """An attention adapter's weights with a description that says `none` (e.g. a copied adapter.json)."""
    edit_meta(saved, variant="none")
    with pytest.raises(ValueError, match=r"adapter\.safetensors.*adapter\.json|adapter\.json.*adapter\.safetensors"):
        load_adapter(tiny, saved)


# ------------------------------------------------------------------------------ new_adapter
@pytest.mark.parametrize("exit_layer", [0, -1, 4, 7, 2.5])
def test_new_adapter_exit_layer_out_of_range(tiny, exit_layer):
    with pytest.raises(ValueError, match=r"1 <= exit_layer <= 3"):
        new_adapter(tiny, exit_layer)


def test_new_adapter_unknown_variant_lists_the_variants(tiny):
    with pytest.raises(ValueError, match="medusa") as e:
        new_adapter(tiny, 2, "medusa")
    assert all(v in str(e.value) for v in VARIANTS)


def test_new_adapter_accepts_numpy_integers(tiny):
    """Sweeps take exit layers from np.arange or a DataFrame column."""
    np = pytest.importorskip("numpy")
    assert new_adapter(tiny, np.int64(2)).exit_layer == 2
