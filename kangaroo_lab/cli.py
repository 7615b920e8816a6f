"""`kangaroo-lab`: the command line over the package.

    kangaroo-lab demo                                  # AR vs Kangaroo on bundled prompts, embedded SmolLM2
    kangaroo-lab generate --prompt "Why is the sky blue?"
    kangaroo-lab generate --prompt "Why is the sky blue?" --method ar --json
    kangaroo-lab figures                               # figures/*.png, *.pdf from figures/data/, no GPU
    kangaroo-lab corpus --from DIR --out prompts.jsonl  # public prompt corpora -> a training prompt mix

Each subcommand is a pair: `add_X_parser(subparsers)` declares its options and `run_X(args)` does
the work; `build_parser` calls every `add_X_parser`. Defaults are read from `decoding.DEFAULTS`
and `adapter.DEFAULT_EXIT_LAYER`, never declared here. Library errors (ValueError,
OSError such as FileNotFoundError) become one line, `kangaroo-lab: error: <message>`, and exit code 2.
"""

from __future__ import annotations

import argparse
import codecs
import json
import os
import sys
from dataclasses import asdict, dataclass, fields, replace
from importlib.resources import files

import torch

from . import __version__
from .adapter import (
    DEFAULT_EXIT_LAYER,
    META_FILE,
    Adapter,
    check_exit_layer,
    load_adapter,
    new_adapter,
    shipped_adapter_dir,
)
from .decoding import (
    ADAPTER_METHODS,
    DEFAULT_METHOD,
    DEFAULTS,
    EARLY_EXITS,
    HEADLINE_METHOD,
    METHOD_DEFAULTS,
    METHODS,
    DecodeOptions,
    GenerationResult,
    generate,
    options_for,
)
from .models import DEFAULT_MODEL, Model, load_model

DEMO_PROMPTS = "demo_prompts.json"  # in kangaroo_lab/assets/
DEMO_MAX_NEW_TOKENS = 64  # short answers keep the demo under a minute on a CPU
DEMO_METHODS = ("ar", "kangaroo", HEADLINE_METHOD)  # the baseline, the paper's method, our fastest
WARMUP_TOKENS = 8
NEXT_STEPS = (
    'Next: `kangaroo-lab generate --prompt "..."` to watch drafts being accepted and rejected,\n'
    "      `kangaroo-lab bench --help` to measure every method side by side, README.md for the method."
)


# ------------------------------------------------------------------------------------ entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, OSError) as e:  # the library's errors say what to do: no traceback
        print(f"kangaroo-lab: error: {e}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kangaroo-lab",
        description="Kangaroo (arXiv 2404.18911): lossless self-speculative decoding with double early exiting.",
        epilog="Run `kangaroo-lab COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_demo_parser(subparsers)
    add_generate_parser(subparsers)
    add_corpus_parser(subparsers)
    add_distill_parser(subparsers)
    add_train_parser(subparsers)
    add_bench_parser(subparsers)
    add_figures_parser(subparsers)
    return parser


# ------------------------------------------------------------------------------------ shared options
def _add_model_args(p: argparse.ArgumentParser):
    p.add_argument(
        "--model",
        metavar="NAME",
        default=DEFAULT_MODEL,
        help="'smollm2-135m-instruct' (embedded), 'tiny-random', a .gguf file, a model folder "
        "or a Hugging Face hub id (default: %(default)s)",
    )
    p.add_argument(
        "--device",
        type=_device,
        default=None,
        help="cpu, cuda, cuda:1, mps, ... (default: cuda when available, else cpu)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else")


def _device(text: str) -> str:
    try:
        torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device (e.g. cpu, cuda, cuda:1, mps)") from None
    return text


def _decode_options(args: argparse.Namespace, method: str = DEFAULT_METHOD, **overrides) -> DecodeOptions:
    """`method`'s defaults (`METHOD_DEFAULTS`), updated by whichever decoding options this subcommand has
    and the user gave (None: not given), then `overrides`; validated here, before any load."""
    given = {f.name: getattr(args, f.name) for f in fields(DecodeOptions) if hasattr(args, f.name)}
    return options_for(method, None, **{**given, **overrides})


def _method_default(name: str) -> str:
    """'kangaroo 0.6, kangaroo-tree 0.0, ...': an option's default per method, for --help."""
    values: dict = {}
    for method, o in METHOD_DEFAULTS.items():
        if method != "ar" and name in _USED_BY.get(method, ()):
            values.setdefault(getattr(o, name), []).append(method)
    return "; ".join(f"{', '.join(ms)}: {v}" for v, ms in values.items())


_TREE = ("threshold", "max_draft", "top_k", "node_budget", "early_exit")
_USED_BY = {  # which options each method reads
    "kangaroo": ("threshold", "max_draft", "early_exit"),
    "pld": ("n_max", "lookup_tokens"),
    "kangaroo-tree": _TREE,
    "kangaroo+lookup": _TREE + ("n_max", "lookup_tokens"),
}


def _add_decoding_args(p: argparse.ArgumentParser):
    """The options of the speculative methods; None means the method's own default."""
    p.add_argument(
        "--threshold",
        metavar="ETA",
        type=float,
        default=None,
        help="eta: stop drafting once the draft's confidence is below it (the chain: a draft's top-1 "
        "probability; a tree: a level's best cumulative probability). Default: " + _method_default("threshold"),
    )
    p.add_argument(
        "--max-draft",
        metavar="GAMMA",
        type=int,
        default=None,
        help="gamma: at most this many drafts per round (a tree: its depth). Default: " + _method_default("max_draft"),
    )
    p.add_argument(
        "--top-k",
        metavar="K",
        type=int,
        default=None,
        help="trees: children kept per node. Default: " + _method_default("top_k"),
    )
    p.add_argument(
        "--node-budget",
        metavar="N",
        type=int,
        default=None,
        help="trees: most nodes verified per round, the root included. Default: " + _method_default("node_budget"),
    )
    p.add_argument(
        "--n-max",
        metavar="N",
        type=int,
        default=None,
        help="lookup: the longest n-gram matched. Default: " + _method_default("n_max"),
    )
    p.add_argument(
        "--lookup-tokens",
        metavar="N",
        type=int,
        default=None,
        help="lookup: most tokens proposed after a match. Default: " + _method_default("lookup_tokens"),
    )
    p.add_argument(
        "--early-exit",
        choices=EARLY_EXITS,
        default=None,
        help="where eta stops drafting: host (a read per draft step) or device (a mask; one read per "
        "round). Default: " + _method_default("early_exit"),
    )


def _load_model(args: argparse.Namespace) -> Model:
    if args.device and torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: torch sees no CUDA GPU here; use --device cpu")
    return load_model(args.model, device=args.device)


def _warn(message: str):
    print(f"kangaroo-lab: {message}", file=sys.stderr)


# ------------------------------------------------------------------------------------ adapter choice
@dataclass
class AdapterChoice:
    """The adapter a command runs with, and where it came from: "path", "shipped" or "untrained"."""

    adapter: Adapter
    source: str
    path: str | None = None

    @property
    def label(self) -> str:
        where = {"path": f"from {self.path}", "shipped": "shipped with the package", "untrained": "UNTRAINED"}
        return f"{where[self.source]}, exit layer {self.adapter.exit_layer} ({self.adapter.variant})"

    def describe(self) -> dict:
        return {
            "source": self.source,
            "path": self.path,
            "trained": self.source != "untrained",
            "exit_layer": self.adapter.exit_layer,
            "variant": self.adapter.variant,
        }


def choose_adapter(model: Model, path=None, exit_layer: int | None = None, untrained: bool = False) -> AdapterChoice:
    """--adapter PATH, else the shipped adapter for (model, exit layer), else an untrained one (said on stderr)."""
    if path is not None:
        adapter = load_adapter(model, path)
        if exit_layer is not None and exit_layer != adapter.exit_layer:
            raise ValueError(
                f"--exit-layer {exit_layer} disagrees with the adapter in {path}, which exits at "
                f"layer {adapter.exit_layer}; drop --exit-layer or pass another adapter"
            )
        return AdapterChoice(adapter, "path", str(path))
    exit_layer = DEFAULT_EXIT_LAYER if exit_layer is None else exit_layer
    check_exit_layer(exit_layer, model.config.n_layers)
    shipped = shipped_adapter_dir(model.name, exit_layer)
    if untrained:
        return AdapterChoice(new_adapter(model, exit_layer), "untrained")
    if (shipped / META_FILE).is_file():
        return AdapterChoice(load_adapter(model, exit_layer=exit_layer), "shipped", str(shipped))
    _warn(
        f"no trained adapter is shipped for {model.name!r} at exit layer {exit_layer}, so using an UNTRAINED "
        "adapter: output is still exact, but few drafts are accepted (no speedup). "
        "Pass --adapter PATH to use a trained one."
    )
    return AdapterChoice(new_adapter(model, exit_layer), "untrained")


# ------------------------------------------------------------------------------------ coloured output
ACCEPTED, LOOKUP, REJECTED, RESET = "\x1b[32m", "\x1b[33m", "\x1b[9;31m", "\x1b[0m"  # green; yellow; red struck
# on a terminal, control characters the model emits are shown as symbols (a random model's ESC would garble it)
_CONTROL_PICTURES = {c: 0x2400 + c for c in range(32) if chr(c) not in "\n\t"}


def use_colour(stream) -> bool:
    """ANSI colours only on a terminal, and never with NO_COLOR set (https://no-color.org)."""
    return stream.isatty() and not os.environ.get("NO_COLOR")


def legend() -> str:
    return (
        f"legend: {ACCEPTED}accepted draft{RESET} | {LOOKUP}accepted lookup token{RESET} | "
        f"{REJECTED}rejected draft{RESET} "
        "| plain = token from the target model"
    )


def token_kinds(res: GenerationResult) -> tuple[list[str], dict[int, list[int]]]:
    """Per generated token, "target", "accepted" (an adapter's draft) or "lookup" (a prompt-lookup
    token); and the rejected drafts, keyed by the index of the token they were rejected in favour of.

    The first token comes from the prefill, before any round; the output may stop (EOS,
    max_new_tokens) inside the last round, so only the first len(res.token_ids) tokens count."""
    kinds, rejected = ["target"], {}
    for r in res.trace:
        kinds += ["lookup" if r.sources and r.sources[i] == "lookup" else "accepted" for i in r.accepted_indices]
        if (
            r.parents is None and r.drafts[r.accepted :]
        ):  # a chain's rejected drafts (a tree's other branches: not shown)
            rejected[len(kinds)] = r.drafts[r.accepted :]
        kinds.append("target")  # the target's correction, or its bonus token when all drafts were accepted
    n = len(res.token_ids)
    kinds = kinds[:n] + ["target"] * (n - len(kinds))
    return kinds, {i: d for i, d in rejected.items() if i < n}


def _added_text(decode, prefix: list[int], new: list[int]) -> str:
    """The text `new` adds after `prefix`: decode(prefix + new) minus decode(prefix), so that
    multi-byte characters and leading spaces come out as in the full text."""
    before, after = decode(prefix), decode(prefix + new)
    return after[len(before) :] if after.startswith(before) else decode(new)


def token_pieces(ids: list[int], decode) -> list[str]:
    """The text each token adds; the pieces join to decode(ids) exactly.

    A token that stops inside a multi-byte character adds "" and the token that completes the
    character carries it (decoding shows an unfinished character as U+FFFD)."""
    pieces, done = [], ""
    for i in range(len(ids)):
        text = decode(ids[: i + 1])
        if text.startswith(done) and not text.endswith("\ufffd"):
            pieces.append(text[len(done) :])
            done = text
        else:
            pieces.append("")
    full = decode(ids)
    if full.startswith(done):
        if pieces:
            pieces[-1] += full[len(done) :]
        return pieces
    return [""] * (len(ids) - 1) + [full]  # decoding is not prefix-stable here: give up on per-token pieces


def segments(res: GenerationResult, decode) -> list[tuple[str, str]]:
    """(kind, text) in reading order; kind is "target", "accepted", "lookup" or "rejected" (rejected drafts
    sit where they were rejected, just before the target's correction)."""
    kinds, rejected = token_kinds(res)
    ids = res.token_ids
    out = []
    for i, (kind, piece) in enumerate(zip(kinds, token_pieces(ids, decode))):
        if i in rejected:
            out.append(("rejected", _added_text(decode, ids[:i], rejected[i])))
        out.append((kind, piece))
    return out


def render(res: GenerationResult, decode, colour: bool) -> str:
    """The generated text; with colour, accepted drafts green and rejected drafts red, struck through.
    Without colour it is exactly decode(res.token_ids)."""
    if not colour:
        return "".join(text for kind, text in segments(res, decode) if kind != "rejected")
    parts = []
    for kind, text in segments(res, decode):
        text = text.translate(_CONTROL_PICTURES)
        if kind in ("accepted", "lookup") and text:
            parts.append(f"{ACCEPTED if kind == 'accepted' else LOOKUP}{text}{RESET}")
        elif kind == "rejected" and text:  # its line breaks stay visible but out of the layout
            parts.append(f"{REJECTED}{text.replace(chr(10), '⏎')}{RESET}")
        else:
            parts.append(text)
    return "".join(parts)


def stats_line(res: GenerationResult) -> str:
    line = f"{res.method}: {len(res.token_ids)} tokens in {res.seconds:.2f} s = {res.tokens_per_second:.1f} tokens/s"
    if res.method != "ar":  # one token per round, by definition
        line += f" | mean accepted {res.mean_accepted:.2f} tokens/round | {res.rounds} rounds"
    return f"{line} | stop: {res.stop_reason}"


def print_generation(res: GenerationResult, decode):
    colour = use_colour(sys.stdout)
    if colour and res.trace:
        print(legend())
    print(render(res, decode, colour))
    print()
    print(stats_line(res))


def result_record(res: GenerationResult) -> dict:
    """The fields of a result that --json prints."""
    return {
        "method": res.method,
        "text": res.text,
        "token_ids": res.token_ids,
        "accept_lengths": res.accept_lengths,
        "mean_accepted": res.mean_accepted,
        "nodes_per_round": res.nodes_per_round,
        "syncs_per_round": res.syncs_per_round,
        "tokens_per_second": res.tokens_per_second,
        "seconds": res.seconds,
        "rounds": res.rounds,
        "draft_confidences": [None if c != c else c for c in res.draft_confidences],  # nan: lookup
        "draft_accepted": res.draft_accepted,
        "stop_reason": res.stop_reason,
    }


# ------------------------------------------------------------------------------------ generate
def add_generate_parser(subparsers):
    p = subparsers.add_parser(
        "generate",
        help="generate from one prompt, showing which tokens were drafted",
        description="Generate from one prompt with Kangaroo (default) or plain autoregressive decoding. "
        "On a terminal, accepted drafts are green and rejected drafts red, struck through.",
    )
    p.add_argument(
        "--prompt", metavar="TEXT", required=True, help="the user's message (the model's chat template is applied)"
    )
    _add_model_args(p)
    p.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD, help="(default: %(default)s)")
    p.add_argument(
        "--exit-layer",
        metavar="L",
        type=int,
        default=None,
        help=f"the draft exits after this many layers (default: {DEFAULT_EXIT_LAYER}, or the --adapter's own)",
    )
    _add_decoding_args(p)
    p.add_argument(
        "--max-new-tokens", metavar="N", type=int, default=DEFAULTS.max_new_tokens, help="(default: %(default)s)"
    )
    p.add_argument(
        "--temperature",
        metavar="T",
        type=float,
        default=DEFAULTS.temperature,
        help="0 = greedy; above 0, lossless speculative sampling (default: %(default)s)",
    )
    p.add_argument("--top-p", metavar="P", type=float, default=DEFAULTS.top_p, help="(default: %(default)s)")
    p.add_argument(
        "--seed", metavar="N", type=int, default=DEFAULTS.seed, help="seed for sampling (default: %(default)s)"
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--adapter",
        metavar="PATH",
        help="a trained adapter folder (default: the one shipped for the model, else untrained)",
    )
    which.add_argument("--untrained", action="store_true", help="use a freshly initialised (untrained) adapter")
    p.set_defaults(run=run_generate)


def run_generate(args: argparse.Namespace) -> int:
    opts = _decode_options(args, args.method)
    model = _load_model(args)
    prompt_ids = model.encode(args.prompt)  # chat template applied; an empty prompt fails here, before any warning
    uses_adapter = args.method in ADAPTER_METHODS
    choice = choose_adapter(model, args.adapter, args.exit_layer, args.untrained) if uses_adapter else None
    res = generate(model, prompt_ids, adapter=choice and choice.adapter, method=args.method, options=opts)
    if args.json:
        record = {"model": model.name, "adapter": choice and choice.describe(), "options": asdict(opts)}
        print(json.dumps({**record, **result_record(res)}))
    else:
        print_generation(res, model.decode)
    return 0


# ------------------------------------------------------------------------------------ demo
def add_demo_parser(subparsers):
    p = subparsers.add_parser(
        "demo",
        help="autoregressive vs Kangaroo on a few bundled prompts",
        description="Greedy autoregressive decoding vs Kangaroo on a few bundled prompts: speed, mean "
        "accepted tokens, and a check that both produce identical text.",
    )
    _add_model_args(p)
    p.add_argument(
        "--max-new-tokens", metavar="N", type=int, default=DEMO_MAX_NEW_TOKENS, help="per answer (default: %(default)s)"
    )
    p.set_defaults(run=run_demo)


def demo_prompts() -> list[dict]:
    """The bundled demo prompts: [{"name": ..., "prompt": ...}, ...]."""
    return json.loads((files("kangaroo_lab") / "assets" / DEMO_PROMPTS).read_text())


def environment(model: Model) -> dict:
    device = torch.cuda.get_device_name(model.device) if model.device.type == "cuda" else str(model.device)
    env = {"device": device, "dtype": str(model.dtype).removeprefix("torch."), "torch": torch.__version__}
    return env | ({"threads": torch.get_num_threads()} if model.device.type == "cpu" else {})


def run_demo(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    methods = DEMO_METHODS
    opts = {m: _decode_options(args, m, temperature=0.0) for m in methods}  # greedy: every method must match AR
    model = _load_model(args)
    choice = choose_adapter(model)
    if not args.json:
        env = environment(model)
        threads = f" | {env['threads']} torch threads" if "threads" in env else ""
        print("device: {device} | dtype: {dtype} | torch {torch}".format(**env) + threads)
        print(f"model: {model.name} | adapter: {choice.label} | max new tokens: {args.max_new_tokens}\n")
    prompts = demo_prompts()
    for method in methods:  # so that the first timing is not a cold start
        generate(
            model, prompts[0]["prompt"], choice.adapter, method, replace(opts[method], max_new_tokens=WARMUP_TOKENS)
        )
    runs = []
    for p in tqdm(prompts, desc=" + ".join(methods), unit="prompt", file=sys.stderr, leave=False):
        ar = generate(model, p["prompt"], method="ar", options=opts["ar"])
        runs.append((p, ar, None))
        for method in methods[1:]:
            res = generate(model, p["prompt"], choice.adapter, method, opts[method])
            runs.append((p, res, res.token_ids == ar.token_ids))
    if args.json:
        print(json.dumps(_demo_record(model, choice, opts, runs)))
    else:
        _print_demo(model, choice, runs)
    return 0


def _overall(results: list[GenerationResult]) -> dict:
    tokens = sum(len(r.token_ids) for r in results)
    rounds = sum(r.rounds for r in results)
    return {
        "new_tokens": tokens,
        "tokens_per_second": tokens / sum(r.seconds for r in results),
        "mean_accepted": sum(sum(r.accept_lengths) for r in results) / max(1, rounds),
    }


def _by_method(runs) -> dict[str, list[GenerationResult]]:
    methods = dict.fromkeys(res.method for _, res, _ in runs)
    return {m: [res for _, res, _ in runs if res.method == m] for m in methods}


def _demo_record(model: Model, choice: AdapterChoice, opts: dict[str, DecodeOptions], runs) -> dict:
    overall = {m: _overall(rs) for m, rs in _by_method(runs).items()}
    ar = overall["ar"]["tokens_per_second"]
    return {
        "environment": environment(model),
        "model": model.name,
        "adapter": choice.describe(),
        "options": {m: asdict(o) for m, o in opts.items()},
        "runs": [
            {"name": p["name"], "prompt": p["prompt"], "identical_to_ar": same, **result_record(res)}
            for p, res, same in runs
        ],
        "overall": overall,
        "speedup": {m: o["tokens_per_second"] / ar for m, o in overall.items() if m != "ar"},
    }


def _table_row(name: str, method: str, tokens: int, tps: float, accepted: float, same: str) -> str:
    return f"{name:<20} {method:<16} {tokens:>10} {tps:>9.1f} {accepted:>14.2f}  {same}"


def _print_demo(model: Model, choice: AdapterChoice, runs):
    yes_no = {None: "-", True: "yes", False: "NO"}
    print(f"{'prompt':<20} {'method':<16} {'new tokens':>10} {'tokens/s':>9} {'mean accepted':>14}  identical to AR")
    for p, res, same in runs:
        print(
            _table_row(
                p["name"], res.method, len(res.token_ids), res.tokens_per_second, res.mean_accepted, yes_no[same]
            )
        )
    print("-" * 87)
    overall = {m: _overall(rs) for m, rs in _by_method(runs).items()}
    for method, o in overall.items():
        same = [s for _, r, s in runs if r.method == method and s is not None]
        print(
            _table_row(
                "overall",
                method,
                o["new_tokens"],
                o["tokens_per_second"],
                o["mean_accepted"],
                f"{sum(same)}/{len(same)} yes" if same else "-",
            )
        )
    ar = overall["ar"]["tokens_per_second"]
    print()
    for method, o in overall.items():
        if method != "ar":
            print(f"{method} runs at {o['tokens_per_second'] / ar:.2f}x the speed of autoregressive decoding here.")
    if choice.source == "untrained":
        print("The adapter is UNTRAINED: the output is still exact, but few drafts are accepted, so expect no speedup.")
    if model.device.type == "cpu":
        print(
            "On a CPU a step over many rows costs nearly as many times more (arithmetic, not memory, is the limit),\n"
            "so wide trees lose here; on a GPU they are nearly free (README, Results)."
        )
        print(
            f"Decoding used {torch.get_num_threads()} torch thread(s), half the cores: on a 2-core machine 2 threads\n"
            "ran faster when it was idle but many times slower next to any other busy process\n"
            "(models.default_cpu_threads; set KANGAROO_LAB_THREADS or OMP_NUM_THREADS to choose)."
        )
    _print_sample(model, runs)
    print(f"\n{NEXT_STEPS}")


def _print_sample(model: Model, runs):
    """The speculative answer with the most tokens per round, coloured on a terminal."""
    p, res, _ = max((run for run in runs if run[1].method != "ar"), key=lambda run: run[1].mean_accepted)
    print(f"\n{res.method}'s answer to the {p['name']} prompt, {res.mean_accepted:.2f} tokens per round:")
    print(f"> {p['prompt']}\n")
    print_generation(res, model.decode)


# ------------------------------------------------------------------------------------ corpus
def add_corpus_parser(subparsers):
    from .corpora import MixOptions

    d = MixOptions()
    p = subparsers.add_parser(
        "corpus",
        help="mix public prompt corpora (pinned by commit and sha256) into a question file",
        description="Read the registered prompt sources (kangaroo_lab.corpora.SOURCES) from DIR/<source>/<path>, "
        "filter, deduplicate, drop anything close to the mini-bench or --exclude files, fill per-category "
        "quotas and write a Spec-Bench question file plus OUT's .manifest.json.",
    )
    p.add_argument("--from", dest="root", metavar="DIR", required=True, help="folder holding the source files")
    p.add_argument("--out", metavar="FILE", required=True, help="the question file (JSONL) to write")
    p.add_argument("--download", action="store_true", help="first fetch missing files from GitHub by commit")
    p.add_argument(
        "--source",
        dest="sources",
        metavar="NAME",
        action="append",
        help="use this source (repeat; default: every default source)",
    )
    p.add_argument(
        "--exclude",
        metavar="FILE",
        action="append",
        default=[],
        help="a question file none of whose questions may leak into the mix (repeat)",
    )
    p.add_argument(
        "--quota",
        metavar="CATEGORY=N",
        action="append",
        default=[],
        help=f"prompts per category at most (repeat; defaults: {d.quotas})",
    )
    for name in ("max_chars", "min_chars", "max_words", "max_per_passage", "seed"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name), help="(default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the run manifest as JSON")
    p.set_defaults(run=run_corpus)


def run_corpus(args: argparse.Namespace) -> int:
    from .corpora import MixOptions, build_mix, manifest_path

    quotas = MixOptions().quotas
    for item in args.quota:
        category, _, n = item.partition("=")
        if not n.isdigit():
            raise ValueError(f"--quota {item}: expected CATEGORY=N, e.g. --quota rag=5000")
        quotas[category] = int(n)
    options = MixOptions(
        quotas=quotas,
        max_chars=args.max_chars,
        min_chars=args.min_chars,
        max_words=args.max_words,
        max_per_passage=args.max_per_passage,
        seed=args.seed,
    )
    manifest = build_mix(
        args.root, args.out, args.sources, options, args.exclude, fetch=args.download, progress=not args.json
    )
    if args.json:
        print(json.dumps(manifest))
    else:
        dropped = {reason: sum(by_source.values()) for reason, by_source in manifest["dropped"].items()}
        print(
            f"{manifest['total']} prompts written to {args.out} ({manifest['counts']}); dropped {dropped}; "
            f"manifest: {manifest_path(args.out)}"
        )
    return 0


# ------------------------------------------------------------------------------------ distill
def add_distill_parser(subparsers):
    from .templates import DEFAULT_NUM_PROMPTS

    p = subparsers.add_parser(
        "distill",
        help="let the model answer our training prompts: the adapter's training data",
        description="Self-distillation: the target model answers prompts (our template prompts by default, "
        "or --questions FILE, e.g. the real mix of `kangaroo-lab corpus`) with its chat template; "
        "token ids go to a JSONL corpus. Batched on our engine (static cache, CUDA graphs). Resumable.",
    )
    _add_model_args(p)
    p.add_argument("--out", metavar="FILE", required=True, help="the corpus (JSONL) to write or resume")
    p.add_argument("--questions", metavar="FILE", help="Spec-Bench / ShareGPT / JSONL prompts instead of ours")
    p.add_argument(
        "--prompts",
        metavar="N",
        type=int,
        default=DEFAULT_NUM_PROMPTS,
        help="how many of our training prompts (default: %(default)s)",
    )
    p.add_argument(
        "--max-new-tokens", metavar="N", type=int, default=DEFAULTS.max_new_tokens, help="(default: %(default)s)"
    )
    p.add_argument("--batch-size", metavar="N", type=int, default=64, help="(default: %(default)s)")
    p.add_argument("--temperature", metavar="T", type=float, default=0.0, help="0 = greedy answers (default)")
    p.add_argument("--top-p", metavar="P", type=float, default=1.0, help="nucleus sampling (default: %(default)s)")
    p.add_argument(
        "--seed",
        metavar="S",
        type=int,
        default=0,
        help="sampling seed (default: %(default)s). The shipped adapters learned from greedy answers plus "
        "one sampled pass: --temperature 0.7 --top-p 0.95 --seed 1 into a second file",
    )
    p.add_argument(
        "--engine",
        choices=("ours", "transformers"),
        default="ours",
        help="our batched engine (default) or transformers' generate (slower; for comparison)",
    )
    p.set_defaults(run=run_distill)


def run_distill(args: argparse.Namespace) -> int:
    from .decoding import check_sampling
    from .distill import self_distill
    from .questions import load_questions
    from .templates import training_prompts

    for name in ("prompts", "batch_size", "max_new_tokens"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    check_sampling(args.temperature, args.top_p, args.seed)  # before the model loads
    questions = load_questions(text_file(args.questions)) if args.questions else training_prompts(args.prompts)
    model = _load_model(args)
    path = self_distill(
        model,
        questions,
        args.out,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
        engine=args.engine,
    )
    print(json.dumps({"corpus": str(path)}) if args.json else f"corpus written to {path}")
    return 0


def text_file(path):
    """`path`, after checking it is UTF-8 text: else a ValueError that names the file and the byte."""
    from pathlib import Path

    path = Path(path)
    if path.is_file():
        decoder, offset = codecs.getincrementaldecoder("utf-8")(), 0
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as e:
                    raise ValueError(
                        f"{path} is not UTF-8 text (byte {offset + e.start}: {e.reason}); "
                        "convert it to UTF-8, e.g. `iconv -t UTF-8`"
                    ) from None
                offset += len(chunk)
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError as e:
                raise ValueError(f"{path} is not UTF-8 text (it ends inside a character: {e.reason})") from None
    return path


# ------------------------------------------------------------------------------------ train
def add_train_parser(subparsers):
    from .adapter import VARIANTS
    from .training import TrainConfig

    d = TrainConfig()
    p = subparsers.add_parser(
        "train",
        help="train an adapter on a self-distilled corpus",
        description="Train a Kangaroo adapter (soft cross-entropy against the full model's next-token "
        "distribution). Data-parallel with `accelerate launch --num_processes N -m kangaroo_lab.cli train ...`.",
    )
    _add_model_args(p)
    p.add_argument(
        "--data",
        metavar="FILE",
        nargs="+",
        required=True,
        help="a corpus from `kangaroo-lab distill` (JSONL or NPZ); several are read as one "
        "(e.g. greedy and sampled answers to the same prompts)",
    )
    p.add_argument("--out", metavar="DIR", required=True, help="where the adapter, its report and curves go")
    p.add_argument("--exit-layer", metavar="L", type=int, default=d.exit_layer, help="(default: %(default)s)")
    p.add_argument("--variant", choices=VARIANTS, default=d.variant, help="(default: %(default)s)")
    for name in TRAIN_OPTIONS:
        value = getattr(d, name)
        p.add_argument("--" + name.replace("_", "-"), type=type(value), default=value, help="(default: %(default)s)")
    p.set_defaults(run=run_train)


TRAIN_OPTIONS = ("steps", "batch_size", "max_len", "lr", "warmup", "eval_every", "seed", "unroll", "unroll_decay")
"""TrainConfig fields the CLI exposes (unroll: multi-step training, see training.py)."""


def run_train(args: argparse.Namespace) -> int:
    from .training import TrainConfig, train_adapter

    config = TrainConfig(
        exit_layer=args.exit_layer, variant=args.variant, **{k: getattr(args, k) for k in TRAIN_OPTIONS}
    )
    model = _load_model(args)
    data = [f if str(f).endswith(".npz") else text_file(f) for f in args.data]  # an archive is binary
    adapter = train_adapter(model, data if len(data) > 1 else data[0], args.out, config)
    report = adapter.meta.training
    if not report:  # a secondary process of a data-parallel run: the main process reports
        return 0
    summary = {k: report[k] for k in ("heldout", "accept_by_position", "tokens_seen", "minutes")}
    print(
        json.dumps({"adapter": args.out, **summary})
        if args.json
        else f"adapter saved to {args.out}: held-out top-1 {report['heldout']['top1']:.3f}, "
        f"expected acceptance {report['heldout']['expected_accept']:.3f}"
    )
    return 0


# ------------------------------------------------------------------------------------ bench
def add_bench_parser(subparsers):
    from . import bench

    p = subparsers.add_parser(
        "bench",
        help="Spec-Bench-style benchmark: ar, kangaroo and transformers' methods; sweeps",
        description="Time every method over the same questions (greedy, in one process) and write Spec-Bench "
        "answer files, summary.csv (speedup, mean accepted tokens, CTAR, identical to AR) and a "
        "markdown table; or sweep the exit layer / (threshold x max draft), one CSV row at a time.",
    )
    _add_model_args(p)
    p.add_argument(
        "--questions",
        metavar="FILE",
        help="Spec-Bench question.jsonl, ShareGPT or JSONL prompts (default: the bundled mini-bench)",
    )
    p.add_argument(
        "--methods",
        metavar="LIST",
        default=None,
        help=f"comma-separated, from {','.join(bench.METHODS)} (default: all; ar always runs)",
    )
    p.add_argument(
        "--exit-layer",
        metavar="L",
        type=int,
        default=DEFAULT_EXIT_LAYER,
        help="exit layer of kangaroo, kangaroo-noadapter and hf-earlyexit (default: %(default)s)",
    )
    _add_decoding_args(p)
    p.add_argument(
        "--max-new-tokens",
        metavar="N",
        type=int,
        default=DEFAULTS.max_new_tokens,
        help="per turn (default: %(default)s)",
    )
    p.add_argument(
        "--hf-limit",
        metavar="N",
        type=int,
        default=None,
        help="transformers' methods answer only the first N questions per category (default: all)",
    )
    layers, etas, gammas = bench.SWEEP_EXIT_LAYERS, bench.SWEEP_THRESHOLDS, bench.SWEEP_MAX_DRAFTS
    p.add_argument(
        "--sweep",
        choices=bench.SWEEPS,
        default=None,
        help=f"instead of the methods, settings between two ar runs: exit-layer = kangaroo at exit layers "
        f"{layers[0]}..{layers[-1]} (at --threshold, --max-draft); threshold = kangaroo at eta "
        f"{etas[0]}..{etas[-1]} x gamma {gammas[0]}..{gammas[-1]} (at --exit-layer); tree = "
        f"kangaroo-tree and kangaroo+lookup at node budget {bench.SWEEP_NODE_BUDGETS} x depth "
        f"{bench.SWEEP_DEPTHS} x top-k {bench.SWEEP_TOP_KS}",
    )
    p.add_argument(
        "--sweep-limit",
        metavar="N",
        type=int,
        default=bench.SWEEP_LIMIT,
        help="questions per category in a sweep (default: %(default)s)",
    )
    p.add_argument(
        "--trace",
        action="store_true",
        help="also record every draft of kangaroo at eta 0 (confidence, accepted) -> OUT/draft_trace.csv",
    )
    p.add_argument(
        "--costs",
        action="store_true",
        help="also time each decoding step (full, draft, shallow, verify over 1..128 rows) of this model "
        "and, on a GPU, of a Vicuna-7B-shaped model -> OUT/step_times.csv, and project the run's "
        "rounds of every speculative method onto the 7B shape -> OUT/projection_7b.csv "
        "(a projection, labelled so)",
    )
    p.add_argument("--out", metavar="DIR", default=str(bench.DEFAULT_OUT), help="(default: %(default)s)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run in --out: questions already answered are read back, not "
        "run again (the settings must be the same)",
    )
    p.set_defaults(run=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    from . import bench
    from .questions import load_questions

    if args.sweep and args.resume:
        raise ValueError("--resume continues a benchmark run; a sweep writes its CSV row by row: run it again")
    if args.sweep and (args.methods or args.hf_limit is not None or args.trace or args.costs):
        raise ValueError(
            "--methods, --hf-limit, --trace and --costs do not apply to --sweep "
            "(a sweep runs ar and the swept settings); run them without --sweep"
        )
    methods = bench.parse_methods(args.methods or bench.METHODS)
    options = {
        m: _decode_options(args, bench._engine_method(m), max_new_tokens=args.max_new_tokens) for m in bench.OUR_METHODS
    }  # validated before the model loads
    if args.costs and not set(methods) & set(bench.OUR_METHODS) - {"ar"}:
        raise ValueError("--costs projects the rounds of the speculative methods: add one to --methods")
    questions = load_questions(text_file(args.questions)) if args.questions else None
    model = _load_model(args)
    common = dict(questions=questions, out=args.out, limit=args.sweep_limit, max_new_tokens=args.max_new_tokens)
    chain = options["kangaroo"]
    if args.sweep == "exit-layer":
        rows = bench.sweep_exit_layer(model, threshold=chain.threshold, max_draft=chain.max_draft, **common)
    elif args.sweep == "threshold":
        rows = bench.sweep_threshold(model, exit_layer=args.exit_layer, **common)
    elif args.sweep == "tree":
        rows = bench.sweep_tree(model, exit_layer=args.exit_layer, **common)
    else:
        result = bench.benchmark(
            model,
            questions,
            methods,
            args.out,
            args.exit_layer,
            max_new_tokens=args.max_new_tokens,
            hf_limit=args.hf_limit,
            options=options,
            resume=args.resume,
        )
        rows = result.rows
        _bench_extras(args, model, questions, chain, result)
    if args.json:  # one JSON object, as every command prints: the rows of summary.csv (or of the sweep's CSV)
        print(json.dumps({"out": args.out, "rows": rows}))
    else:
        print(bench.sweep_markdown(rows) if args.sweep else bench.summary_markdown(rows))
        print(f"\nresults written under {args.out}")
    return 0


def _bench_extras(args, model: Model, questions, chain: DecodeOptions, result):
    """--trace and --costs, after the benchmark (they reuse its model and its rounds)."""
    from pathlib import Path

    from . import bench, costs
    from .decoding import method_layout

    if not (args.trace or args.costs):
        return
    adapter, _ = bench.kangaroo_adapter(model, args.exit_layer)
    if args.trace:
        path = bench.draft_trace(
            model, adapter, questions, Path(args.out) / "draft_trace.csv", chain.max_draft, chain.max_new_tokens
        )
        print(f"draft trace written to {path}", file=sys.stderr)
    if args.costs:
        runs = {
            m: (method_layout(bench._engine_method(m), o), bench.recorded_rounds(result.records, m))
            for m, o in result.options.items()
            if m != "ar"
        }
        n_questions = len({r.key for r in result.records if r.method == "ar"})
        source = (
            f"the rounds of this run: {model.name}, {n_questions} questions, l={args.exit_layer}, options in run.json"
        )
        costs.measure(model, adapter, {m: r for m, r in runs.items() if r[1]}, args.out, source)
        print(f"step times (and, on a GPU, the 7B projection) written under {args.out}", file=sys.stderr)


# ------------------------------------------------------------------------------------ figures
def add_figures_parser(subparsers):
    p = subparsers.add_parser(
        "figures",
        help="rebuild every figure (PNG + PDF) from the stored CSV files; no GPU needed",
        description="Redraw figures/*.png and *.pdf from the files in figures/data/. A figure whose input "
        "file is missing is skipped, with the command that produces the file.",
    )
    p.add_argument("--data", metavar="DIR", default="figures/data", help="the stored files (default: %(default)s)")
    p.add_argument("--out", metavar="DIR", default="figures", help="where the figures go (default: %(default)s)")
    p.add_argument("--strict", action="store_true", help="exit with code 2 when any figure was skipped")
    p.set_defaults(run=run_figures)


def run_figures(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window
    from .plots import build_figures, missing_inputs

    if not os.path.isdir(args.data):
        raise FileNotFoundError(f"--data {args.data}: no such folder (run from the repository root, or pass --data)")
    build_figures(args.data, args.out)  # prints one line per file written and per figure skipped
    skipped = missing_inputs(args.data)
    if args.strict and skipped:
        print(f"kangaroo-lab: {len(skipped)} figure(s) skipped (--strict)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
