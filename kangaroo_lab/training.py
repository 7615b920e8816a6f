"""Training the adapter by self-distillation, as in Kangaroo.

For every position t of a self-distilled answer, the frozen target model gives

* the shallow hidden state h_l[t] after the exit layer (the adapter's input), and
* its own next-token distribution p[t] = softmax(head(h_L[t])) (the adapter's target).

The adapter maps h_l to q[t] = softmax(lm_head(adapter(h_l))[t]) through the target's frozen
LM head, and is trained with the soft cross-entropy  -sum_v p[t](v) log q[t](v)  on response
positions only. Reported along the way, on held-out answers:

* top-1 agreement: argmax q == argmax p, the chance a greedy draft is accepted after a correct prefix;
* expected acceptance  E[sum_v min(p, q)]: the chance under speculative sampling;
* acceptance by draft position 1..6 when actually drafting with `generate` (threshold 0).

Multi-step training (`TrainConfig.unroll = k`, "training-time test" in EAGLE-3 and HASS). At
inference the adapter drafts k tokens in a row, each from its own previous draft. In EAGLE the
draft head's next input is its own *predicted feature*, so it must be trained on its own outputs.
Kangaroo's draft input is different: the shallow layers are the target's own, so the adapter's
input at draft step j is the target's exact shallow state of the drafted token, and the adapter's
KV for earlier draft steps comes from the same states. On every path that can still be accepted
(all earlier drafts right) these inputs equal the teacher-forced ones, bit for bit. Unrolling on
its own outputs therefore changes no input that matters; what it changes is how much each position
counts. Position t is draft number j + 1 of the round that started j tokens earlier, reached only
when the j drafts before it were accepted. With `unroll = k`, each position's loss is weighted by

    w[t] = sum_{j<k} decay^j * a[t-1] * ... * a[t-j],   a[s] = sum_v min(p[s], q[s]) (detached),

the chance, under the current adapter, that a round starting at t - j reaches t, decayed with depth.
`unroll = 1` is plain teacher forcing (the paper's loss).

Runs unchanged on one CPU, one GPU, or data-parallel under `accelerate launch --num_processes N`.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import random
import time
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .adapter import DEFAULT_EXIT_LAYER, Adapter, check_exit_layer, load_adapter, new_adapter, shipped_adapter_dir
from .decoding import generate
from .distill import Example, read_corpus_file, tokenizer_signature
from .models import Model

CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class TrainConfig:
    """Every training default, in one place (the CLI reads them from here)."""

    exit_layer: int = DEFAULT_EXIT_LAYER
    variant: str = "attention"
    steps: int = 4000  # the shipped l=2 adapter: 4000 steps of 48 sequences at lr 3e-3 (the other shipped ones: 2000)
    batch_size: int = 48  # sequences per step (over all processes)
    max_len: int = 768  # prompt + answer tokens per sequence; longer answers are cut
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    heldout: float = 0.05  # share of conversations kept out of training
    eval_every: int = 250
    eval_sequences: int = 128
    final_eval_sequences: int = 1024  # held-out answers scored per category at the end
    accept_prompts: int = 16  # held-out prompts drafted with generate() for acceptance by position
    accept_tokens: int = 96
    checkpoint_every: int = 500
    seed: int = 0
    unroll: int = 1  # draft steps each position is counted for (1 = teacher forcing; module docstring)
    unroll_decay: float = 0.8  # weight of the j-th unrolled step: decay^j

    def __post_init__(self):
        if self.steps < 0 or self.batch_size < 1 or self.max_len < 8:
            raise ValueError("steps must be >= 0, batch_size >= 1 and max_len >= 8")
        if not 0 < self.heldout < 1:
            raise ValueError(f"heldout must lie in (0, 1), got {self.heldout}")
        if self.unroll < 1 or not 0 < self.unroll_decay <= 1:
            raise ValueError(f"unroll must be >= 1 and unroll_decay in (0, 1], got {self.unroll}, {self.unroll_decay}")
        for name in ("eval_every", "checkpoint_every", "eval_sequences", "accept_prompts", "accept_tokens"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(
                    f"{name} must be an integer >= 1 (every how many steps / how many), got {getattr(self, name)!r}"
                )
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0 steps, got {self.warmup}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")


# ----------------------------------------------------------------------------------- data
def load_corpus(path, model: Model) -> list[Example]:
    """Examples of a self-distilled corpus, or of several (a list of paths: e.g. the greedy answers and a
    sampled pass over the same prompts, as for the shipped adapters), checked against the model's tokenizer."""
    paths = list(path) if isinstance(path, (list, tuple)) else [path]
    if not paths:
        raise ValueError("no corpus given: pass a corpus file from `kangaroo-lab distill`")
    examples = []
    for one in paths:
        header, more = read_corpus_file(one)
        if header.get("tokenizer") != tokenizer_signature(model):
            raise ValueError(
                f"{one} was self-distilled with another tokenizer ({header.get('model')!r}, "
                f"{header.get('tokenizer')}) than {model.name!r} ({tokenizer_signature(model)}); "
                "distill a corpus with this model: `kangaroo-lab distill`"
            )
        examples += [e for e in more if e.response_ids]
    if not examples:
        which = f"{paths[0]} holds" if len(paths) == 1 else f"{', '.join(map(str, paths))} hold"
        raise ValueError(f"{which} no answers to train on; run `kangaroo-lab distill` to fill it")
    return examples


def split_corpus(examples: list[Example], heldout: float) -> tuple[list[Example], list[Example]]:
    """Deterministic split by conversation (both turns of a chat land on the same side)."""

    def is_heldout(e: Example) -> bool:
        conversation = e.example_id.rsplit("#", 1)[0]
        return zlib.crc32(conversation.encode()) % 10_000 < heldout * 10_000

    train = [e for e in examples if not is_heldout(e)]
    held = [e for e in examples if is_heldout(e)]
    if not train or not held:
        raise ValueError(f"{len(examples)} examples are too few to keep {heldout:.0%} held out; distill more")
    return train, held


MIN_ANSWER_TOKENS = 8  # an example is trained on when max_len holds its prompt and this much of its answer


def fitting(examples: list[Example], max_len: int) -> list[Example]:
    """The examples whose prompt plus `MIN_ANSWER_TOKENS` answer tokens fit in `max_len`; a ValueError
    saying which max_len would keep them when it fits none."""
    fits = [e for e in examples if len(e.prompt_ids) + MIN_ANSWER_TOKENS <= max_len]
    if examples and not fits:
        need = sorted(len(e.prompt_ids) + MIN_ANSWER_TOKENS for e in examples)
        raise ValueError(
            f"max_len (--max-len) {max_len} is below every example: the shortest prompt is "
            f"{need[0] - MIN_ANSWER_TOKENS} tokens, and a sequence holds its prompt and at least "
            f"{MIN_ANSWER_TOKENS} answer tokens. --max-len {need[len(need) // 2]} keeps half of the "
            f"{len(need)} examples, --max-len {need[-1]} all of them"
        )
    return fits


def make_batch(examples: list[Example], max_len: int, pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded tokens (B, T) and a mask (B, T) of positions whose next token is in the answer.

    Right padding needs no attention mask: attention is causal, so real positions never see pads."""
    seqs = [(list(e.prompt_ids) + list(e.response_ids))[:max_len] for e in examples]
    T = max(len(s) for s in seqs)
    tokens = torch.full((len(seqs), T), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.bool)
    for i, (e, s) in enumerate(zip(examples, seqs)):
        tokens[i, : len(s)] = torch.tensor(s)
        mask[i, len(e.prompt_ids) - 1 : len(s) - 1] = True  # position t predicts token t+1
    return tokens.to(device), mask.to(device)


# ----------------------------------------------------------------------------------- the loss
def distill_step(
    model: Model,
    adapter,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    exit_layer: int,
    unroll: int = 1,
    decay: float = 0.8,
    states: list | None = None,
) -> dict:
    """Soft cross-entropy of the adapter's draft distribution q against the target's p, plus metrics.

    unroll > 1 weights each position by the chance that a round reaches it (module docstring).
    `states`: the target's hidden states of `tokens`, when already computed (scoring several adapters)."""
    engine = model.engine
    with torch.no_grad():
        states = states or engine.hidden_states(tokens)  # [emb, layer 1, ..., layer L], each (B, T, D)
        p = torch.softmax(engine.head(states[-1][mask]).float(), dim=-1)  # (N, V) target, response positions
    z = adapter(states[exit_layer], start=None)  # (B, T, D): whole sequences, causal
    log_q = torch.log_softmax(engine.lm_head(z[mask]).float(), dim=-1)  # (N, V) through the frozen head
    ce = -(p * log_q).sum(-1)  # (N,) soft cross-entropy per position
    with torch.no_grad():
        correct = (log_q.argmax(-1) == p.argmax(-1)).float()  # (N,)
        accept = torch.minimum(p, log_q.exp()).sum(-1)  # (N,) E[sum_v min(p, q)]
        weight = reach_weights(_grid(accept, mask), unroll, decay)[mask] if unroll > 1 else torch.ones_like(ce)
        both = _grid(correct, mask)
        pairs = mask[:, 1:] & mask[:, :-1]  # positions t-1, t both in the answer
    loss = (weight * ce).sum() / weight.sum()
    return {
        "loss": loss,
        "ce": ce.detach().mean(),
        "top1": correct.mean(),
        "expected_accept": accept.mean(),
        "top1_pairs": (both[:, 1:] * both[:, :-1])[pairs].sum(),
        "pairs": int(pairs.sum()),
        "tokens": int(mask.sum()),
        "correct": correct,
    }


def _grid(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N,) values at the True entries of mask (B, T) -> (B, T), zero elsewhere."""
    grid = torch.zeros(mask.shape, dtype=values.dtype, device=values.device)
    grid[mask] = values
    return grid


def reach_weights(accept: torch.Tensor, unroll: int, decay: float) -> torch.Tensor:
    """w[b, t] = sum_{j<unroll} decay^j * prod_{m=1..j} accept[b, t-m]  (accept: (B, T), 0 off the answer).

    The chance that a round starting j tokens before t reaches t, summed over the `unroll` possible
    starts, deeper starts decayed."""
    reach = torch.ones_like(accept)  # prod over the last j positions, j = 0
    weight = reach.clone()
    for j in range(1, unroll):
        reach = torch.nn.functional.pad((reach * accept)[:, :-1], (1, 0))  # shift: the chain now ends at t-1
        weight += decay**j * reach
    return weight


@torch.no_grad()
def evaluate(
    model: Model,
    adapter,
    examples: list[Example],
    exit_layer: int,
    batch_size: int,
    max_len: int,
    by_category: bool = False,
) -> dict:
    """Token-weighted loss (plain soft cross-entropy), top-1 agreement, expected acceptance and
    `top1_pairs` (share of two consecutive answer positions both drafted right: the chance a greedy
    round starting there accepts two drafts) over held-out answers; with by_category, top-1 per category too."""
    return evaluate_many(model, {"": adapter}, examples, batch_size, max_len, by_category)[""]


@torch.no_grad()
def evaluate_many(
    model: Model, adapters: dict, examples: list[Example], batch_size: int, max_len: int, by_category: bool = False
) -> dict:
    """`evaluate` for several adapters (name -> adapter, each at its own exit layer) over the same
    answers: the target's forward pass, the expensive part, runs once per batch for all of them."""
    accs = {
        name: {
            "totals": {"loss": 0.0, "top1": 0.0, "expected_accept": 0.0},
            "n": 0,
            "pairs": 0,
            "pair_hits": 0.0,
            "per_cat": {},
        }
        for name in adapters
    }
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        tokens, mask = make_batch(chunk, max_len, model.tokenizer.pad_token_id, model.device)
        with _autocast(model):
            states = model.engine.hidden_states(tokens)
            for name, a in adapters.items():
                _add(
                    accs[name],
                    distill_step(model, a, tokens, mask, a.exit_layer, states=states),
                    chunk,
                    mask,
                    by_category,
                )
    return {name: _finish(acc, by_category) for name, acc in accs.items()}


def _add(acc: dict, out: dict, chunk: list[Example], mask: torch.Tensor, by_category: bool):
    for k, key in (("loss", "ce"), ("top1", "top1"), ("expected_accept", "expected_accept")):
        acc["totals"][k] += float(out[key]) * out["tokens"]
    acc["n"] += out["tokens"]
    acc["pairs"] += out["pairs"]
    acc["pair_hits"] += float(out["top1_pairs"])
    if by_category:
        for e, hits in zip(chunk, out["correct"].split(mask.sum(1).tolist())):
            hit, count = acc["per_cat"].get(e.category, (0.0, 0))
            acc["per_cat"][e.category] = (hit + float(hits.sum()), count + len(hits))


def _finish(acc: dict, by_category: bool) -> dict:
    result = {k: v / max(acc["n"], 1) for k, v in acc["totals"].items()}
    result["top1_pairs"] = acc["pair_hits"] / max(acc["pairs"], 1)
    if by_category:
        result["top1_by_category"] = {c: h / max(k, 1) for c, (h, k) in sorted(acc["per_cat"].items())}
    return result


def acceptance_by_position(
    model: Model, adapter: Adapter, examples: list[Example], max_new_tokens: int, max_draft: int = 6
) -> dict:
    """Draft for real (generate, threshold 0, so every round drafts `max_draft` tokens) on held-out prompts.

    accept_by_position[i-1] = share of i-th drafts that were accepted, i.e. the chance that the
    first i drafts of a round are all accepted (the paper's acceptance rate by position)."""

    reached, accepted, lengths = [0] * max_draft, [0] * max_draft, []
    for e in examples:
        res = generate(
            model,
            list(e.prompt_ids),
            adapter=adapter,
            threshold=0.0,
            max_draft=max_draft,
            max_new_tokens=max_new_tokens,
        )
        for pos, ok in zip(res.draft_positions, res.draft_accepted):
            reached[pos - 1] += 1
            accepted[pos - 1] += ok
        lengths += res.accept_lengths
    rates = [a / r if r else float("nan") for a, r in zip(accepted, reached)]
    return {"accept_by_position": rates, "mean_accepted_eta0": sum(lengths) / max(1, len(lengths))}


# ----------------------------------------------------------------------------------- the loop
def train_adapter(
    model: Model, corpus, out, config: TrainConfig = TrainConfig(), progress: bool = True, accelerator=None
) -> Adapter:
    """Train an adapter on a self-distilled corpus (a path, or a list of paths read as one); save it,
    its report and its curves to `out`.

    Resumes from `out/checkpoint.pt` when it exists (and was made with the same config)."""
    from accelerate import (
        Accelerator,
        DistributedDataParallelKwargs,
    )  # loads transformers-sized deps: only when training

    mixed = "bf16" if model.dtype == torch.bfloat16 else "no"  # fp32 master weights, bf16 compute
    # RoPE tables and caches are buffers sized by each rank's batch: nothing for DDP to broadcast
    ddp = DistributedDataParallelKwargs(broadcast_buffers=False)
    acc = accelerator or Accelerator(cpu=model.device.type == "cpu", mixed_precision=mixed, kwargs_handlers=[ddp])
    check_exit_layer(config.exit_layer, model.config.n_layers)
    out = Path(out)
    corpora = list(corpus) if isinstance(corpus, (list, tuple)) else [corpus]
    fits = fitting(load_corpus(corpora, model), config.max_len)
    train, held = split_corpus(fits, config.heldout)
    held = random.Random(config.seed).sample(held, len(held))  # the corpus is sorted by length: mix it
    held_eval = held[: config.eval_sequences]
    adapter = (
        new_adapter(model, config.exit_layer, config.variant, seed=config.seed).float().train().requires_grad_(True)
    )
    trainable = config.variant != "none" and config.steps > 0  # "none" is the plain exit: nothing to learn
    optimizer = torch.optim.AdamW(
        adapter.parameters(), lr=config.lr, betas=(0.9, 0.95), weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(config))
    start, history, so_far = _resume(out, config, model, adapter, optimizer, scheduler)
    ddp_adapter, optimizer = acc.prepare(adapter, optimizer)
    history = history or [{"step": 0, **evaluate(model, adapter, held_eval, config.exit_layer, 16, config.max_len)}]
    t0, tokens_seen = time.perf_counter(), so_far.get("tokens_seen", history[-1].get("tokens", 0))

    def minutes() -> float:  # every segment of a resumed run
        return so_far.get("minutes", 0.0) + (time.perf_counter() - t0) / 60

    rng = torch.Generator().manual_seed(config.seed + start)
    per_rank = max(1, config.batch_size // acc.num_processes)
    bar = tqdm(
        range(start, config.steps if trainable else 0),
        desc=f"train l={config.exit_layer} {config.variant}",
        initial=start,
        total=config.steps if trainable else 0,
        disable=not (progress and acc.is_main_process),
    )
    for step in bar:
        idx = torch.randint(len(train), (per_rank * acc.num_processes,), generator=rng)[
            acc.process_index :: acc.num_processes
        ]
        tokens, mask = make_batch([train[i] for i in idx], config.max_len, model.tokenizer.pad_token_id, acc.device)
        try:
            with acc.autocast():
                out_step = distill_step(
                    model, ddp_adapter, tokens, mask, config.exit_layer, config.unroll, config.unroll_decay
                )
            acc.backward(out_step["loss"])
        except torch.OutOfMemoryError as e:
            raise RuntimeError(
                f"a batch of {len(idx)} sequences x {tokens.shape[1]} tokens does not fit in memory; "
                "use a smaller --batch-size (or --max-len)"
            ) from e
        acc.clip_grad_norm_(ddp_adapter.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        tokens_seen += out_step["tokens"] * acc.num_processes
        bar.set_postfix(loss=f"{out_step['loss'].item():.3f}", top1=f"{out_step['top1'].item():.3f}")
        if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
            history.append(
                {
                    "step": step + 1,
                    "lr": scheduler.get_last_lr()[0],
                    "train_loss": out_step["loss"].item(),
                    "tokens": tokens_seen,
                    **evaluate(model, adapter, held_eval, config.exit_layer, 16, config.max_len),
                }
            )
        if acc.is_main_process and ((step + 1) % config.checkpoint_every == 0):
            progress = {"minutes": minutes(), "tokens_seen": tokens_seen}
            _save_checkpoint(out, config, model, adapter, optimizer, scheduler, step + 1, history, progress)
    trained_minutes = minutes()
    # drop accelerate's autocast / fp32-output wrapper: the adapter then runs in the model's dtype
    adapter = acc.unwrap_model(ddp_adapter, keep_fp32_wrapper=False).to(model.dtype).eval().requires_grad_(False)
    if acc.is_main_process:
        report = _report(model, adapter, train, held, config, history, trained_minutes, tokens_seen, acc.num_processes)
        report["corpus"] = {
            "file": ", ".join(Path(c).name for c in corpora),
            "categories": dict(sorted(Counter(e.category for e in fits).items())),
        }
        adapter.save(out, training=report)
        _write_curves(out / "curves.csv", history)
        (out / "report.json").write_text(json.dumps(report, indent=1))
        (out / CHECKPOINT).unlink(missing_ok=True)
    acc.wait_for_everyone()
    return adapter


def _warmup_cosine(config: TrainConfig):
    def factor(step: int) -> float:
        if step < config.warmup:
            return (step + 1) / config.warmup
        progress = (step - config.warmup) / max(1, config.steps - config.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))  # cosine down to 10%

    return factor


def _autocast(model: Model):
    """bf16 compute around fp32 adapter weights when the target runs in bf16."""
    return torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=model.dtype == torch.bfloat16)


def _report(model, adapter, train, held, config, history, minutes, tokens_seen, processes) -> dict:
    import transformers  # heavy (~0.8 s): only for the report's versions

    held_prompts = [e for e in held if e.example_id.endswith("#1")][: config.accept_prompts]
    final = history[-1]
    return {
        "base_model": model.name,
        "exit_layer": config.exit_layer,
        "variant": config.variant,
        "parameters": adapter.num_parameters(),
        "config": asdict(config),
        "train_examples": len(train),
        "heldout_examples": len(held),
        "train_response_tokens": sum(len(e.response_ids) for e in train),
        "tokens_seen": tokens_seen,
        "steps": config.steps if config.variant != "none" else 0,
        "minutes": round(minutes, 2),
        "processes": processes,
        "heldout": {k: final[k] for k in ("loss", "top1", "expected_accept", "top1_pairs") if k in final},
        "heldout_final": evaluate(
            model, adapter, held[: config.final_eval_sequences], config.exit_layer, 16, config.max_len, by_category=True
        ),
        **acceptance_by_position(model, adapter, held_prompts, config.accept_tokens),
        "device": torch.cuda.get_device_name(model.device)
        if model.device.type == "cuda"
        else platform.processor() or "cpu",
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
    }


def _write_curves(path: Path, history: list[dict]):
    keys = sorted({k for h in history for k in h}, key=lambda k: (k != "step", k))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)


# ----------------------------------------------------------------------------------- checkpoints
def _comparable(config: TrainConfig) -> dict:
    return {
        k: v
        for k, v in asdict(config).items()
        if k not in ("steps", "eval_every", "checkpoint_every", "final_eval_sequences")
    }


def _save_checkpoint(out: Path, config, model, adapter, optimizer, scheduler, step, history, progress: dict):
    out.mkdir(parents=True, exist_ok=True)
    state = {
        "config": _comparable(config),
        "model": model.name,
        "step": step,
        "progress": progress,  # minutes and tokens so far, over every segment of a resumed run
        "history": history,
        "adapter": adapter.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
    }
    torch.save(state, out / (CHECKPOINT + ".tmp"))
    (out / (CHECKPOINT + ".tmp")).replace(out / CHECKPOINT)


def _resume(out: Path, config, model, adapter, optimizer, scheduler) -> tuple[int, list, dict]:
    """(step, history, {"minutes", "tokens_seen"} so far) of the checkpoint in `out`, loaded into the
    adapter and optimizer; (0, [], {}) when there is none."""
    path = out / CHECKPOINT
    if not path.is_file():
        return 0, [], {}
    state = torch.load(path, map_location=model.device, weights_only=False)
    if state["config"] != _comparable(config) or state["model"] != model.name:
        changed = {
            k: (state["config"].get(k), v) for k, v in _comparable(config).items() if state["config"].get(k) != v
        }
        raise ValueError(
            f"{path} was made for another run ({state['model']!r}; differs in {changed or 'model'}); "
            "use another output folder, or delete the checkpoint to start over"
        )
    adapter.load_state_dict(state["adapter"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state["step"], state["history"], state.get("progress", {})


# ----------------------------------------------------------------------------------- notebooks
def train_or_load(
    model: Model,
    corpus=None,
    exit_layer: int = DEFAULT_EXIT_LAYER,
    variant: str = "attention",
    retrain: bool = False,
    out=None,
    config: TrainConfig | None = None,
) -> Adapter:
    """The shipped adapter when there is one (a tutorial then runs in minutes); else, or with
    retrain=True, train one on `corpus` into `out`."""
    if not retrain and (shipped_adapter_dir(model.name, exit_layer, variant) / "adapter.json").is_file():
        return load_adapter(model, exit_layer=exit_layer, variant=variant)
    if corpus is None:
        raise ValueError("no shipped adapter for this model and exit layer: pass a self-distilled corpus to train one")
    config = replace(config or TrainConfig(), exit_layer=exit_layer, variant=variant)
    return train_adapter(model, corpus, out or Path("adapters") / f"l{exit_layer}-{variant}", config)
