"""Self-distillation: the target model answers prompts, and its answers become training examples.

Kangaroo's adapter learns to predict what the target model would say, so its training data is the
target's own output: every prompt is answered by the target (greedy by default), and the adapter
is later trained on (prompt, answer) token sequences. A corpus file holds token ids, never text.

Answers are generated in batches on our own engine (`BatchDecoder`):

* the prompts of a batch are **left-padded** to one width W, so every row writes its k-th new token
  to the same cache slot W + k; each row has its own RoPE positions (slot - padding) and its own
  mask (a row never sees its padding);
* the KV cache is static and the decoding step reads and writes fixed buffers, so on a GPU the step
  is captured once per cache width as a CUDA graph (widths are rounded up: a few graphs in all);
* the host looks at the device only every `CHECK_EVERY` steps (to stop once every row has ended).

On a GPU this is several times faster than transformers' `generate` on the same weights
(`self_distill(..., engine="transformers")` keeps that path for the comparison), and greedy
answers equal single-prompt greedy decoding token for token (tested on the CPU in fp32).

File formats:

* JSONL (``.jsonl``, what `self_distill` writes and resumes): a header line naming the model, its
  tokenizer, the generation settings and the sha256 of the questions, then one line per answer
  ``{"id", "category", "prompt_ids", "response_ids"}``;
* NPZ (``.npz``, `save_corpus_npz`): the same header and examples as flat token arrays, about 5x
  smaller: how corpora travel back from a GPU machine.

`read_corpus_file` reads both; `merge_corpora` joins several (greedy and sampled answers) into one NPZ.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .accept import Sampler
from .decoding import check_sampling
from .graphs import GraphOptions, capture, compiled_call
from .questions import Question, jsonl_records, read_text_file

CORPUS_FORMAT = "kangaroo-lab-corpus/1"
CHECK_EVERY = 16  # decoding steps between two host checks for "every row has ended"
WIDTH_BUCKET = 128  # cache widths are rounded up to a multiple of this: few captured shapes
# settings a resumed corpus must share with the file it continues (a key its header lacks, as in a
# corpus from an older version, is not checked)
RESUME_KEYS = ("tokenizer", "max_new_tokens", "temperature", "top_p", "seed", "questions_sha256")


@dataclass(frozen=True)
class Example:
    """One self-distilled training example: a prompt and the target model's answer, as token ids."""

    example_id: str  # "<question id>#<turn>"
    category: str
    prompt_ids: tuple[int, ...]
    response_ids: tuple[int, ...]


def questions_sha256(questions: list[Question]) -> str:
    """The sha256 of the questions (category, id, turns, in order), spelled as bench's resume check spells it."""
    text = json.dumps([[q.category, q.question_id, list(q.turns)] for q in questions], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def tokenizer_signature(model) -> str:
    """Vocabulary size plus a hash of a fixed probe's token ids: equal for the same tokenizer."""
    probe = "Kangaroo Lab tokenizer probe: 12345 + ünïcödé -> \n\t"
    ids = model.tokenizer(probe, add_special_tokens=False).input_ids
    digest = hashlib.sha1(json.dumps(ids).encode()).hexdigest()[:12]
    return f"{model.config.vocab_size}:{digest}"


# ----------------------------------------------------------------------------------- the decoder
class BatchDecoder:
    """Greedy or sampled answers for a batch of prompts on our engine (static cache, CUDA graphs).

    One decoder serves batches of up to `batch_size` prompts of up to `max_prompt_tokens` tokens,
    each answered with up to `max_new_tokens` tokens. The cache is allocated once for the largest
    batch; each batch attends over the first W + max_new_tokens slots only, W rounded up to
    `WIDTH_BUCKET`, so a handful of step shapes are captured in all."""

    def __init__(
        self,
        model,
        batch_size: int,
        max_new_tokens: int,
        max_prompt_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        graphs: bool | None = None,
        compile: bool = False,
    ):

        check_sampling(temperature, top_p)
        if batch_size < 1 or max_new_tokens < 1 or max_prompt_tokens < 1:
            raise ValueError("batch_size, max_new_tokens and max_prompt_tokens must all be >= 1")
        self.model, self.engine = model, model.engine
        self.B, self.max_new = batch_size, max_new_tokens
        self.temperature, self.top_p = temperature, top_p
        # draw from the generator `torch.manual_seed(seed)` seeds in answer(): the draws of the earlier
        # copy of this rule, and the one generator a CUDA graph's capture registers by itself
        self.sampler = Sampler(temperature, top_p, 0, model.device, generator=_global_generator(model.device))
        self.graphs = model.device.type == "cuda" if graphs is None else graphs
        # with hundreds of rows a step is dominated by arithmetic, not launches: compiling (once per
        # cache width) buys little, so it is off by default
        backend = GraphOptions().backend(model.device) if self.graphs and compile else None
        self.call = compiled_call(backend) if backend else None
        context = model.config.max_seq_len
        if max_prompt_tokens + max_new_tokens > context:
            raise ValueError(
                f"{max_prompt_tokens} prompt + {max_new_tokens} new tokens exceed the model's context "
                f"of {context}; use shorter prompts or fewer new tokens"
            )
        self.max_width = min(_bucket(max_prompt_tokens) + max_new_tokens, context)
        self.engine.setup_cache(self.max_width, batch=batch_size)
        self.version = self.engine.cache_version
        dev = model.device
        self.eos = torch.tensor(sorted(model.eos_token_ids), device=dev)
        self.pad_id = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else int(self.eos[0])
        # the step's static buffers
        self.tok = torch.zeros(batch_size, 1, dtype=torch.long, device=dev)
        self.pad = torch.zeros(batch_size, dtype=torch.long, device=dev)  # left padding of each row
        self.slot = torch.zeros(1, dtype=torch.long, device=dev)  # the slot this step writes
        self.t = torch.zeros(1, dtype=torch.long, device=dev)  # index of the token this step emits
        self.done = torch.zeros(batch_size, dtype=torch.bool, device=dev)
        self.out = torch.zeros(batch_size, max_new_tokens, dtype=torch.long, device=dev)
        self.steps: dict[int, object] = {}  # cache width -> captured step

    # -- one batch
    @torch.inference_mode()
    def answer(self, prompts: list[list[int]], seed: int = 0) -> list[list[int]]:
        """Answers to `prompts` (at most batch_size of them), each cut after its first EOS."""
        if not 0 < len(prompts) <= self.B:
            raise ValueError(f"a batch holds 1 to {self.B} prompts, got {len(prompts)}")
        if self.engine.cache_version != self.version:  # someone reallocated the cache: start over
            self.engine.setup_cache(self.max_width, batch=self.B)
            self.version, self.steps = self.engine.cache_version, {}
        rows = list(prompts) + [prompts[-1]] * (self.B - len(prompts))  # fill the batch: fixed shapes
        W = max(len(p) for p in rows)
        width = min(_bucket(W) + self.max_new, self.max_width)
        if W + self.max_new > self.max_width:
            raise ValueError(f"a prompt of {W} tokens is longer than this decoder's max_prompt_tokens")
        step = self._step(width)  # first: capturing runs one warm-up step that writes the buffers
        torch.manual_seed(seed)
        first = self._prefill(rows, W, width)
        self.out.zero_()
        self.out[:, 0] = first
        self.done.copy_(torch.isin(first, self.eos))
        self.tok.copy_(first[:, None])
        self.slot.fill_(W)
        self.t.fill_(1)
        for k in range(1, self.max_new):
            step()
            if k % CHECK_EVERY == 0 and bool(self.done.all()):  # the host looks every CHECK_EVERY steps
                break
        answers = []
        for row in self.out[: len(prompts)].tolist():
            end = next((i + 1 for i, t in enumerate(row) if t in self.model.eos_token_ids), len(row))
            answers.append(row[:end])
        return answers

    def _prefill(self, rows: list[list[int]], W: int, width: int, chunk: int = 256) -> torch.Tensor:
        """Write every prompt's KV (left-padded to W) in chunks of slots; the first new token of each row."""
        dev = self.model.device
        tokens = torch.full((self.B, W), self.pad_id, dtype=torch.long)
        for i, p in enumerate(rows):
            tokens[i, W - len(p) :] = torch.tensor(p)
        tokens = tokens.to(dev)
        self.pad.copy_(torch.tensor([W - len(p) for p in rows]))
        for c0 in range(0, W, chunk):
            slots = self.engine.positions[c0 : min(W, c0 + chunk)]
            h = self.engine.shallow(
                tokens[:, c0 : c0 + len(slots)], self._window(slots, width), self.engine.config.n_layers
            )
        return self._pick(self.engine.head(h[:, -1]).float())

    def _window(self, slots: torch.Tensor, width: int):
        """Slots (T,), per-row RoPE tables, per-row mask (B, T, width) and attended length: the
        `start` argument of engine.shallow for rows with their own padding."""
        positions = (slots[None, :] - self.pad[:, None]).clamp(min=0)  # (B, T)
        cos, sin = self.engine.rotary(positions)  # (B, T, hd)
        keys = self.engine.positions[:width]
        visible = (keys[None, None, :] >= self.pad[:, None, None]) & (keys[None, None, :] <= slots[None, :, None])
        visible |= keys[None, None, :] == slots[None, :, None]  # a pad query sees itself: no empty softmax
        return slots, (cos[:, None], sin[:, None]), visible, width

    def _pick(self, logits: torch.Tensor) -> torch.Tensor:
        """Next token of each row from (B, V) fp32 logits: argmax, or a draw at the temperature (top-p)."""
        return self.sampler.next_token(logits)  # (B,)

    def _step(self, width: int):
        if width not in self.steps:
            self.t.zero_()  # the capture's warm-up step runs for real: keep its writes in bounds
            self.slot.zero_()
            self.steps[width] = capture(self.model, lambda: self._decode(width), self.call)
        return self.steps[width]

    def _decode(self, width: int):
        """One token for every row, over static buffers only (what the CUDA graph records)."""
        h = self.engine.shallow(self.tok, self._window(self.slot, width), self.engine.config.n_layers)
        nxt = self._pick(self.engine.head(h[:, -1]).float())
        nxt = torch.where(self.done, self.eos[0], nxt)  # ended rows repeat EOS (cut off later)
        self.out.index_copy_(1, self.t, nxt[:, None])
        self.done |= torch.isin(nxt, self.eos)
        self.tok.copy_(nxt[:, None])
        self.slot.add_(1)
        self.t.add_(1)


def _bucket(width: int) -> int:
    return -(-width // WIDTH_BUCKET) * WIDTH_BUCKET


def _global_generator(device: torch.device) -> torch.Generator:
    """The generator that `torch.manual_seed` seeds and draws use when given none, on `device`."""
    if device.type == "cuda":
        return torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
    return torch.default_generator


# ----------------------------------------------------------------------------------- corpora
def self_distill(
    model,
    questions: list[Question],
    path: str | Path,
    max_new_tokens: int = 256,
    batch_size: int = 64,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    max_prompt_tokens: int = 1024,
    progress: bool = True,
    engine: str = "ours",
) -> Path:
    """Let the target model answer every turn of every question; write token ids to a JSONL corpus.

    Turn 1 of every question is answered first, then turn 2 with the model's own first answer in
    the conversation, and so on. Prompts of similar length are batched together (less padding).
    engine="ours" decodes with `BatchDecoder`; "transformers" with transformers' `generate` on the
    same weights (the slower reference). Turns whose prompt exceeds `max_prompt_tokens` (or the
    model's context less `max_new_tokens`) are skipped, with the later turns of their conversation:
    counted, reported in one line on stderr and in the stats.

    Re-running with the same path resumes: answers already in the file are kept and not generated
    again; a file made with other settings or other questions is refused. Throughput (answers,
    tokens, seconds, turns skipped) is appended to `<path>.stats.jsonl`, one line per run."""

    check_sampling(temperature, top_p, seed)
    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError(f"batch_size and max_new_tokens must be >= 1, got {batch_size} and {max_new_tokens}")
    if not questions:
        raise ValueError("no questions to answer: pass at least one prompt")
    if engine not in ("ours", "transformers"):
        raise ValueError(f"engine must be 'ours' or 'transformers', got {engine!r}")
    path = Path(path)
    max_prompt_tokens = min(max_prompt_tokens, model.config.max_seq_len - max_new_tokens)
    header = {
        "format": CORPUS_FORMAT,
        "model": model.name,
        "tokenizer": tokenizer_signature(model),
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "top_p": top_p,
        "seed": seed,
        "questions_sha256": questions_sha256(questions),
    }
    done = {e.example_id: e for e in _resume_corpus(path, header)}
    bar = tqdm(
        total=sum(len(q.turns) for q in questions) - len(done),
        desc=f"self-distillation ({engine})",
        unit="answer",
        disable=not progress,
    )
    answerer = _Answerer(model, engine, batch_size, max_new_tokens, temperature, top_p)
    made = {"answers": 0, "response_tokens": 0, "skipped_too_long": 0, "skipped_later_turns": 0}
    t0 = time.perf_counter()
    with path.open("a", encoding="utf-8") as out:
        for turn in range(max(len(q.turns) for q in questions)):
            todo, too_long, later = _turn_prompts(model, questions, turn, done, max_prompt_tokens)
            made["skipped_too_long"] += too_long
            made["skipped_later_turns"] += later
            bar.total -= too_long + later
            for start in range(0, len(todo), batch_size):
                chunk = todo[start : start + batch_size]
                replies = answerer([ids for _, ids in chunk], seed + start + turn * len(todo))
                for (q, ids), reply in zip(chunk, replies):
                    example = Example(f"{q.question_id}#{turn + 1}", q.category, tuple(ids), tuple(reply))
                    done[example.example_id] = example
                    out.write(json.dumps(_record(example)) + "\n")
                    made["response_tokens"] += len(reply)
                out.flush()
                made["answers"] += len(chunk)
                bar.update(len(chunk))
                bar.set_postfix(tok_s=f"{made['response_tokens'] / (time.perf_counter() - t0):.0f}")
    bar.close()
    _report_skipped(path, made, max_prompt_tokens)
    _write_stats(path, model, engine, batch_size, made, time.perf_counter() - t0)
    return path


def _record(e: Example) -> dict:
    return {
        "id": e.example_id,
        "category": e.category,
        "prompt_ids": list(e.prompt_ids),
        "response_ids": list(e.response_ids),
    }


def _report_skipped(path: Path, made: dict, max_prompt_tokens: int):
    """One line on stderr when turns were skipped for their length (nothing otherwise)."""
    if made["skipped_too_long"]:
        print(
            f"{path}: skipped {made['skipped_too_long']} turn(s) whose prompt is over {max_prompt_tokens} tokens "
            f"and {made['skipped_later_turns']} later turn(s) of those conversations; raise max_prompt_tokens "
            "(at most the model's context less max_new_tokens) or shorten those prompts",
            file=sys.stderr,
        )


def _write_stats(path: Path, model, engine: str, batch_size: int, made: dict, seconds: float):
    """Append this run's throughput and skipped turns to `<path>.stats.jsonl`."""
    stats = {
        "engine": engine,
        "device": str(model.device),
        "batch_size": batch_size,
        "answers": made["answers"],
        "response_tokens": made["response_tokens"],
        "seconds": round(seconds, 2),
        "tokens_per_second": round(made["response_tokens"] / seconds, 1) if seconds > 0 else None,
        "skipped_too_long": made["skipped_too_long"],
        "skipped_later_turns": made["skipped_later_turns"],
    }
    with path.with_name(path.name + ".stats.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(stats) + "\n")


def _turn_prompts(model, questions: list[Question], turn: int, done: dict, max_prompt_tokens: int):
    """(question, prompt ids) of turn `turn` still to answer, shortest first (less padding); how many
    prompts are over `max_prompt_tokens`; how many turns follow a turn without an answer (both skipped)."""
    todo, too_long, later = [], 0, 0
    for q in questions:
        if len(q.turns) <= turn or f"{q.question_id}#{turn + 1}" in done:
            continue
        if turn and f"{q.question_id}#{turn}" not in done:  # its previous turn was skipped
            later += 1
            continue
        try:
            ids = model.encode(_conversation(model, q, turn, done))
        except ValueError as e:
            raise ValueError(f"question {q.question_id!r}, turn {turn + 1}: {e}") from None
        if len(ids) <= max_prompt_tokens:
            todo.append((q, ids))
        else:
            too_long += 1
    return sorted(todo, key=lambda item: len(item[1])), too_long, later


class _Answerer:
    """prompts, seed -> answers, on our engine (a `BatchDecoder`, rebuilt when longer prompts come)
    or through transformers' `generate`."""

    def __init__(self, model, engine, batch_size, max_new_tokens, temperature, top_p):
        self.model, self.engine, self.B, self.max_new = model, engine, batch_size, max_new_tokens
        self.sampling = (temperature, top_p)
        self.decoder, self.hf = None, None

    def __call__(self, prompts: list[list[int]], seed: int) -> list[list[int]]:
        if self.engine == "transformers":
            self.hf = self.hf or self.model.to_hf()
            return _answer_batch_hf(self.hf, self.model, prompts, self.max_new, *self.sampling, seed)
        longest, d = max(len(p) for p in prompts), self.decoder
        if d is None or longest + self.max_new > d.max_width or len(prompts) > d.B:  # (re)build to fit
            rows = min(self.B, max(len(prompts), d.B if d else 0))  # no bigger than needed (CPU: every row costs)
            width = max(longest, d.max_width - self.max_new if d else 0)
            self.decoder = BatchDecoder(self.model, rows, self.max_new, width, *self.sampling)
        return self.decoder.answer(prompts, seed)


def _conversation(model, q: Question, turn: int, done: dict) -> list[dict]:
    """Chat messages up to user turn `turn` (0-based), with the model's earlier answers."""
    messages = []
    for t in range(turn + 1):
        messages.append({"role": "user", "content": q.turns[t]})
        if t < turn:
            answer = done[f"{q.question_id}#{t + 1}"].response_ids
            messages.append({"role": "assistant", "content": model.decode(answer)})
    return messages


def _answer_batch_hf(
    hf, model, prompts: list[list[int]], max_new_tokens: int, temperature: float, top_p: float, seed: int
) -> list[list[int]]:
    """transformers' `generate` on a left-padded batch (the reference path); each answer cut after its EOS."""
    pad = model.tokenizer.pad_token_id
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p)
        mask[i, width - len(p) :] = 1
    torch.manual_seed(seed)
    sampling = dict(do_sample=True, temperature=temperature, top_p=top_p) if temperature > 0 else dict(do_sample=False)
    with torch.inference_mode():
        out = hf.generate(
            input_ids=ids.to(model.device),
            attention_mask=mask.to(model.device),
            max_new_tokens=max_new_tokens,
            pad_token_id=pad,
            eos_token_id=sorted(model.eos_token_ids),
            **sampling,
        )
    answers = []
    for row in out[:, width:].tolist():
        end = next((i + 1 for i, t in enumerate(row) if t in model.eos_token_ids), len(row))
        answers.append(row[:end])
    return answers


def _resume_corpus(path: Path, header: dict) -> list[Example]:
    """Examples already in `path` (after checking it was made with the same settings), or a new file."""
    if not path.exists() or path.stat().st_size == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(header) + "\n", encoding="utf-8")
        return []
    data = path.read_bytes()
    if not data.endswith(b"\n"):  # killed while writing an answer: drop the half-written line
        path.write_bytes(data[: data.rfind(b"\n") + 1])
        print(f"{path}: dropped a half-written last line (an interrupted run); resuming", file=sys.stderr)
    old, examples = read_corpus_file(path)
    changed = {k: (old.get(k), header[k]) for k in RESUME_KEYS if k in old and old.get(k) != header[k]}
    if "questions_sha256" in changed:  # answers are found by question id: other questions would be skipped
        raise ValueError(
            f"{path} answers other questions than this run's (another questions file, or other prompts: "
            "their sha256 differ). Resuming would skip every question whose id it already holds: resume "
            "with the same questions, or write to another file (`kangaroo-lab train --data` reads several "
            "corpora as one)"
        )
    if changed:
        was = ", ".join(f"{k}={a!r}" for k, (a, _) in changed.items())
        now = ", ".join(f"{k}={b!r}" for k, (_, b) in changed.items())
        raise ValueError(
            f"{path} was started with {was}; this run asks for {now}. Resuming would mix the two in "
            "one corpus: resume with the same settings, or write to another file"
        )
    return examples


# ----------------------------------------------------------------------------------- files
def read_corpus_file(path: str | Path) -> tuple[dict, list[Example]]:
    """A self-distilled corpus, JSONL or NPZ: (header, examples). Bad lines are reported with their number."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no corpus at {path}: make one with `kangaroo-lab distill` or self_distill()")
    if path.suffix == ".npz":
        return _read_npz(path)
    records = list(jsonl_records(read_text_file(path), str(path)))
    if not records or not isinstance(records[0][2], dict) or records[0][2].get("format") != CORPUS_FORMAT:
        raise ValueError(
            f"{path} is not a Kangaroo Lab corpus (its first line must be a header with "
            f'"format": "{CORPUS_FORMAT}"); make one with `kangaroo-lab distill`'
        )
    examples = []
    for place, _, r in records[1:]:
        try:
            examples.append(Example(r["id"], r["category"], tuple(r["prompt_ids"]), tuple(r["response_ids"])))
        except (KeyError, TypeError) as e:
            raise ValueError(f"{path}, {place}: expected id, category, prompt_ids, response_ids ({e})") from None
    return records[0][2], examples


def merge_corpora(paths: list, out: str | Path) -> Path:
    """Several corpora of one tokenizer as one NPZ archive: e.g. the greedy answers and a sampled pass
    over the same prompts (`self_distill(..., temperature=0.7, seed=1)`), which is how the shipped
    adapters' corpus was made. Answers keep their ids, so all answers to one prompt fall on the same side
    of the training / held-out split. The header is the first corpus's, with every part's header under
    "parts" (and "temperature" set to "mixed" when the parts differ)."""
    if not paths:
        raise ValueError("no corpora to merge: pass at least one corpus file")
    headers, examples = [], []
    for path in paths:
        header, more = read_corpus_file(path)
        if headers and header.get("tokenizer") != headers[0].get("tokenizer"):
            raise ValueError(
                f"{path} was distilled with another tokenizer ({header.get('model')!r}) than {paths[0]} "
                f"({headers[0].get('model')!r}); merge corpora of one model only"
            )
        headers.append({**header, "file": Path(path).name})
        examples += more
    temperatures = {h.get("temperature") for h in headers}
    merged = {**headers[0], "temperature": temperatures.pop() if len(temperatures) == 1 else "mixed"}
    merged.pop("file")
    return save_corpus_npz({**merged, "parts": headers}, examples, out)


def save_corpus_npz(header: dict, examples: list[Example], path: str | Path) -> Path:
    """The corpus as flat token arrays (uint16 when the vocabulary fits): compact, for transport."""

    path = Path(path)
    flat = [t for e in examples for t in (*e.prompt_ids, *e.response_ids)]
    dtype = np.uint16 if max(flat, default=0) < 2**16 else np.uint32
    np.savez_compressed(
        path,
        header=np.array(json.dumps(header)),
        tokens=np.array(flat, dtype=dtype),
        prompt_lens=np.array([len(e.prompt_ids) for e in examples], dtype=np.int32),
        response_lens=np.array([len(e.response_ids) for e in examples], dtype=np.int32),
        ids=np.array([e.example_id for e in examples]),
        categories=np.array([e.category for e in examples]),
    )
    return path


def _read_npz(path: Path) -> tuple[dict, list[Example]]:

    try:
        with np.load(path) as z:
            header = json.loads(str(z["header"]))
            tokens, plens, rlens = z["tokens"].tolist(), z["prompt_lens"].tolist(), z["response_lens"].tolist()
            ids, cats = z["ids"].tolist(), z["categories"].tolist()
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path} is not a readable corpus archive ({e}); save one with save_corpus_npz") from None
    if header.get("format") != CORPUS_FORMAT or sum(plens) + sum(rlens) != len(tokens):
        raise ValueError(f"{path} is not a consistent Kangaroo Lab corpus archive; save it again with save_corpus_npz")
    examples, at = [], 0
    for i, c, p, r in zip(ids, cats, plens, rlens):
        examples.append(Example(i, c, tuple(tokens[at : at + p]), tuple(tokens[at + p : at + p + r])))
        at += p + r
    return header, examples
