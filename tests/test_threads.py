"""The CPU thread default: applied when a model loads on a CPU, unless the user chose a count."""

import torch

from kangaroo_lab import load_model, models


def _clean(monkeypatch):
    for name in models.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_default_is_half_the_cores_capped(monkeypatch):
    _clean(monkeypatch)
    for cores, threads in ((1, 1), (2, 1), (4, 2), (8, 4), (64, 4)):
        monkeypatch.setattr(models.os, "sched_getaffinity", lambda pid, n=cores: set(range(n)), raising=False)
        assert models.default_cpu_threads() == threads
    monkeypatch.setenv("KANGAROO_LAB_THREADS", "3")
    assert models.default_cpu_threads() == 3


def test_loading_on_a_cpu_sets_threads_unless_chosen(monkeypatch):
    before = torch.get_num_threads()
    try:
        _clean(monkeypatch)
        monkeypatch.setattr(models, "default_cpu_threads", lambda: 1)
        monkeypatch.setitem(models._THREADS, "expected", torch.get_num_threads())
        load_model("tiny-random", device="cpu")
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)  # the user's own choice is kept
        load_model("tiny-random", device="cpu")
        assert torch.get_num_threads() == 2
        monkeypatch.setitem(models._THREADS, "expected", 2)
        monkeypatch.setenv("OMP_NUM_THREADS", "2")  # so is OMP_NUM_THREADS
        load_model("tiny-random", device="cpu")
        assert torch.get_num_threads() == 2
        monkeypatch.setenv("KANGAROO_LAB_THREADS", "1")  # ours always applies
        monkeypatch.setattr(models, "default_cpu_threads", lambda: 1)
        load_model("tiny-random", device="cpu")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
        models._THREADS["expected"] = before
