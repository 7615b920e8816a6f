"""What several subcommands share: --model/--device/--json, the decoding options, loading the model,
the adapter a command runs with, checking a text file, and one-line warnings.

Defaults are read from the method table (`proposers.METHOD_TABLE`, `options.DEFAULTS`) and
`adapter.DEFAULT_EXIT_LAYER`, never declared here.
"""

from __future__ import annotations

import argparse
import codecs
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from ..adapter import (
    DEFAULT_EXIT_LAYER,
    META_FILE,
    Adapter,
    check_exit_layer,
    load_adapter,
    new_adapter,
    shipped_adapter_dir,
)
from ..metrics import environment, warn  # noqa: F401 (environment: cli's name for it)
from ..models import DEFAULT_MODEL, Model, load_model
from ..options import EARLY_EXITS, DecodeOptions
from ..proposers import DEFAULT_METHOD, METHOD_TABLE, METHODS, options_for


# ------------------------------------------------------------------------------------ model options
def add_model_args(p: argparse.ArgumentParser):
    """--model, --device and --json."""
    p.add_argument(
        "--model",
        metavar="NAME",
        default=DEFAULT_MODEL,
        help="'smollm2-135m-instruct' (embedded), 'tiny-random', a .gguf file, a model folder "
        "or a Hugging Face hub id (default: %(default)s)",
    )
    p.add_argument(
        "--device",
        type=device_arg,
        default=None,
        help="cpu, cuda, cuda:1, mps, ... (default: cuda when available, else cpu)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else")


def device_arg(text: str) -> str:
    """--device's type: a name torch accepts as a device."""
    try:
        torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device (e.g. cpu, cuda, cuda:1, mps)") from None
    return text


def load_model_for(args: argparse.Namespace) -> Model:
    """The model of --model on --device; a CUDA device without a GPU is refused before loading."""
    if args.device and torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: torch sees no CUDA GPU here; use --device cpu")
    return load_model(args.model, device=args.device)


# ------------------------------------------------------------------------------------ decoding options
def decode_options(args: argparse.Namespace, method: str = DEFAULT_METHOD, **overrides) -> DecodeOptions:
    """`method`'s defaults (`METHOD_DEFAULTS`), updated by whichever decoding options this subcommand has
    and the user gave (None: not given), then `overrides`; validated here, before any load."""
    given = {f.name: getattr(args, f.name) for f in fields(DecodeOptions) if hasattr(args, f.name)}
    return options_for(method, None, **{**given, **overrides})


def method_default(name: str) -> str:
    """'kangaroo: 0.6; kangaroo-tree, kangaroo+lookup: 0.0': an option's default per method that reads it
    (`Method.options` in the method table), for --help."""
    values: dict = {}
    for method in METHODS:
        row = METHOD_TABLE[method]
        if name in row.options:
            values.setdefault(getattr(row.defaults, name), []).append(method)
    return "; ".join(f"{', '.join(ms)}: {v}" for v, ms in values.items())


# (option, metavar, type, help without its default); the default per method is appended from the table
_DECODING_ARGS = [
    (
        "threshold",
        "ETA",
        float,
        "eta: stop drafting once the draft's confidence is below it (the chain: a draft's top-1 "
        "probability; a tree: a level's best cumulative probability). Default: ",
    ),
    ("max_draft", "GAMMA", int, "gamma: at most this many drafts per round (a tree: its depth). Default: "),
    ("top_k", "K", int, "trees: children kept per node. Default: "),
    ("node_budget", "N", int, "trees: most nodes verified per round, the root included. Default: "),
    ("n_max", "N", int, "lookup: the longest n-gram matched. Default: "),
    ("lookup_tokens", "N", int, "lookup: most tokens proposed after a match. Default: "),
]


def add_decoding_args(p: argparse.ArgumentParser):
    """The options of the speculative methods; None means the method's own default."""
    for name, metavar, kind, text in _DECODING_ARGS:
        flag = "--" + name.replace("_", "-")
        p.add_argument(flag, metavar=metavar, type=kind, default=None, help=text + method_default(name))
    p.add_argument(
        "--early-exit",
        choices=EARLY_EXITS,
        default=None,
        help="where eta stops drafting: host (a read per draft step) or device (a mask; one read per "
        "round). Default: " + method_default("early_exit"),
    )


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
    warn(
        f"no trained adapter is shipped for {model.name!r} at exit layer {exit_layer}, so using an UNTRAINED "
        "adapter: output is still exact, but few drafts are accepted (no speedup). "
        "Pass --adapter PATH to use a trained one.",
        source=None,
    )
    return AdapterChoice(new_adapter(model, exit_layer), "untrained")


# ------------------------------------------------------------------------------------ files, messages
def text_file(path) -> Path:
    """`path`, after checking it is UTF-8 text: else a ValueError that names the file and the byte."""
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
