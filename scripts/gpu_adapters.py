"""The GPU work of the real-prompt adapter issue: self-distil the real mix on our engine, train
every adapter, benchmark the new default against the old one. Stages, each run from the repo root:

    python scripts/gpu_adapters.py smoke                  # tiny-random on CUDA: decoder == AR, unrolled training runs
    python scripts/gpu_adapters.py distill --prompts P --shard 0/2   # one process per GPU; resumable
    python scripts/gpu_adapters.py distill --tag s1 --temperature 0.7 --top-p 0.95 --seed 1 ...  # a sampled pass
    python scripts/gpu_adapters.py speed --prompts P      # ours vs transformers' generate, same prompts, same GPU
    python scripts/gpu_adapters.py train --runs TAG=CORPUS:LAYER:VARIANT:STEPS:UNROLL:TOKENS ...
    python scripts/gpu_adapters.py fleet --gpus 2 --per-gpu 3 --runs ...   # those runs, several per GPU
    python scripts/gpu_adapters.py bench --adapters DIR   # mini-bench: old vs new l=2 adapter, chain and hybrid

Everything lands under --work (default /tmp/kl, kept while the machine stays warm); what should
come back is copied under --out. CORPUS is `real` (the greedy answers to the real mix: its shards,
or `real.npz` brought from an earlier session), `mix` (`real` plus every sampled pass, `s*.N.jsonl`:
each prompt answered greedily and again by sampling, all under the prompt's own id, so a prompt's
answers land on one side of the held-out split) or `templates`; TOKENS caps the corpus's response
tokens (`all`, or e.g. 1M) by a seeded random subset of its conversations. A stage stops starting new work once --deadline-s seconds have passed, so a
10-minute device call ends cleanly and the next call resumes.
"""

import argparse
import json
import os
import random
import shutil
import sys
import tarfile
import time
from pathlib import Path

T0 = time.perf_counter()


def log(*a):
    print(time.strftime("%H:%M:%S"), f"[{time.perf_counter() - T0:6.0f}s]", *a, flush=True)


def left(args) -> float:
    return args.deadline_s - (time.perf_counter() - T0)


# ----------------------------------------------------------------------------------- stages
def smoke(args):
    import torch

    from kangaroo_lab import generate, load_model
    from kangaroo_lab.distill import BatchDecoder, self_distill
    from kangaroo_lab.templates import training_prompts
    from kangaroo_lab.training import TrainConfig, train_adapter

    m = load_model("tiny-random", device=args.device, dtype=torch.float32)
    rng = random.Random(0)
    prompts = [[rng.randrange(10, m.config.vocab_size) for _ in range(rng.randint(3, 60))] for _ in range(6)]
    dec = BatchDecoder(m, 8, 32, 64)
    got = dec.answer(prompts)
    same = [generate(m, p, method="ar", max_new_tokens=32).token_ids == g for p, g in zip(prompts, got)]
    log("decoder == ar:", same)
    work = Path(args.work) / "smoke"
    shutil.rmtree(work, ignore_errors=True)
    corpus = self_distill(m, training_prompts(60), work / "c.jsonl", max_new_tokens=32, batch_size=32, progress=False)
    train_adapter(
        m,
        corpus,
        work / "a",
        TrainConfig(
            steps=20,
            batch_size=8,
            eval_every=10,
            unroll=4,
            warmup=2,
            eval_sequences=16,
            final_eval_sequences=16,
            accept_prompts=2,
            accept_tokens=8,
        ),
        progress=False,
    )
    log("smoke ok", json.loads((work / "a" / "report.json").read_text())["heldout_final"])


def read_prompts(path, work):
    """The prompt mix, decompressed once into `work` when it came as .xz."""
    from kangaroo_lab.questions import load_questions

    if str(path).endswith(".xz"):
        import lzma

        plain = Path(work) / Path(path).name[:-3]
        if not plain.exists():
            plain.write_bytes(lzma.decompress(Path(path).read_bytes()))
        path = plain
    return load_questions(path)


def distill(args, model):
    from kangaroo_lab.distill import self_distill

    questions = read_prompts(args.prompts, args.work)
    i, n = map(int, args.shard.split("/"))
    mine = questions[i::n]
    path = Path(args.work) / f"{args.tag}.{i}.jsonl"
    log(f"shard {i}/{n}: {len(mine)} questions -> {path}")
    chunk = 4096
    for start in range(0, len(mine), chunk):
        if left(args) < 60:
            log("deadline: stopping before", start)
            break
        self_distill(
            model,
            mine[start : start + chunk],
            path,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
            max_prompt_tokens=args.max_prompt_tokens,
            temperature=args.temperature,
            top_p=args.top_p,
            seed=args.seed,
            progress=False,
        )
        log(f"shard {i}: {min(start + chunk, len(mine))}/{len(mine)} questions", stats_line(path))


def stats_line(path: Path) -> str:
    lines = path.with_name(path.name + ".stats.jsonl").read_text().splitlines()
    return lines[-1] if lines else ""


def templates(args, model):
    from kangaroo_lab.distill import self_distill
    from kangaroo_lab.templates import training_prompts

    path = Path(args.work) / "templates.jsonl"
    self_distill(
        model,
        training_prompts(8400, seed=0),
        path,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        progress=False,
    )
    log("templates corpus", stats_line(path))


def speed(args, model):
    """Same prompts, same GPU: our BatchDecoder vs transformers' generate (each at its batch size)."""
    from kangaroo_lab.distill import self_distill

    questions = [q for q in read_prompts(args.prompts, args.work) if len(q.turns) == 1]
    sample = random.Random(1).sample(questions, args.speed_prompts)
    rows = []
    for engine, batch in (("ours", args.batch_size), ("transformers", args.hf_batch_size)):
        path = Path(args.work) / f"speed-{engine}.jsonl"
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".stats.jsonl").unlink(missing_ok=True)
        self_distill(
            model,
            sample,
            path,
            max_new_tokens=args.max_new_tokens,
            batch_size=batch,
            engine=engine,
            max_prompt_tokens=args.max_prompt_tokens,
            progress=False,
        )
        rows.append(json.loads(stats_line(path)))
        log(engine, rows[-1])
    from kangaroo_lab.distill import read_corpus_file

    a = {e.example_id: e.response_ids for e in read_corpus_file(Path(args.work) / "speed-ours.jsonl")[1]}
    b = {e.example_id: e.response_ids for e in read_corpus_file(Path(args.work) / "speed-transformers.jsonl")[1]}
    same = sum(a[k] == b.get(k) for k in a)
    result = {
        "prompts": len(sample),
        "rows": rows,
        "identical_answers": same,
        "speedup": rows[0]["tokens_per_second"] / rows[1]["tokens_per_second"],
        **environment(model),
    }
    Path(args.out, "distill_speed.json").write_text(json.dumps(result, indent=1))
    log("speed", result)


def environment(model):
    from kangaroo_lab import bench

    return bench.environment(model)


def merged_corpus(args, name: str) -> Path:
    """`real`: the greedy shards' JSONL files as one corpus (header once), or the carried `real.npz`;
    `mix`: `real` and every sampled pass in one archive; `templates`: as it is."""
    from kangaroo_lab.distill import merge_corpora, read_corpus_file

    work = Path(args.work)
    if name == "templates":
        return work / "templates.jsonl"
    if name == "mix":
        out = work / "mix.npz"
        if not out.exists():
            merge_corpora([merged_corpus(args, "real"), *sorted(work.glob("s[0-9].[0-9].jsonl"))], out)
            examples = read_corpus_file(out)[1]
            log("mix", len(examples), "answers,", sum(len(e.response_ids) for e in examples), "response tokens")
        return out
    shards = sorted(work.glob("real.[0-9].jsonl"))
    if not shards:
        return work / "real.npz"
    out = work / "real.jsonl"
    if not out.exists() or out.stat().st_mtime < max(s.stat().st_mtime for s in shards):
        with out.open("w", encoding="utf-8") as f:
            for k, shard in enumerate(shards):
                lines = shard.read_text(encoding="utf-8").splitlines()
                f.write("\n".join(lines if k == 0 else lines[1:]) + "\n")
    return out


def capped(args, corpus: Path, tokens: str) -> Path:
    """A seeded random subset of whole conversations holding about `tokens` response tokens."""
    from kangaroo_lab.distill import read_corpus_file

    if tokens == "all":
        return corpus
    cap = float(tokens.rstrip("M")) * 1e6
    out = corpus.with_name(f"{corpus.stem}-{tokens}.jsonl")
    if out.exists():
        return out
    header, examples = read_corpus_file(corpus)
    convs = {}
    for e in examples:
        convs.setdefault(e.example_id.rsplit("#", 1)[0], []).append(e)
    keys = sorted(convs)
    random.Random(0).shuffle(keys)
    total, lines = 0, [json.dumps(header)]
    for k in keys:
        if total >= cap:
            break
        for e in convs[k]:
            total += len(e.response_ids)
            lines.append(
                json.dumps(
                    {
                        "id": e.example_id,
                        "category": e.category,
                        "prompt_ids": list(e.prompt_ids),
                        "response_ids": list(e.response_ids),
                    }
                )
            )
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def prepare(args):
    """Before parallel training: merge the shards, cut the capped subsets, drop a half-written last line."""
    for path in [Path(args.work) / "templates.jsonl", *Path(args.work).glob("*.[0-9].jsonl")]:
        if path.exists():
            text = path.read_text(encoding="utf-8")
            if text and not text.endswith("\n"):
                path.write_text(text[: text.rfind("\n") + 1], encoding="utf-8")
                log(path.name, "dropped a half-written last line")
    for run in args.runs:
        corpus, *_, tokens = run.split("=")[1].split(":")
        log(run, capped(args, merged_corpus(args, corpus), tokens))


def train(args, model):
    from kangaroo_lab.training import TrainConfig, train_adapter

    for run in args.runs:
        tag, spec = run.split("=")
        corpus, layer, variant, steps, unroll, tokens = spec.split(":")
        out = Path(args.work) / "adapters" / tag
        if (out / "report.json").exists():
            log(tag, "done already")
            continue
        if left(args) < 120:
            log(tag, "deadline: not started")
            continue
        config = TrainConfig(
            exit_layer=int(layer),
            variant=variant,
            steps=int(steps),
            batch_size=args.batch_size,
            lr=args.lr,
            unroll=int(unroll),
            accept_prompts=12,
            accept_tokens=64,
            checkpoint_every=args.checkpoint_every,
            eval_every=250,
        )
        log(tag, "start", config)
        train_adapter(model, capped(args, merged_corpus(args, corpus), tokens), out, config, progress=False)
        r = json.loads((out / "report.json").read_text())
        log(
            tag,
            json.dumps(
                {
                    k: r[k]
                    for k in (
                        "heldout",
                        "heldout_final",
                        "accept_by_position",
                        "mean_accepted_eta0",
                        "minutes",
                        "tokens_seen",
                        "train_response_tokens",
                    )
                }
            ),
        )


def fleet(args):
    """The runs of --runs as separate `train` processes, --per-gpu at a time on each of --gpus GPUs
    (a small model leaves a GPU mostly idle between one process's kernels), started in the order
    given. At the deadline the processes still running are stopped; the next call resumes them from
    their checkpoints. Logs: <work>/logs/TAG.log."""
    import signal
    import subprocess

    logs = Path(args.work) / "logs"
    logs.mkdir(exist_ok=True)
    queue = [r for r in args.runs if not (Path(args.work) / "adapters" / r.split("=")[0] / "report.json").exists()]
    slots = {(g, k): None for k in range(args.per_gpu) for g in range(args.gpus)}
    started = {}
    while queue or any(slots.values()):
        for slot, proc in slots.items():
            if proc is not None and proc.poll() is not None:
                log(started[proc.pid], "exited", proc.returncode, "on GPU", slot[0])
                slots[slot] = None
            if slots[slot] is None and queue and left(args) > 150:
                run = queue.pop(0)
                cmd = [sys.executable, __file__, "train", "--runs", run, "--work", args.work, "--out", args.out]
                cmd += ["--model", args.model, "--checkpoint-every", str(args.checkpoint_every), "--lr", str(args.lr)]
                cmd += ["--deadline-s", "100000", "--device", args.device]
                env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(slot[0])}
                with open(logs / f"{run.split('=')[0]}.log", "a") as f:
                    slots[slot] = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
                started[slots[slot].pid] = run.split("=")[0]
                log("started", run, "on GPU", slot[0])
        if left(args) < 20:
            for proc in filter(None, slots.values()):
                proc.send_signal(signal.SIGTERM)
                log(started[proc.pid], "stopped at the deadline (resumes from its checkpoint)")
            for proc in filter(None, slots.values()):
                proc.wait()
            break
        if not queue and not any(slots.values()):
            break
        time.sleep(5)
    for run in args.runs:
        tag = run.split("=")[0]
        progress = sorted((Path(args.work) / "adapters" / tag).glob("*"))
        log(
            tag,
            [p.name for p in progress],
            (logs / f"{tag}.log").read_text()[-600:] if (logs / f"{tag}.log").exists() else "",
        )


def pack(args):
    """Adapters, reports, curves, distill stats, logs and the corpus archive under --out, in parts of
    15 MB (a returned file must stay under 16 MiB); join them with `cat`."""
    work, out = Path(args.work), Path(args.out)
    adapters = work / "adapters"
    if adapters.exists():
        with tarfile.open(work / "adapters.tar", "w") as tar:
            for d in sorted(adapters.iterdir()):
                for f in d.iterdir():
                    if f.name != "checkpoint.pt":
                        tar.add(f, arcname=f"{d.name}/{f.name}")
        os.system(f"split -b 15M {work / 'adapters.tar'} {out}/adapters.tar.part")
    with tarfile.open(out / "stats.tar", "w") as tar:
        for f in [*work.glob("*.stats.jsonl"), *work.glob("logs/*.log")]:
            tar.add(f, arcname=f.name)
    if args.corpus_archive:
        npz = merged_corpus(args, "mix")
        os.system(f"split -b 15M {npz} {out}/{npz.name}.part")


def bench_stage(args, model):
    """Mini-bench, greedy, 256 new tokens: the old l=2 adapter (chain) and the new one (chain, tree,
    hybrid), each run interleaved with its own `ar`. The new adapter replaces the shipped one in this
    machine's copy of the package first."""
    from kangaroo_lab import bench
    from kangaroo_lab.adapter import shipped_adapter_dir

    target = shipped_adapter_dir(model.name, 2, "attention")
    arms = (("old", ["ar", "kangaroo"]), ("new", ["ar", "kangaroo", "kangaroo+lookup"]))
    for label, methods in arms[1:] if args.new_only else arms:
        if label == "new":
            shutil.rmtree(target)
            shutil.copytree(Path(args.adapters), target)
        out = Path(args.work) / f"bench-{label}"
        bench.benchmark(model, methods=methods, out=out, progress=False)
        shutil.copy(out / "summary.csv", Path(args.out) / f"bench-{label}-summary.csv")
        log(label, (out / "summary.csv").read_text())


# ----------------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "stage", choices=["smoke", "distill", "templates", "speed", "prepare", "train", "fleet", "pack", "bench"]
    )
    ap.add_argument("--model", default="/tmp/kl/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--work", default="/tmp/kl")
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/kl/out"))
    ap.add_argument("--prompts", default="/tmp/kl/prompts.jsonl.xz")
    ap.add_argument("--shard", default="0/1")
    ap.add_argument("--tag", default="real", help="distill: the shards' file stem (real = greedy; s1, s2: sampled)")
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gpus", type=int, default=1)
    ap.add_argument("--per-gpu", type=int, default=1)
    ap.add_argument("--checkpoint-every", type=int, default=250)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--hf-batch-size", type=int, default=64)
    ap.add_argument("--speed-prompts", type=int, default=512)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--max-prompt-tokens", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--runs", nargs="*", default=[])
    ap.add_argument("--adapters", default=None)
    ap.add_argument("--corpus-archive", action="store_true")
    ap.add_argument("--new-only", action="store_true", help="bench: skip the shipped adapter's run")
    ap.add_argument("--deadline-s", type=float, default=540)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    Path(args.work).mkdir(parents=True, exist_ok=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.stage == "smoke":
        return smoke(args)
    if args.stage == "pack":
        return pack(args)
    if args.stage == "prepare":
        return prepare(args)
    if args.stage == "fleet":
        return fleet(args)
    from kangaroo_lab import load_model

    model = load_model(args.model, device=args.device)
    log("model", model.name, model.dtype)
    if args.stage in ("distill", "templates", "speed"):
        args.batch_size = args.batch_size or 384
    else:
        args.batch_size = args.batch_size or 48
    {"distill": distill, "templates": templates, "speed": speed, "train": train, "bench": bench_stage}[args.stage](
        args, model
    )


if __name__ == "__main__":
    sys.exit(main())
