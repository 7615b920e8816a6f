"""A compact Llama-family transformer with a static KV cache and two entry points.

Kangaroo splits one model in two:

    tokens --shallow(l)--> h_l --deep(l)--> logits
              layers < l          layers >= l, final norm, LM head

`shallow` fills the KV cache of the first `l` layers, `deep` the cache of the rest. Drafting runs
`shallow` one token at a time (plus the adapter); verification runs `deep` once over the shallow
states the drafting already computed, so layers < l never see a token twice.

The KV cache is static: one (B, n_kv_heads, max_len, head_dim) view per layer into a store shared
by all layers (`KVStore`), written by slot. For a sequence, a token's slot is its position, and
rolling back after a rejected draft is just moving the next write position; entries past it are
masked out until they are overwritten. A tree of candidates (`tree_window`) sits in the slots
after the committed tokens, each node rotated as position root + depth and seeing the cache and
its own ancestors; after verification the accepted path moves to consecutive slots in every
layer at once (`KVStore.compact`).

Parameter names mirror Hugging Face's Llama (minus the `model.` prefix), so any Llama-family
state dict (Llama 2/3, Vicuna, Mistral, Qwen2 with q/k/v biases, SmolLM) loads as it is.
"""

from __future__ import annotations

import math
import operator
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

SUPPORTED_ARCHITECTURES = ("llama", "mistral", "qwen2")
REQUIRED_HF_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3")


def as_int(value) -> int | None:
    """`value` as a Python int if it is an integer of any kind (numpy's too, not bool), else None."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


CACHE_BLOCK = 256  # caches are allocated in blocks of this many slots, so that similar requests reuse them


def cache_slots(n: int) -> int:
    """n slots rounded up to whole cache blocks."""
    return -(-n // CACHE_BLOCK) * CACHE_BLOCK


def sync(device: torch.device):
    """Wait for the device's queued work (before reading a clock); nothing to wait for on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a Llama-family decoder. `head_dim` defaults to dim // n_heads."""

    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    head_dim: int = 0
    norm_eps: float = 1e-5
    rope_theta: float = 10_000.0
    rope_scaling: dict | None = field(default=None, hash=False)
    tie_embeddings: bool = False
    attention_bias: bool = False
    max_seq_len: int = 2048
    model_type: str = "llama"

    def __post_init__(self):
        if not self.head_dim:
            object.__setattr__(self, "head_dim", self.dim // self.n_heads)
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}")

    @classmethod
    def from_hf(cls, hf: dict) -> "ModelConfig":
        """Read a Hugging Face config dict (transformers 4.x or 5.x field names)."""
        model_type = hf.get("model_type", "llama")
        if model_type not in SUPPORTED_ARCHITECTURES:
            raise ValueError(
                f"unsupported architecture {model_type!r}: Kangaroo Lab's engine runs Llama-family "
                f"decoders ({', '.join(SUPPORTED_ARCHITECTURES)})."
            )
        missing = [k for k in REQUIRED_HF_FIELDS if k not in hf]
        if missing:
            raise ValueError(f"the model's config.json lacks {missing}: is it a Llama-family decoder config?")
        rope = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
        theta = rope.pop("rope_theta", None) or hf.get("rope_theta") or 10_000.0
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type not in SUPPORTED_ROPE_TYPES:
            raise ValueError(f"unsupported RoPE scaling {rope_type!r}; supported: {SUPPORTED_ROPE_TYPES}")
        n_heads = hf["num_attention_heads"]
        return cls(
            vocab_size=hf["vocab_size"],
            dim=hf["hidden_size"],
            n_layers=hf["num_hidden_layers"],
            n_heads=n_heads,
            n_kv_heads=hf.get("num_key_value_heads") or n_heads,
            ffn_dim=hf["intermediate_size"],
            head_dim=hf.get("head_dim") or hf["hidden_size"] // n_heads,
            norm_eps=hf.get("rms_norm_eps", 1e-5),
            rope_theta=float(theta),
            rope_scaling=rope if rope_type != "default" else None,
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
            attention_bias=bool(hf.get("attention_bias", model_type == "qwen2")),
            max_seq_len=hf.get("max_position_embeddings", 2048),
            model_type=model_type,
        )

    def to_hf(self) -> dict:
        """The matching Hugging Face config dict (for `transformers.AutoConfig.for_model`)."""
        rope = {"rope_type": "default", **(self.rope_scaling or {}), "rope_theta": self.rope_theta}
        return {
            "model_type": self.model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.dim,
            "num_hidden_layers": self.n_layers,
            "num_attention_heads": self.n_heads,
            "num_key_value_heads": self.n_kv_heads,
            "intermediate_size": self.ffn_dim,
            "head_dim": self.head_dim,
            "rms_norm_eps": self.norm_eps,
            "rope_theta": self.rope_theta,
            "rope_parameters": rope,
            "rope_scaling": rope if self.rope_scaling else None,
            "tie_word_embeddings": self.tie_embeddings,
            "attention_bias": self.attention_bias,
            "max_position_embeddings": self.max_seq_len,
            "hidden_act": "silu",
        }

    def as_dict(self) -> dict:
        return asdict(self)


# Named presets. "tiny-random" makes every test run on a CPU in seconds: 4 layers, width 64,
# GQA (4 query heads over 2 KV heads), untied head (the default model covers the tied case).
PRESETS = {
    "tiny-random": ModelConfig(
        vocab_size=259, dim=64, n_layers=4, n_heads=4, n_kv_heads=2, ffn_dim=176, max_seq_len=1024
    ),
    "smollm2-135m-instruct": ModelConfig(
        vocab_size=49152,
        dim=576,
        n_layers=30,
        n_heads=9,
        n_kv_heads=3,
        ffn_dim=1536,
        norm_eps=1e-5,
        rope_theta=100_000.0,
        tie_embeddings=True,
        max_seq_len=8192,
    ),
}


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in fp32 like Llama's reference implementation."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rope_inverse_frequencies(config: ModelConfig) -> torch.Tensor:
    """RoPE's inverse frequencies, (head_dim / 2,), with linear or Llama-3 scaling if configured."""
    hd = config.head_dim
    inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    scaling = config.rope_scaling or {}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "linear":
        inv_freq = inv_freq / scaling["factor"]
    elif kind == "llama3":
        factor = scaling["factor"]
        low, high = scaling.get("low_freq_factor", 1.0), scaling.get("high_freq_factor", 4.0)
        old_len = scaling["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv_freq
        # long wavelengths are slowed down by `factor`, short ones kept, the middle band blended
        smooth = ((old_len / wavelen - low) / (high - low)).clamp(0, 1)
        inv_freq = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    return inv_freq


class Rotary(nn.Module):
    """cos/sin tables for positions [0, max_len), looked up by absolute position."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.register_buffer("cos", torch.empty(0), persistent=False)
        self.register_buffer("sin", torch.empty(0), persistent=False)

    def build(self, max_len: int, dtype: torch.dtype, device):
        inv_freq = rope_inverse_frequencies(self.config).to(device)  # fp32, whatever the model dtype
        t = torch.arange(max_len, device=device, dtype=torch.float32)
        freqs = torch.outer(t, inv_freq)  # (S, hd/2)
        emb = torch.cat([freqs, freqs], dim=-1)  # (S, hd): rotate-half layout
        self.cos, self.sin = emb.cos().to(dtype), emb.sin().to(dtype)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cos[positions], self.sin[positions]  # (T, hd) each


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (B, H, T, hd); cos, sin: (T, hd). Rotate pairs (i, i + hd/2) by the position's angle."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class KVCache(nn.Module):
    """One layer's static cache: k, v of shape (B, n_kv_heads, max_len, head_dim), written by slot.

    k and v may be views into stores shared by every layer (`KVStore`), so that moving entries
    between slots (`KVStore.compact`) is one copy for all layers instead of one per layer."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor):
        super().__init__()
        self.register_buffer("k", k, persistent=False)
        self.register_buffer("v", v, persistent=False)

    def update(self, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kv_len: int):
        """Write k, v: (B, Hkv, T, hd) at `slots` (T,); return the first kv_len entries."""
        self.k.index_copy_(2, slots, k)
        self.v.index_copy_(2, slots, v)
        return self.k[:, :, :kv_len], self.v[:, :, :kv_len]


class KVStore:
    """The caches of `n` attention layers in two tensors, k and v: (n, B, Hkv, max_len, hd).

    Layer i reads and writes the views k[i], v[i] (`caches`). After a tree round, the accepted
    path's entries move to consecutive slots in every layer at once (`compact`)."""

    def __init__(self, n: int, batch: int, n_kv_heads: int, max_len: int, head_dim: int, dtype, device):
        shape = (n, batch, n_kv_heads, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.caches = [KVCache(self.k[i], self.v[i]) for i in range(n)]

    def compact(self, src: torch.Tensor, dst: torch.Tensor):
        """Copy slots `src` (T,) to slots `dst` (T,) in every layer (src is read before anything is written)."""
        for store in (self.k, self.v):
            store.index_copy_(3, dst, store.index_select(3, src))


def stack_projections(module: nn.Module, stacked: str, parts: dict[str, int]):
    """Let `module.<stacked>` (one Linear) hold the projections `parts` (name -> output size) stacked.

    One matrix multiply instead of several (a one-token step is launch-bound), while state dicts
    keep Hugging Face's separate names: loading stacks them, `state_dict()` splits them again in
    their original order."""
    names, sizes = list(parts), list(parts.values())

    def split(mod, state_dict, prefix, local_metadata):
        fused = {kind: state_dict.get(f"{prefix}{stacked}.{kind}") for kind in ("weight", "bias")}
        if fused["weight"] is None:
            return
        pieces = {kind: t.split(sizes) for kind, t in fused.items() if t is not None}
        items = list(state_dict.items())
        state_dict.clear()
        for key, value in items:
            if key == f"{prefix}{stacked}.weight":  # the parts take the stacked weight's place
                for i, name in enumerate(names):
                    for kind, chunks in pieces.items():
                        state_dict[f"{prefix}{name}.{kind}"] = chunks[i].clone()
            elif key != f"{prefix}{stacked}.bias":
                state_dict[key] = value

    def stack(mod, state_dict, prefix, *args):
        for kind in ("weight", "bias"):
            keys = [f"{prefix}{name}.{kind}" for name in names]
            if all(k in state_dict for k in keys):
                state_dict[f"{prefix}{stacked}.{kind}"] = torch.cat([state_dict.pop(k) for k in keys])

    module.register_state_dict_post_hook(split)
    module.register_load_state_dict_pre_hook(stack)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Grouped attention as plain matmuls: q (B, H, T, hd) over k, v (B, Hkv, S, hd) -> (B, H, T, hd).

    mask: (T, S) bool, True where a query may see a key (None: all), or (B, T, S) with a mask per
    sequence (batches of left-padded prompts, distill.py). For a few queries over a static cache
    this beats fused SDPA kernels, and every op is row-wise (see graphs.py)."""
    B, H, T, hd = q.shape
    g = H // k.shape[1]
    q = q.reshape(B, k.shape[1], g * T, hd)  # query heads grouped under their KV head: (B, Hkv, g*T, hd)
    scores = (q @ k.transpose(-1, -2)).float() * hd**-0.5  # (B, Hkv, g*T, S), softmax in fp32
    if mask is not None:  # row r of a KV head's g*T rows is query r % T
        mask = mask.repeat(g, 1) if mask.dim() == 2 else mask.repeat(1, g, 1)[:, None]
        scores = scores.masked_fill(~mask, float("-inf"))
    return (scores.softmax(-1).to(v.dtype) @ v).view(B, H, T, hd)


class Attention(nn.Module):
    """Multi-head attention with grouped KV heads, RoPE and an optional static KV cache.

    q, k and v come out of one stacked projection `qkv_proj` (state dicts use q_proj, k_proj, v_proj)."""

    def __init__(self, dim: int, n_heads: int, n_kv_heads: int, head_dim: int, bias: bool = False):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        q_size, kv_size = n_heads * head_dim, n_kv_heads * head_dim
        self.qkv_proj = nn.Linear(dim, q_size + 2 * kv_size, bias=bias)
        self.o_proj = nn.Linear(q_size, dim, bias=False)
        stack_projections(self, "qkv_proj", {"q_proj": q_size, "k_proj": kv_size, "v_proj": kv_size})
        self.kv_cache: KVCache | None = None

    def project(self, x: torch.Tensor, rope) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: (B, T, D) -> q (B, H, T, hd), k, v (B, Hkv, T, hd), RoPE applied to q and k."""
        B, T, _ = x.shape
        H, Hkv = self.n_heads, self.n_kv_heads
        qkv = self.qkv_proj(x).view(B, T, H + 2 * Hkv, self.head_dim).transpose(1, 2)  # (B, H+2Hkv, T, hd)
        qk = apply_rope(qkv[:, : H + Hkv], *rope)
        return qk[:, :H], qk[:, H:], qkv[:, H + Hkv :]

    def write_kv(self, x: torch.Tensor, rope, positions: torch.Tensor):
        """Only fill the cache for x at `positions` (no attention output)."""
        _, k, v = self.project(x, rope)
        self.kv_cache.update(positions, k, v, 0)

    def forward(self, x: torch.Tensor, rope, positions, mask, kv_len: int | None) -> torch.Tensor:
        B, T, _ = x.shape  # x: (B, T, D)
        q, k, v = self.project(x, rope)
        if kv_len is None:  # no cache: plain causal attention within x (training, feature extraction)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1, enable_gqa=True)
        else:  # attend over the cache up to kv_len; mask hides the future and stale entries
            k, v = self.kv_cache.update(positions, k, v, kv_len)  # (B, Hkv, kv_len, hd)
            y = attend(q, k, v, mask)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))  # (B, T, D)


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x)), gate and up stacked in one projection `gate_up_proj`."""

    def __init__(self, dim: int, ffn_dim: int):
        super().__init__()
        self.ffn_dim = ffn_dim
        self.gate_up_proj = nn.Linear(dim, 2 * ffn_dim, bias=False)
        self.down_proj = nn.Linear(ffn_dim, dim, bias=False)
        stack_projections(self, "gate_up_proj", {"gate_proj": ffn_dim, "up_proj": ffn_dim})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).split(self.ffn_dim, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(c.dim, c.norm_eps)
        self.self_attn = Attention(c.dim, c.n_heads, c.n_kv_heads, c.head_dim, c.attention_bias)
        self.post_attention_layernorm = RMSNorm(c.dim, c.norm_eps)
        self.mlp = MLP(c.dim, c.ffn_dim)

    def forward(self, x, rope, positions, mask, kv_len):
        x = x + self.self_attn(self.input_layernorm(x), rope, positions, mask, kv_len)
        return x + self.mlp(self.post_attention_layernorm(x))


def attention_mask(positions: torch.Tensor, kv_len: int) -> torch.Tensor | None:
    """(T, kv_len) bool: query at absolute position p sees keys at positions <= p.

    None when every query may see every key (one query at the end of the cache)."""
    if positions.numel() == 1:
        return None
    keys = torch.arange(kv_len, device=positions.device)
    return keys[None, :] <= positions[:, None]


def cache_window(all_positions: torch.Tensor, rotary: "Rotary", cache_len: int, start, length: int):
    """Slots (T,), RoPE tables, mask and attended length for `length` tokens written to a cache.

    `start` is an int (eager: attend over the filled part of the cache only), a (T,) tensor of
    positions on the device (static shapes, no host sync: attend over the whole cache with a mask;
    this is what CUDA graphs capture), or a window built already (`tree_window`), used as it is.
    For a sequence, a token's slot is its position; in a tree round they differ."""
    if isinstance(start, tuple):
        return start
    if isinstance(start, torch.Tensor):
        positions = start
        return positions, rotary(positions), all_positions[None, :] <= positions[:, None], cache_len
    end = start + length
    if end > cache_len:
        raise ValueError(f"position {end - 1} is beyond the KV cache ({cache_len}); call setup_cache(max_len)")
    positions = all_positions[start:end]
    return positions, rotary(positions), attention_mask(positions, end), end


def tree_window(
    all_slots: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    base: torch.Tensor,
    nodes: torch.Tensor,
    depths: torch.Tensor,
    ancestors: torch.Tensor,
):
    """The window of tree nodes `nodes` (R,) in a round whose P nodes occupy slots [base, base + P).

    Node i is written at slot base + i and rotated as position base + depths[r] (its depth below the
    round's root; cos, sin: the RoPE tables); it sees the committed cache (slots < base) and its own
    ancestors, itself included (ancestors: (R, P) bool, row r for node nodes[r]). Static shapes:
    base is a (1,) tensor."""
    P = ancestors.shape[1]
    rel = all_slots - base  # (S,): slot relative to the root's slot
    in_tree = (rel >= 0) & (rel < P)
    mask = (rel < 0)[None, :] | (ancestors[:, rel.clamp(0, P - 1)] & in_tree[None, :])  # (R, S)
    positions = base + depths
    return base + nodes, (cos[positions], sin[positions]), mask, all_slots.shape[0]


class Transformer(nn.Module):
    """The target model. `shallow` + `deep` at any exit layer equals one full forward pass."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.lm_head = nn.Linear(config.dim, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self.rotary = Rotary(config)
        self.cache_len = 0
        self.kv: KVStore | None = None
        self.cache_version = 0
        self.register_buffer("positions", torch.empty(0, dtype=torch.long), persistent=False)
        self.call = None  # how layers are called: None = directly; graphs.py swaps in compiled calls

    # ----------------------------------------------------------------------------- cache
    def setup_cache(self, max_len: int, batch: int = 1, scratch: int = 0):
        """Allocate the static KV cache for `max_len` positions (at most the model's context) plus
        `scratch` slots for a speculative round's tree past them (drafts there are verified, never
        kept); kept when it is already large enough."""
        if max_len > self.config.max_seq_len:
            raise ValueError(
                f"{max_len} positions exceed the model's context of {self.config.max_seq_len}; "
                "use a shorter prompt or fewer new tokens"
            )
        max_len += scratch
        if max_len <= self.cache_len and self.layers[0].self_attn.kv_cache.k.shape[0] == batch:
            return
        p = self.embed_tokens.weight
        c = self.config
        self.kv = KVStore(c.n_layers, batch, c.n_kv_heads, max_len, c.head_dim, p.dtype, p.device)
        self.cache_version += 1  # captured graphs over the old cache are stale (graphs.py)
        for layer, cache in zip(self.layers, self.kv.caches):
            layer.self_attn.kv_cache = cache
        self.rotary.build(max_len, p.dtype, p.device)
        self.positions = torch.arange(max_len, device=p.device)
        self.cache_len = max_len

    def compact(self, src: torch.Tensor, dst: torch.Tensor):
        """Copy cache slots `src` (T,) to `dst` (T,) in every layer (`KVStore.compact`): after a tree
        round, the accepted path's entries move to consecutive slots (`tree.compaction`)."""
        self.kv.compact(src, dst)

    def _window(self, start, length: int):
        return cache_window(self.positions, self.rotary, self.cache_len, start, length)

    def tree_window(self, base: torch.Tensor, nodes: torch.Tensor, depths: torch.Tensor, ancestors: torch.Tensor):
        """`engine.tree_window` over this cache: pass it as `start` to shallow / deep (and to the adapter)."""
        return tree_window(self.positions, self.rotary.cos, self.rotary.sin, base, nodes, depths, ancestors)

    # ----------------------------------------------------------------------------- entry points
    def shallow(self, tokens: torch.Tensor, start, exit_layer: int) -> torch.Tensor:
        """tokens (B, T) at positions [start, start+T) -> hidden states after layer `exit_layer`, (B, T, D).

        Writes the KV cache of layers [0, exit_layer). `start` may also be a (T,) position tensor:
        static shapes for CUDA graphs (see `cache_window`)."""
        positions, rope, mask, kv_len = self._window(start, tokens.shape[1])
        h = self.embed_tokens(tokens)  # (B, T, D)
        return self._run(self.layers[:exit_layer], h, rope, positions, mask, kv_len)

    def deep(self, h: torch.Tensor, start, exit_layer: int) -> torch.Tensor:
        """Hidden states after layer `exit_layer`, (B, T, D) -> logits (B, T, V).

        Writes the KV cache of layers [exit_layer, n_layers)."""
        positions, rope, mask, kv_len = self._window(start, h.shape[1])
        return self.head(self._run(self.layers[exit_layer:], h, rope, positions, mask, kv_len))

    def _run(self, layers, h, *window) -> torch.Tensor:
        for layer in layers:
            h = layer(h, *window) if self.call is None else self.call(layer, h, *window)
        return h

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Final norm and LM head: (B, T, D) -> (B, T, V)."""
        return self.lm_head(self.norm(h))

    def forward(self, tokens: torch.Tensor, start=0) -> torch.Tensor:
        """A full cached step: shallow + deep, (B, T) -> logits (B, T, V)."""
        return self.deep(self.shallow(tokens, start, 0), start, 0)

    def hidden_states(self, tokens: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        """Without touching the cache: [embeddings, after layer 1, ..., after layer `upto`], each (B, T, D)."""
        T = tokens.shape[1]
        positions = torch.arange(T, device=tokens.device)
        if self.rotary.cos.shape[0] < T:
            w = self.embed_tokens.weight
            self.rotary.build(max(T, self.cache_len), w.dtype, w.device)
        rope = self.rotary(positions)
        states = [self.embed_tokens(tokens)]
        for layer in self.layers[: self.config.n_layers if upto is None else upto]:
            states.append(layer(states[-1], rope, positions, None, None))
        return states


def random_state_dict(config: ModelConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random weights in Hugging Face naming, scaled so that logits are neither flat nor one-hot.

    Embeddings ~ N(0, 1); linear weights ~ N(0, 1/fan_in); norms 1; biases small. Logits then have a
    standard deviation of about 2, which gives tests a peaked but non-degenerate distribution."""
    g = torch.Generator().manual_seed(seed)
    model = Transformer(config)
    sd = {}
    for name, p in model.state_dict().items():
        if name == "lm_head.weight" and config.tie_embeddings:
            continue
        if name.endswith("layernorm.weight") or name == "norm.weight":
            t = torch.ones(p.shape)
        elif name.endswith(".bias"):
            t = 0.02 * torch.randn(p.shape, generator=g)
        elif name == "embed_tokens.weight":
            t = torch.randn(p.shape, generator=g)
        else:
            t = torch.randn(p.shape, generator=g) * (2.0 if name == "lm_head.weight" else 1.0) / math.sqrt(p.shape[1])
        sd[name] = t
    return sd


def with_prefix(sd: dict, prefix: str = "model.") -> dict:
    """Engine names -> Hugging Face names (`model.` before everything but `lm_head`)."""
    return {(k if k.startswith("lm_head") else prefix + k): v for k, v in sd.items()}


def strip_prefix(sd: dict, prefix: str = "model.") -> dict:
    """Hugging Face names -> engine names; rotary buffers and other extras are dropped."""
    out = {}
    for k, v in sd.items():
        k = k[len(prefix) :] if k.startswith(prefix) else k
        if "rotary_emb" not in k:
            out[k] = v
    return out


def build_engine(config: ModelConfig, state_dict: dict, device=None, dtype=None) -> Transformer:
    """Instantiate the engine on `device` in `dtype` and load a (Hugging Face or engine) state dict."""
    with torch.device("meta"):
        model = Transformer(config)
    sd = strip_prefix(state_dict)
    if config.tie_embeddings:
        sd.pop("lm_head.weight", None)
    missing = set(k for k in model.state_dict() if not (config.tie_embeddings and k == "lm_head.weight")) - set(sd)
    unexpected = set(sd) - set(model.state_dict())
    if missing or unexpected:
        raise ValueError(
            f"state dict does not fit the {config.model_type} config: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    model.load_state_dict(sd, strict=False, assign=True)
    if config.tie_embeddings:
        model.lm_head.weight = model.embed_tokens.weight
    model.positions = torch.empty(0, dtype=torch.long)
    model.rotary.cos = model.rotary.sin = torch.empty(0)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)
