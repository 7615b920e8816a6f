"""`kangaroo-lab corpus`: public prompt corpora (pinned by commit and sha256) -> a Spec-Bench question file."""

from __future__ import annotations

import argparse
import json

from ..mixing import MixOptions, build_mix, manifest_path

MIX_OPTIONS = ("max_chars", "min_chars", "max_words", "max_per_passage", "seed")
"""MixOptions fields the CLI exposes as --max-chars, ... (the quotas have --quota)."""


def add_corpus_parser(subparsers):
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
    for name in MIX_OPTIONS:
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name), help="(default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the run manifest as JSON")
    p.set_defaults(run=run_corpus)


def run_corpus(args: argparse.Namespace) -> int:
    quotas = MixOptions().quotas
    for item in args.quota:
        category, _, n = item.partition("=")
        if not n.isdigit():
            raise ValueError(f"--quota {item}: expected CATEGORY=N, e.g. --quota rag=5000")
        quotas[category] = int(n)
    options = MixOptions(quotas=quotas, **{name: getattr(args, name) for name in MIX_OPTIONS})
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
