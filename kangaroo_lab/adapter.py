"""The Kangaroo adapter: the small network that turns shallow hidden states into draft tokens.

Kangaroo's draft model is the target's first `l` layers followed by this adapter and the
target's own (frozen) LM head:

    h_l --RMSNorm--> multi-head attention (RoPE, own KV cache) --(+ h_l)--> RMSNorm --> lm_head
                                                                           (shared with the target)

For SmolLM2-135M that is 4 * 576^2 (q, k, v, o) + 2 * 576 (two norms) = 1,328,256 parameters,
about 1% of the model. Variants for the paper's ablation:

* ``attention`` (default): as above.
* ``attention+ffn``: a full decoder layer (attention and a SwiGLU MLP, each with its norm).
* ``linear``: h + W h (W starts at zero), then RMSNorm.
* ``none``: just the output RMSNorm, initialised from the target's final norm: exiting at layer `l`
  and reading the LM head directly (what transformers' ``assistant_early_exit`` does).

Adapters are saved as ``adapter.safetensors`` + ``adapter.json`` (base model, its shape, exit layer,
variant, a fingerprint of the base weights, the sha256 of the weights file and the training report) in
a folder. Loading checks the sha256 (adapters saved before it was recorded load without it) and refuses
NaN or inf weights.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .engine import MLP, Attention, KVStore, RMSNorm, Rotary, as_int, cache_window
from .models import Model, adapter_fingerprint

VARIANTS = ("attention", "attention+ffn", "linear", "none")
WEIGHTS_FILE, META_FILE = "adapter.safetensors", "adapter.json"
DEFAULT_EXIT_LAYER = 2


@dataclass
class AdapterMeta:
    """What an adapter was built for; checked against the model it is loaded into."""

    base_model: str
    n_layers: int
    dim: int
    n_heads: int
    vocab_size: int
    exit_layer: int
    variant: str = "attention"
    fingerprint: list[float] = field(default_factory=list)
    weights_sha256: str = ""  # of adapter.safetensors, written by save(); "" in adapters saved before
    training: dict = field(default_factory=dict)


class Adapter(nn.Module):
    """Shallow hidden states (B, T, D) at positions [start, start+T) -> pre-head hidden states (B, T, D)."""

    def __init__(self, model: Model, exit_layer: int, variant: str = "attention"):
        super().__init__()
        c = model.config
        exit_layer = check_exit_layer(exit_layer, c.n_layers)
        if variant not in VARIANTS:
            raise ValueError(f"unknown adapter variant {variant!r}; choose one of {VARIANTS}")
        self.meta = AdapterMeta(
            model.name, c.n_layers, c.dim, c.n_heads, c.vocab_size, exit_layer, variant, adapter_fingerprint(model)
        )
        self.config = c
        if variant in ("attention", "attention+ffn"):
            self.input_layernorm = RMSNorm(c.dim, c.norm_eps)
            # as many KV heads as query heads: the adapter is tiny, grouping would save nothing
            self.self_attn = Attention(c.dim, c.n_heads, c.n_heads, c.head_dim, bias=False)
        if variant == "attention+ffn":
            self.post_attention_layernorm = RMSNorm(c.dim, c.norm_eps)
            self.mlp = MLP(c.dim, c.ffn_dim)
        if variant == "linear":
            self.linear = nn.Linear(c.dim, c.dim, bias=False)
        self.norm = RMSNorm(c.dim, c.norm_eps)
        self.rotary = Rotary(c)
        self.cache_len = 0
        self.kv: KVStore | None = None  # the attention variants' own cache (setup_cache)
        self.cache_version = 0
        self.register_buffer("positions", torch.empty(0, dtype=torch.long), persistent=False)
        self._init_weights(model)

    @property
    def exit_layer(self) -> int:
        return self.meta.exit_layer

    @property
    def variant(self) -> str:
        return self.meta.variant

    def _init_weights(self, model: Model):
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, std=0.02)
        if hasattr(self, "linear"):
            nn.init.zeros_(self.linear.weight)  # starts as the identity (plus the norm)
        with torch.no_grad():  # start from the target's own exit: its final norm
            self.norm.weight.copy_(model.engine.norm.weight.float())

    def setup_cache(self, max_len: int, batch: int = 1):
        """Allocate the adapter's own static KV cache (kept when already large enough)."""
        p = self.norm.weight
        if hasattr(self, "self_attn") and max_len > self.cache_len:
            c = self.config
            self.kv = KVStore(1, batch, c.n_heads, max_len, c.head_dim, p.dtype, p.device)
            self.self_attn.kv_cache = self.kv.caches[0]
            self.cache_version += 1
        if max_len > self.cache_len:
            self.rotary.build(max_len, p.dtype, p.device)
            self.positions = torch.arange(max_len, device=p.device)
            self.cache_len = max_len

    def forward(self, h: torch.Tensor, start: int | None = 0) -> torch.Tensor:
        """h: (B, T, D) shallow states. start=None runs without the cache (training, over whole sequences)."""
        T = h.shape[1]
        if start is None:
            positions = torch.arange(T, device=h.device)
            if self.rotary.cos.shape[0] < T:
                self.rotary.build(T, h.dtype, h.device)
            mask, kv_len = None, None
            rope = self.rotary(positions)
        else:  # int start (eager) or a position tensor (static shapes), as in the engine
            positions, rope, mask, kv_len = cache_window(self.positions, self.rotary, self.cache_len, start, T)
        x = h
        if hasattr(self, "self_attn"):
            x = x + self.self_attn(self.input_layernorm(x), rope, positions, mask, kv_len)
        if hasattr(self, "mlp"):
            x = x + self.mlp(self.post_attention_layernorm(x))
        if hasattr(self, "linear"):
            x = x + self.linear(x)
        return self.norm(x)  # (B, T, D); the caller applies the target's lm_head

    def write_kv(self, h: torch.Tensor, start):
        """Fill the adapter's KV cache for shallow states h (B, T, D) at [start, start+T) (or at a
        window's slots, as in `forward`), nothing else.

        Verification calls it for the nodes it computes the shallow states of (the round's last
        drafts), so that the adapter's cache covers every position the target may accept."""
        if hasattr(self, "self_attn"):
            slots, rope, _, _ = cache_window(self.positions, self.rotary, self.cache_len, start, h.shape[1])
            self.self_attn.write_kv(self.input_layernorm(h), rope, slots)

    def compact(self, src: torch.Tensor, dst: torch.Tensor):
        """Move cache slots `src` to `dst` (after a tree round; see `engine.KVStore.compact`)."""
        if self.kv is not None:
            self.kv.compact(src, dst)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------------------ save / load
    def save(self, folder, training: dict | None = None, dtype: torch.dtype = torch.bfloat16) -> Path:
        """Write adapter.safetensors (bf16 by default: half the size, and what GPUs run) + adapter.json."""

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if training is not None:
            self.meta.training = training
        state = {k: v.detach().to(dtype).cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_FILE))
        self.meta.weights_sha256 = file_sha256(folder / WEIGHTS_FILE)
        (folder / META_FILE).write_text(json.dumps(asdict(self.meta), indent=1))
        return folder


def check_exit_layer(exit_layer: int, n_layers: int) -> int:
    """The exit layer as an int, or a ValueError giving the valid range."""
    if as_int(exit_layer) is None or not 0 < exit_layer < n_layers:
        raise ValueError(
            f"exit layer {exit_layer!r} is out of range: the draft must exit after at least one layer and "
            f"before the last, so choose 1 <= exit_layer <= {n_layers - 1} for this {n_layers}-layer model"
        )
    return as_int(exit_layer)


def new_adapter(
    model: Model, exit_layer: int = DEFAULT_EXIT_LAYER, variant: str = "attention", seed: int = 0
) -> Adapter:
    """A freshly initialised (untrained) adapter for `model`, exiting after `exit_layer` layers."""
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the global RNG
        torch.manual_seed(seed)
        adapter = Adapter(model, exit_layer, variant)
    return adapter.to(device=model.device, dtype=model.dtype).eval().requires_grad_(False)


def shipped_adapter_dir(model_name: str, exit_layer: int = DEFAULT_EXIT_LAYER, variant: str = "attention") -> Path:
    """Where the package keeps the adapter trained for a model, exit layer and variant."""
    tag = f"l{exit_layer}-{variant.replace('+', '-')}"
    return Path(str(files("kangaroo_lab") / "assets" / "adapters" / model_name / tag))


def load_adapter(
    model: Model, path=None, exit_layer: int = DEFAULT_EXIT_LAYER, variant: str = "attention", strict: bool = True
) -> Adapter:
    """Load a trained adapter: the shipped one for `model` when `path` is None, else from a folder.

    Fails with a clear message when the adapter was trained for a model of another shape, or (with
    strict=True) for other weights of the same shape."""
    if path is None:
        check_exit_layer(exit_layer, model.config.n_layers)
    folder = Path(path) if path is not None else shipped_adapter_dir(model.name, exit_layer, variant)
    if path is None and not (folder / META_FILE).is_file():
        raise FileNotFoundError(
            f"no shipped adapter for {model.name!r} at exit layer {exit_layer} ({variant}). Train one with "
            f"`kangaroo-lab train`, or start from new_adapter(model, exit_layer={exit_layer})."
        )
    if folder.is_file():
        folder = folder.parent
    for name in (META_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"{folder / name} is missing: an adapter folder holds {META_FILE} and {WEIGHTS_FILE}"
            )
    meta = _read_meta(folder / META_FILE)
    _check_fits(meta, model, strict)
    _check_checksum(folder, meta, shipped=path is None)
    adapter = Adapter(model, meta.exit_layer, meta.variant)
    adapter.meta.training, adapter.meta.weights_sha256 = meta.training, meta.weights_sha256
    try:
        adapter.load_state_dict(_read_weights(folder / WEIGHTS_FILE))
    except RuntimeError as e:
        raise ValueError(
            f"{folder / WEIGHTS_FILE} does not hold the weights that {folder / META_FILE} describes "
            f"(variant {meta.variant!r}); re-save the adapter ({e})"
        ) from e
    return adapter.to(device=model.device, dtype=model.dtype).eval().requires_grad_(False)


def _read_meta(path: Path) -> AdapterMeta:
    try:
        return AdapterMeta(**json.loads(path.read_text()))
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path} is not a valid adapter description ({e}); re-save or retrain the adapter") from e


def file_sha256(path: Path) -> str:
    """The sha256 of a file, as hex (an adapter's 0.7-8 MB: a few milliseconds)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _check_checksum(folder: Path, meta: AdapterMeta, shipped: bool):
    """The weights file against the sha256 recorded when it was saved (none recorded: nothing to check)."""
    if meta.weights_sha256 and file_sha256(folder / WEIGHTS_FILE) != meta.weights_sha256:
        fix = (
            "reinstall kangaroo-lab to restore the shipped adapter"
            if shipped
            else "restore it from where you got it, or retrain and save the adapter again"
        )
        raise ValueError(
            f"{folder / WEIGHTS_FILE} is corrupt: its sha256 differs from the one {META_FILE} recorded when "
            f"the adapter was saved (the file was damaged or replaced since); {fix}"
        )


def _read_weights(path: Path) -> dict:
    """The tensors of an adapter's weights file; a file that is not safetensors, or holds NaN or inf, is refused."""

    try:
        state = load_file(str(path))
    except Exception as e:
        raise ValueError(f"{path} is corrupt or not a safetensors file ({type(e).__name__}: {e})") from e
    bad = [name for name, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise ValueError(
            f"{path} holds NaN or inf weights (in {', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}): "
            "training diverged or the file is damaged; retrain (a lower lr) or restore the file"
        )
    return state


def _check_fits(meta: AdapterMeta, model: Model, strict: bool):
    c = model.config
    shape = {"n_layers": c.n_layers, "dim": c.dim, "n_heads": c.n_heads, "vocab_size": c.vocab_size}
    wrong = {k: (getattr(meta, k), v) for k, v in shape.items() if getattr(meta, k) != v}
    if wrong:
        detail = ", ".join(f"{k} {a} vs {b}" for k, (a, b) in wrong.items())
        raise ValueError(
            f"this adapter was trained for {meta.base_model!r} and does not fit {model.name!r} ({detail}). "
            f"Load it into {meta.base_model!r}, or train an adapter for this model with `kangaroo-lab train`."
        )
    check_exit_layer(meta.exit_layer, c.n_layers)
    fp = torch.tensor(adapter_fingerprint(model))
    if strict and meta.fingerprint and not torch.allclose(fp, torch.tensor(meta.fingerprint), rtol=2e-2, atol=2e-3):
        raise ValueError(
            f"this adapter was trained for {meta.base_model!r}, whose weights differ from {model.name!r} "
            "(same shape, other weights). Use the model it was trained on, retrain, or pass strict=False."
        )
