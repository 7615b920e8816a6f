"""The converted-model cache: never trusted blindly, never left half-written, never left behind.

A tiny model saved through the same path as a GGUF conversion (`models.write_cache`) stands in for
the 36 s SmolLM2 conversion; `convert_gguf` is patched to write it."""

import json
import os
import subprocess
import sys

import pytest
import torch

from kangaroo_lab import generate, models
from kangaroo_lab.engine import with_prefix
from kangaroo_lab.models import load_model


@pytest.fixture
def cache(tiny, tmp_path, monkeypatch):
    """(the .gguf path to load, its cache folder, a list counting conversions)."""
    monkeypatch.setenv("KANGAROO_LAB_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "little.gguf"
    gguf.write_bytes(b"GGUF stand-in")
    conversions = []

    def convert(path, folder, stamp=None):
        conversions.append(folder)
        return models.write_cache(
            folder,
            with_prefix(tiny.engine.state_dict()),
            tiny.config.to_hf(),
            tiny.tokenizer,
            stamp or models._file_stamp(path),
        )

    monkeypatch.setattr(models, "convert_gguf", convert)
    return gguf, tmp_path / "cache" / "little", conversions


def same_as_tiny(tiny, model):
    ref = generate(tiny, "hello", method="ar", max_new_tokens=12).token_ids
    return generate(model, "hello", method="ar", max_new_tokens=12).token_ids == ref


def test_first_load_converts_then_reuses(tiny, cache):
    gguf, folder, conversions = cache
    assert same_as_tiny(tiny, load_model(str(gguf), device="cpu"))
    assert same_as_tiny(tiny, load_model(str(gguf), device="cpu"))
    assert len(conversions) == 1
    assert (
        json.loads((folder / "source.json").read_text())["weights"]["size"]
        == (folder / "model.safetensors").stat().st_size
    )
    assert [p.name for p in folder.parent.iterdir()] == ["little"]  # no temporary folder left


@pytest.mark.parametrize("damage", ["truncated", "overwritten", "emptied", "no checksum"])
def test_a_damaged_cache_is_detected_and_rebuilt_with_a_message(tiny, cache, capsys, damage):
    gguf, folder, conversions = cache
    load_model(str(gguf), device="cpu")
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    if damage == "truncated":  # a SafetensorError on every later load, before
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "overwritten":  # loaded without a word and generated garbage, before
        mid = len(data) // 2
        weights.write_bytes(data[:mid] + bytes(4096) + data[mid + 4096 :])
    elif damage == "emptied":
        weights.write_bytes(b"")
    else:  # a cache from before checksums were stored
        source = json.loads((folder / "source.json").read_text())
        (folder / "source.json").write_text(json.dumps({k: v for k, v in source.items() if k != "weights"}))
    capsys.readouterr()
    model = load_model(str(gguf), device="cpu")
    err = capsys.readouterr().err
    assert f"the cached copy of little in {folder}" in err and "converting again" in err, err
    assert len(conversions) == 2 and same_as_tiny(tiny, model)
    assert weights.read_bytes() == data


def test_an_interrupted_conversion_leaves_no_cache_and_no_temporary_folder(tiny, cache, monkeypatch):
    """An error or Ctrl-C while writing: the temporary folder is removed, no cache appears, and the
    next load converts from scratch."""
    gguf, folder, conversions = cache
    from kangaroo_lab import models as st  # the module that writes the cache

    save = st.save_file

    def interrupted(sd, path, *a, **k):
        save(sd, path, *a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(st, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_model(str(gguf), device="cpu")
    assert list(folder.parent.iterdir()) == []
    monkeypatch.setattr(st, "save_file", save)
    assert same_as_tiny(tiny, load_model(str(gguf), device="cpu")) and len(conversions) == 2


def test_a_killed_conversion_is_swept_and_never_read(tiny, cache):
    """kill -9 mid-conversion: the temporary folder of a process that is gone is swept by the next
    load, and never mistaken for the cache."""
    gguf, folder, _ = cache
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = folder.parent / f".little-{dead.pid}-abc123"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half a file")
    assert same_as_tiny(tiny, load_model(str(gguf), device="cpu"))
    assert sorted(p.name for p in folder.parent.iterdir()) == ["little"]


def test_a_conversion_in_progress_is_left_alone(cache):
    gguf, folder, _ = cache
    running = folder.parent / f".little-{os.getpid()}-xyz"  # this process: alive
    running.mkdir(parents=True)
    load_model(str(gguf), device="cpu")
    assert running.is_dir()


def test_weights_digest_sees_a_change_anywhere(tmp_path):
    path = tmp_path / "w.bin"
    data = torch.randint(0, 256, (3_000_000,), dtype=torch.uint8).numpy().tobytes()
    path.write_bytes(data)
    digest = models.weights_digest(path)
    spacing = len(data) // models.SAMPLES
    for at in range(0, len(data) - spacing, len(data) // 7):  # a region as wide as the blocks' spacing
        path.write_bytes(data[:at] + bytes(spacing) + data[at + spacing :])
        assert models.weights_digest(path) != digest, at
    path.write_bytes(data)
    assert models.weights_digest(path) == digest
