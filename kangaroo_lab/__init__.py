"""Kangaroo Lab: lossless self-speculative decoding with double early exiting (arXiv 2404.18911).

from kangaroo_lab import load_model, load_adapter, new_adapter, generate
model = load_model()                       # SmolLM2-135M-Instruct, embedded
adapter = load_adapter(model)              # the shipped adapter (exit layer 2)
res = generate(model, "Why is the sky blue?", adapter=adapter, method="kangaroo")
print(res.text, res.mean_accepted, res.tokens_per_second)
"""

from .adapter import Adapter, load_adapter, new_adapter
from .decoding import DEFAULTS, DecodeOptions, GenerationResult, generate
from .models import Model, load_model

__all__ = [
    "Adapter",
    "DEFAULTS",
    "DecodeOptions",
    "GenerationResult",
    "Model",
    "generate",
    "load_adapter",
    "load_model",
    "new_adapter",
]
__version__ = "0.1.0"
