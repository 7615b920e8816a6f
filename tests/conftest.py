import pytest

from kangaroo_lab import load_model


@pytest.fixture(scope="session")
def tiny():
    """The seeded random tiny Llama (4 layers, width 64, byte-level vocabulary of 259)."""
    return load_model("tiny-random", device="cpu", seed=0)


@pytest.fixture(scope="session")
def smol():
    """The embedded SmolLM2-135M-Instruct in fp32 on the CPU (converted once, then cached)."""
    return load_model(device="cpu")
