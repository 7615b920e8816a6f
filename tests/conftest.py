import fcntl

import pytest

from kangaroo_lab import load_model
from kangaroo_lab.models import cache_root


def embedded_model():
    """The embedded SmolLM2-135M-Instruct in fp32 on the CPU, loaded under a lock file in the cache.

    On a fresh machine the first load converts the GGUF file (~40 s); two test processes doing it at
    once would both convert and replace each other's folder. With the lock the second one waits and
    then loads the cached copy. (fcntl: POSIX, like `make test`.)"""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".tests.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return load_model(device="cpu")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def pytest_configure(config):
    """With pytest-xdist (`make test`: -n 2), convert the embedded model once in the controller,
    before the workers start: then a notebook kernel (tests/test_browser.py) that loads it too finds
    the cached copy. About a second when it is cached already."""
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        embedded_model()


@pytest.fixture(scope="session")
def tiny():
    """The seeded random tiny Llama (4 layers, width 64, byte-level vocabulary of 259)."""
    return load_model("tiny-random", device="cpu", seed=0)


@pytest.fixture(scope="session")
def smol():
    """The embedded SmolLM2-135M-Instruct in fp32 on the CPU (converted once, then cached); one per
    test process."""
    return embedded_model()
