"""Bad input to generate and load_model: each a clear error that says what was wrong and what to do."""

import json
import math

import pytest
import torch

from kangaroo_lab import DecodeOptions, Model, generate, load_model, new_adapter
from kangaroo_lab.engine import PRESETS, ModelConfig, build_engine, random_state_dict
from kangaroo_lab.models import tiny_tokenizer

CONTEXT = PRESETS["tiny-random"].max_seq_len  # 1024


def long_prompt(n):
    return [i % 256 for i in range(n)]  # byte tokens, no EOS among them


# ------------------------------------------------------------------------------ prompts
@pytest.mark.parametrize("prompt", ["", "   ", [], torch.tensor([], dtype=torch.long)])
def test_empty_prompt(tiny, prompt):
    with pytest.raises(ValueError, match="empty prompt: pass some text"):
        generate(tiny, prompt, method="ar")


@pytest.mark.parametrize("prompt", [[1, 2, 259], [-1, 5], [1000]])
def test_token_ids_outside_the_vocabulary(tiny, prompt):
    with pytest.raises(ValueError, match=r"outside the vocabulary \[0, 259\)"):
        generate(tiny, prompt, method="ar")


@pytest.mark.parametrize("prompt", [None, 42, ["hello", "world"]])
def test_prompt_of_the_wrong_type(tiny, prompt):
    with pytest.raises((TypeError, ValueError), match="prompt"):
        generate(tiny, prompt, method="ar")


# ------------------------------------------------------------------------------ options
@pytest.mark.parametrize(
    "option,value,message",
    [
        ("threshold", -0.1, r"threshold \(eta\) must lie in \[0, 1\]"),
        ("threshold", 1.5, r"threshold \(eta\) must lie in \[0, 1\]"),
        ("threshold", math.nan, r"threshold \(eta\) must lie in \[0, 1\], got nan"),
        ("max_draft", 0, r"max_draft \(gamma\) must be an integer >= 1"),
        ("max_draft", -1, r"max_draft \(gamma\) must be an integer >= 1"),
        ("max_draft", 2.5, r"max_draft \(gamma\) must be an integer >= 1"),
        ("max_new_tokens", 0, r"max_new_tokens must be an integer >= 1"),
        ("max_new_tokens", -5, r"max_new_tokens must be an integer >= 1"),
        ("temperature", -1.0, r"temperature must be >= 0 \(0 = greedy\)"),
        ("temperature", math.nan, r"temperature must be >= 0"),
        ("top_p", 0.0, r"top_p must lie in \(0, 1\]"),
        ("top_p", 1.5, r"top_p must lie in \(0, 1\]"),
        ("top_p", math.nan, r"top_p must lie in \(0, 1\]"),
        ("node_budget", 0, r"node_budget \(nodes per round\) must be an integer >= 1"),
        ("node_budget", -3, r"node_budget \(nodes per round\) must be an integer >= 1"),
        ("top_k", 0, r"top_k \(children per node\) must be an integer >= 1"),
        ("n_max", 0, r"n_max \(longest n-gram looked up\) must be an integer >= 1"),
        ("lookup_tokens", 0, r"lookup_tokens \(tokens proposed per match\) must be an integer >= 1"),
        ("lookup_tokens", 1.5, r"lookup_tokens \(tokens proposed per match\) must be an integer >= 1"),
        ("early_exit", "gpu", r"early_exit must be one of \('host', 'device'\)"),
    ],
)
def test_bad_decoding_option(tiny, option, value, message):
    """Checked by DecodeOptions, so generate, the CLI and the benchmarks reject the same values.
    NaN fails every comparison, so `not 0 <= nan <= 1` rejects it without a special case."""
    with pytest.raises(ValueError, match=message):
        generate(tiny, "hi", method="ar", **{option: value})
    with pytest.raises(ValueError, match=message):
        DecodeOptions(**{option: value})


def test_numpy_integer_options_are_accepted(tiny):
    """Sweeps take gamma and budgets from np.arange or a DataFrame column."""
    np = pytest.importorskip("numpy")
    res = generate(tiny, "hi", method="ar", max_draft=np.int64(3), max_new_tokens=np.int64(4))
    assert len(res.token_ids) <= 4


# ------------------------------------------------------------------------------ method / adapter
def test_unknown_method_lists_the_methods(tiny):
    with pytest.raises(
        ValueError,
        match=r"unknown method 'medusa'; choose one of \('ar', 'kangaroo', 'pld', "
        r"'kangaroo-tree', 'kangaroo\+lookup'\)",
    ):
        generate(tiny, "hi", method="medusa")


@pytest.mark.parametrize("kw", [{}, {"method": "kangaroo"}, {"method": "kangaroo-tree"}, {"method": "kangaroo+lookup"}])
def test_kangaroo_without_adapter_says_where_to_get_one(tiny, kw):
    """Kangaroo is the default method, so a bare generate(model, prompt) needs an adapter too."""
    with pytest.raises(ValueError, match=r"needs an adapter: load_adapter\(model\) or new_adapter"):
        generate(tiny, "hi", **kw)


def test_adapter_of_another_model(tiny):
    """An adapter built on a width-32 model cannot draft for the width-64 tiny-random."""
    config = ModelConfig(**{**PRESETS["tiny-random"].as_dict(), "dim": 32, "ffn_dim": 88, "head_dim": 0})
    tok = tiny_tokenizer()
    narrow = Model(
        "tiny-narrow",
        config,
        build_engine(config, random_state_dict(config), "cpu", torch.float32),
        tok,
        frozenset({tok.eos_token_id}),
    )
    with pytest.raises(ValueError, match=r"trained for 'tiny-narrow' and does not fit 'tiny-random' \(dim 32 vs 64\)"):
        generate(tiny, "hi", adapter=new_adapter(narrow, 2))


def test_pld_needs_no_adapter(tiny):
    ar = generate(tiny, "hi hi hi", method="ar", max_new_tokens=8)
    assert generate(tiny, "hi hi hi", method="pld", max_new_tokens=8).token_ids == ar.token_ids


def test_a_whole_decode_options_is_accepted(tiny):
    """generate(options=DecodeOptions(...)) uses it whole; keyword arguments still override it."""
    opts = DecodeOptions(max_new_tokens=5, lookup_tokens=2, n_max=1)
    res = generate(tiny, "hi hi hi", method="pld", options=opts)
    assert len(res.token_ids) == 5 and all(len(r.drafts) <= 2 for r in res.trace)
    assert len(generate(tiny, "hi hi hi", method="pld", options=opts, max_new_tokens=7).token_ids) == 7


# ------------------------------------------------------------------------------ trees
@pytest.mark.parametrize(
    "method,options,message",
    [
        (
            "kangaroo-tree",
            dict(node_budget=5000),
            r"node_budget=5000 is beyond the KV cache of this model's context "
            r"\(1024 tokens\)",
        ),
        ("pld", dict(lookup_tokens=2000), r"beyond the KV cache .*lower node_budget or lookup_tokens"),
        (
            "kangaroo+lookup",
            dict(node_budget=9, lookup_tokens=8),
            r"node_budget=9 leaves no room for the adapter's drafts: "
            r"kangaroo\+lookup needs node_budget >= 10",
        ),
        ("kangaroo-tree", dict(node_budget=1), r"needs node_budget >= 2"),
    ],
)
def test_tree_settings_that_cannot_work(tiny, method, options, message):
    with pytest.raises(ValueError, match=message):
        generate(tiny, "hi", adapter=new_adapter(tiny, 2), method=method, **options)


def test_fixed_rows_must_hold_the_tree(tiny):
    from kangaroo_lab.graphs import GraphOptions

    with pytest.raises(ValueError, match=r"fixed rows=8 cannot hold a tree of \d+ nodes; use rows >= "):
        generate(
            tiny, "hi", adapter=new_adapter(tiny, 2), method="kangaroo-tree", cuda_graphs=GraphOptions(fixed_rows=8)
        )


# ------------------------------------------------------------------------------ context length
@pytest.mark.parametrize("method", ["ar", "kangaroo", "pld", "kangaroo+lookup"])
def test_prompt_beyond_the_context(tiny, method):
    with pytest.raises(ValueError, match=r"context of 1024 tokens; shorten the prompt or lower max_new_tokens"):
        generate(tiny, long_prompt(1000), adapter=new_adapter(tiny, 2), method=method, max_new_tokens=100)


@pytest.fixture(scope="module")
def no_eos(tiny):
    """tiny-random that never stops early, so every generation fills its budget."""
    return type(tiny)(**{**tiny.__dict__, "eos_token_ids": frozenset()})


@pytest.mark.parametrize("method", ["kangaroo", "pld", "kangaroo-tree", "kangaroo+lookup"])
def test_generation_up_to_the_end_of_the_cache(no_eos, method):
    """A request that ends one position short of the context: the last drafts and verifications
    touch the end of the KV caches (a tree's nodes lie past the context, in scratch slots that are
    never kept), and every method still reproduces greedy AR."""
    prompt, budget = long_prompt(1000), CONTEXT - 1000 - 1
    ar = generate(no_eos, prompt, method="ar", max_new_tokens=budget)
    res = generate(no_eos, prompt, adapter=new_adapter(no_eos, 2), method=method, threshold=0.0, max_new_tokens=budget)
    assert len(ar.token_ids) == budget and res.token_ids == ar.token_ids


@pytest.mark.parametrize("method", ["kangaroo", "kangaroo+lookup"])
def test_prompt_plus_max_new_tokens_equal_to_the_context_fits(no_eos, method):
    prompt, budget = long_prompt(1000), CONTEXT - 1000
    ar = generate(no_eos, prompt, method="ar", max_new_tokens=budget)
    res = generate(no_eos, prompt, adapter=new_adapter(no_eos, 2), method=method, threshold=0.0, max_new_tokens=budget)
    assert len(ar.token_ids) == budget and res.token_ids == ar.token_ids


# ------------------------------------------------------------------------------ load_model
def test_unknown_model_name_lists_what_loads():
    with pytest.raises(ValueError, match=r"unknown model 'nonexistent-name'\. Use .*'tiny-random'"):
        load_model("nonexistent-name", device="cpu")


def test_missing_local_folder(tmp_path):
    with pytest.raises((FileNotFoundError, ValueError), match=r"(?i)absent.*(not found|does not exist|no such)"):
        load_model(str(tmp_path / "absent"), device="cpu")


def test_folder_without_weights(tiny, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(tiny.config.to_hf()))
    with pytest.raises(FileNotFoundError, match=r"holds no \*\.safetensors or pytorch_model\*\.bin weights"):
        load_model(str(tmp_path), device="cpu")


def test_folder_with_broken_config(tmp_path):
    (tmp_path / "config.json").write_text("{model_type: llama")
    with pytest.raises(ValueError, match="config.json"):
        load_model(str(tmp_path), device="cpu")


def test_folder_with_incomplete_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 100}))
    with pytest.raises(ValueError, match=r"config\.json.*num_attention_heads|num_attention_heads.*config\.json"):
        load_model(str(tmp_path), device="cpu")


# ------------------------------------------------------------------------------ sampling arguments everywhere
@pytest.mark.parametrize(
    "temperature,seed,message",
    [
        (math.inf, 0, r"temperature must be >= 0 \(0 = greedy\) and finite, got inf"),  # was: uniform sampling
        (-1.0, 0, r"temperature must be >= 0"),
        (0.7, 2**70, r"seed must be an integer in \[0, 2\*\*64\), got 1180591620717411303424"),  # was: an overflow
        (0.7, -1, r"seed must be an integer in \[0, 2\*\*64\)"),
        (0.7, 1.5, r"seed must be an integer"),
    ],
)
def test_bad_sampling_arguments(tiny, temperature, seed, message):
    from kangaroo_lab.decoding import check_sampling

    with pytest.raises(ValueError, match=message):
        generate(tiny, "hi", method="ar", temperature=temperature, seed=seed)
    with pytest.raises(ValueError, match=message):
        check_sampling(temperature, 1.0, seed)  # what the CLI's distill (and self_distill) call


TINY = ["--model", "tiny-random"]


def cli_error(capsys, argv) -> str:
    """The CLI's one-line error (exit code 2, no traceback)."""
    from kangaroo_lab.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("kangaroo-lab: error: ") and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    "args,message",
    [
        (["--prompts", "0"], "--prompts must be >= 1, got 0"),
        (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        (["--max-new-tokens", "0"], "--max-new-tokens must be >= 1, got 0"),
        (["--temperature", "-1"], "temperature must be >= 0 (0 = greedy) and finite, got -1.0"),
        (
            ["--temperature", "nan"],
            "temperature must be >= 0 (0 = greedy) and finite, got nan",
        ),  # was: greedy, header nan
        (["--temperature", "inf"], "temperature must be >= 0 (0 = greedy) and finite, got inf"),
        (["--temperature", "0.7", "--top-p", "0"], "top_p must lie in (0, 1], got 0.0"),
        (["--temperature", "0.7", "--seed", "-1"], "seed must be an integer in [0, 2**64), got -1"),
    ],
)
def test_distill_bad_arguments(capsys, tmp_path, args, message):
    err = cli_error(capsys, ["distill", *TINY, "--out", str(tmp_path / "c.jsonl"), *args])
    assert message in err
    assert not (tmp_path / "c.jsonl").exists()  # refused before anything was written


def test_train_eval_every_zero(capsys, tmp_path):
    """Was a ZeroDivisionError after the model loaded and training began."""
    (tmp_path / "c.jsonl").write_text("{}\n")
    err = cli_error(
        capsys, ["train", *TINY, "--data", str(tmp_path / "c.jsonl"), "--out", str(tmp_path / "a"), "--eval-every", "0"]
    )
    assert "eval_every must be an integer >= 1" in err


@pytest.mark.parametrize(
    "command",
    [["bench", "--questions"], ["distill", "--out", "OUT", "--questions"], ["train", "--out", "OUT", "--data"]],
)
def test_a_file_that_is_not_utf8_is_named(capsys, tmp_path, command):
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes('{"question_id": 1, "category": "qa", "turns": ["caf\xe9"]}\n'.encode("latin-1"))
    argv = [c.replace("OUT", str(tmp_path / "out")) for c in command]
    err = cli_error(capsys, [argv[0], *TINY, *argv[1:], str(bad)])
    assert f"{bad} is not UTF-8 text (byte 51" in err, err


def test_resuming_distill_with_other_settings_is_refused(capsys, tmp_path):
    """A corpus started with one max_new_tokens / temperature is not continued with another (its
    answers would mix two configurations)."""
    out = tmp_path / "c.jsonl"
    out.write_text(
        json.dumps(
            {
                "format": "kangaroo-lab-corpus/1",
                "model": "tiny-random",
                "max_new_tokens": 40,
                "temperature": 0.0,
                "top_p": 1.0,
            }
        )
        + "\n"
    )
    err = cli_error(capsys, ["distill", *TINY, "--out", str(out), "--max-new-tokens", "64", "--temperature", "0.7"])
    assert (
        "was started with max_new_tokens=40, temperature=0.0; this run asks for max_new_tokens=64, "
        "temperature=0.7" in err
    )
    assert len(out.read_text().splitlines()) == 1  # nothing appended


def test_load_adapter_at_an_impossible_exit_layer(tiny):
    """Was: 'no shipped adapter ... start from new_adapter(model, exit_layer=30)', itself invalid."""
    from kangaroo_lab import load_adapter

    with pytest.raises(ValueError, match=r"exit layer 30 is out of range.*1 <= exit_layer <= 3") as e:
        load_adapter(tiny, exit_layer=30)
    assert "new_adapter(model, exit_layer=30)" not in str(e.value)
