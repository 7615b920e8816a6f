"""Public prompt corpora by manifest, mixed into one question file in our six categories.

The adapter learns to imitate the model it drafts for on the model's own answers
(self-distillation), so what matters is the *prompts*: many, varied, real, and never the
questions we measure on. This module knows where to find public prompt sources and how to
turn them into `Question`s, without copying a word of them into the repository:

* **The registry** (`SOURCES`, read once from ``assets/corpora_registry.json``) pins each
  source: its GitHub repository, a commit, the path and sha256 of every file read, its
  license, a parser (by name, from `PARSERS`), and the categories its records go to. Files
  are read from a local folder (`DIR/<source>/<path in repo>`); `download()` fetches exactly
  those bytes from raw.githubusercontent.com and checks their hashes.
* **The mix** (`mixing.build_mix`) parses every file, derives translation prompts from English
  prose found in the other sources, drops prompts that are too long or too short,
  duplicates (same normalised text) and repeats of one passage, drops anything that shares
  a run of 8 words with the mini-bench or with a question file you name (`exclude`), and
  fills per-category quotas, drawing evenly from each category's sources with a seed. It
  writes a question file in Spec-Bench's format (`questions.load_questions` reads it) and, next
  to it, a JSON manifest of the run: sources, files, hashes, counts, what was dropped and why.

Evaluation sets are refused by path (`EXCLUDED_PATHS`): a source that names one cannot be
registered. Command line: ``kangaroo-lab corpus --from DIR --out prompts.jsonl [--download]``.

The sources, with their records and what the default mix keeps of them (after the default
limits, deduplication, at most two prompts per passage, and quotas):

=======================  ===========  =============================================  =======  ======
name                     license      categories                                     records  kept
=======================  ===========  =============================================  =======  ======
``gsm8k``                MIT          math_reasoning (train split only)                7,473   7,472
``nq-open``              Apache-2.0   qa (EfficientQA dev + test questions)            3,569   3,569
``self-instruct-t0``     Apache-2.0   rag / summarization / qa / mt_bench (writing)   27,781  17,479
``self-instruct-tasks``  Apache-2.0   mt_bench (seed and user-oriented tasks)            427     426
``oasst-model-eval``     Apache-2.0   mt_bench (real user prompts)                     1,323   1,269
``sharegpt92k``          MIT, note    mt_bench (first two user turns)                    953     855
``translation``          derived      translation (sentences of the passages above)   18,000   9,000
=======================  ===========  =============================================  =======  ======

``sharegpt92k``: the repository is MIT-licensed, but the conversations are ShareGPT users'
text, which no one licensed; turn it off with ``sources=`` / ``--source`` if that matters to you.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib.resources import files as package_files
from pathlib import Path

from tqdm.auto import tqdm

from .questions import CATEGORIES

MIX_FORMAT = "kangaroo-lab-prompt-mix/1"
RAW_URL = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"

EXCLUDED_PATHS = (
    "*spec_bench*/question.jsonl",  # Spec-Bench's questions
    "*data/spec_bench/*",
    "*llm_judge/data/mt_bench/*",  # MT-bench (FastChat, Medusa)
    "eagle/data/*",  # EAGLE's evaluation data
    "grade_school_math/data/test*.jsonl",  # GSM8K test (and test_socratic)
    "nq_open/NQ-open.dev.jsonl",  # NQ-open dev
)
"""Paths (fnmatch patterns, matched in any repository) of evaluation sets our users measure on.
They must never become training prompts, so a `Source` naming one cannot be created."""


def check_allowed(repo: str, path: str) -> None:
    """Raise ValueError if `path` is an evaluation set listed in `EXCLUDED_PATHS`."""
    for pattern in EXCLUDED_PATHS:
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, "*/" + pattern):
            raise ValueError(
                f"refused: {repo}/{path} is an evaluation set (matches {pattern!r} in "
                "corpora.EXCLUDED_PATHS); training prompts must never come from it"
            )


Turns = tuple[str, ...]
Parser = Callable[[str, bytes], Iterator[tuple[str, Turns]]]
"""(path in repo, file bytes) -> (category, turns) for each usable record."""


@dataclass(frozen=True)
class Source:
    """One public prompt source, pinned: repository, commit, files with their sha256, license.

    `parse(path, data)` turns one file's bytes into (category, turns) records; `categories`
    lists where its records may go. `default` sources are used when none are named.
    """

    name: str
    repo: str
    commit: str
    license: str
    files: tuple[tuple[str, str], ...]  # (path in repo, sha256)
    parse: Parser
    categories: tuple[str, ...]
    default: bool = True
    note: str = ""

    def __post_init__(self):
        for path, _ in self.files:
            check_allowed(self.repo, path)
        unknown = set(self.categories) - set(CATEGORIES)
        if unknown:
            raise ValueError(f"source {self.name}: unknown categories {sorted(unknown)}; use {CATEGORIES}")

    def url(self, path: str) -> str:
        return RAW_URL.format(repo=self.repo, commit=self.commit, path=path)


@dataclass(frozen=True)
class Candidate:
    """A prompt before mixing: its turns, category and where it came from."""

    source: str
    file: str
    category: str
    turns: Turns


# ---------------------------------------------------------------------------------------
# Parsers: one per file layout. Each yields (category, turns) and skips empty records.
# ---------------------------------------------------------------------------------------


def _jsonl(data: bytes, path: str) -> Iterator[object]:
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if line.strip():
            try:
                yield json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}, line {number}: not valid JSON ({err.msg})") from None


_LINE_BREAKS = re.compile("[\u2028\u2029\x85\x0b\x0c\x1c\x1d\x1e]|\r\n?")


def _text(value: object) -> str:
    """A record's string, stripped, with every line break as "\n" (str.splitlines() also breaks at
    U+2028 and friends, which would split a JSONL line written with ensure_ascii=False)."""
    return _LINE_BREAKS.sub("\n", value).strip() if isinstance(value, str) else ""


def parse_gsm8k(path: str, data: bytes) -> Iterator[tuple[str, Turns]]:
    """GSM8K: {"question", "answer"} per line -> the question, math_reasoning."""
    for record in _jsonl(data, path):
        if question := _text(record.get("question")):
            yield "math_reasoning", (question,)


def parse_nq_open(path: str, data: bytes) -> Iterator[tuple[str, Turns]]:
    """NQ-open: {"question": "who sings ...", "answer": [...]} -> "Who sings ...?", qa."""
    for record in _jsonl(data, path):
        if question := _text(record.get("question")):
            question = question[0].upper() + question[1:]
            yield "qa", (question if question.endswith("?") else question + "?",)


def parse_t0_template(path: str, data: bytes) -> Iterator[tuple[str, Turns]]:
    """One T0 prompt template's records, {"prompt", "completion"} -> the prompt.

    The file name says the task and so the category (`T0_TEMPLATES`)."""
    category = T0_TEMPLATES[Path(path).stem][0]
    for record in _jsonl(data, path):
        if prompt := _text(record.get("prompt")):
            yield category, (prompt,)


def parse_self_instruct_tasks(path: str, data: bytes) -> Iterator[tuple[str, Turns]]:
    """Self-Instruct tasks: the instruction, followed by its first instance's input if any."""
    for record in _jsonl(data, path):
        instruction = _text(record.get("instruction"))
        instances = record.get("instances") or [{}]
        given = _text(instances[0].get("input")) if isinstance(instances[0], dict) else ""
        if instruction:
            yield "mt_bench", ((instruction + "\n\n" + given) if given else instruction,)


def parse_oasst_prompts(path: str, data: bytes) -> Iterator[tuple[str, Turns]]:
    """Open-Assistant eval prompts: JSON strings one per line, or a sampling report
    {"prompts": [{"prompt": ...}, ...]}."""
    if path.endswith(".jsonl"):
        records = _jsonl(data, path)
    else:
        records = (p.get("prompt") for p in json.loads(data.decode("utf-8")).get("prompts", []))
    for prompt in records:
        if prompt := _text(prompt):
            yield "mt_bench", (prompt,)


def parse_sharegpt_conversation(path: str, data: bytes) -> Iterator[tuple[str, Turns]]:
    """One ShareGPT conversation (JSON) -> its first two English user turns, mt_bench."""
    record = json.loads(data.decode("utf-8"))
    turns = [
        _text(m.get("value"))
        for m in record.get("conversations", [])
        if m.get("from") in ("human", "user") and m.get("language", "en") == "en"
    ]
    turns = [t for t in turns if t][:2]
    if turns:
        yield "mt_bench", tuple(turns)


# ---------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------

REGISTRY_FILE = "corpora_registry.json"
"""The pinned registry, in kangaroo_lab/assets: sources, commits, licenses, files and their sha256."""

PARSERS: dict[str, Parser] = {
    "gsm8k": parse_gsm8k,
    "nq_open": parse_nq_open,
    "t0_template": parse_t0_template,
    "self_instruct_tasks": parse_self_instruct_tasks,
    "oasst_prompts": parse_oasst_prompts,
    "sharegpt_conversation": parse_sharegpt_conversation,
}
"""Parsers by the name the registry gives them."""


def _asset(name: str) -> dict:
    return json.loads((package_files("kangaroo_lab") / "assets" / name).read_text(encoding="utf-8"))


def _source(entry: dict) -> Source:
    """A registry entry as a `Source`: its files listed, or in a JSON asset of their own (path -> sha256, sorted)."""
    files = tuple(entry["files"].items()) if "files" in entry else tuple(sorted(_asset(entry["files_asset"]).items()))
    return Source(
        entry["name"],
        entry["repo"],
        entry["commit"],
        entry["license"],
        files,
        PARSERS[entry["parser"]],
        tuple(entry["categories"]),
        default=entry.get("default", True),
        note=entry.get("note", ""),
    )


def _load_registry() -> tuple[dict[str, Source], dict[str, tuple[str, str]]]:
    """(the sources by name, the T0 templates: name -> (category, sha256)) from `REGISTRY_FILE`."""
    registry = _asset(REGISTRY_FILE)
    sources = {entry["name"]: _source(entry) for entry in registry["sources"]}
    categories = registry["t0_template_categories"]
    templates = {
        Path(path).stem: (categories.get(Path(path).stem), sha)
        for s in sources.values()
        if s.parse is parse_t0_template
        for path, sha in s.files
    }
    if set(templates) != set(categories) or not set(categories.values()) <= set(CATEGORIES):
        raise ValueError(f"{REGISTRY_FILE}: t0_template_categories must give one known category per T0 file")
    return sources, templates


SOURCES, T0_TEMPLATES = _load_registry()
"""SOURCES: every registered source by name; `build_mix(sources=...)` takes another dict (tests do).

T0_TEMPLATES: Self-Instruct's T0 sample (200 records per prompt template): template -> (category, sha256).
Summaries of news (CNN/DM, XSum, Gigaword, Multi-News) and dialogues (SAMSum) are
summarization; reading comprehension with its passage (AdversarialQA, Quoref, DuoRC, ROPES,
QuaRTz, SciQ, QASC, CosmosQA, DREAM, WIQA, Social IQa) is rag; closed-book questions (HotpotQA,
CommonsenseQA, SciQ closed-book, QuaRel) are qa; writing from key points, titles or concepts
is mt_bench. Classification templates (sentiment, topic, paraphrase) are left out."""


def resolve_sources(names: Iterable[str] | None, sources: dict[str, Source] | None = None) -> list[Source]:
    """The named sources (or every default one); an unknown name raises ValueError."""
    sources = SOURCES if sources is None else sources
    if names is None:
        return [s for s in sources.values() if s.default]
    unknown = [n for n in names if n not in sources]
    if unknown:
        raise ValueError(
            f"unknown source(s) {', '.join(unknown)}; registered sources are "
            f"{', '.join(sources)} (see kangaroo_lab.corpora.SOURCES)"
        )
    return [sources[n] for n in names]


# ---------------------------------------------------------------------------------------
# Files: download, verify, parse
# ---------------------------------------------------------------------------------------


def local_path(root: str | Path, source: Source, path: str) -> Path:
    """Where `source`'s file `path` lives under `root`: root/<source name>/<path in repo>."""
    return Path(root) / source.name / path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download(root: str | Path, sources: Iterable[Source], progress: bool = True) -> None:
    """Fetch the pinned files that are not yet under `root` (by commit), checking each sha256."""

    todo = [(s, p, h) for s in sources for p, h in s.files if not local_path(root, s, p).is_file()]
    for source, path, expected in tqdm(todo, desc="download", unit="file", disable=not progress or not todo):
        with urllib.request.urlopen(source.url(path), timeout=60) as response:
            data = response.read()
        if sha256(data) != expected:
            raise ValueError(
                f"{source.url(path)} has sha256 {sha256(data)}, the registry pins {expected}: "
                "the file changed upstream or the download was altered; nothing was written"
            )
        target = local_path(root, source, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def read_file(root: str | Path, source: Source, path: str, expected: str) -> bytes:
    """A pinned file's bytes, after checking that it exists and has the pinned sha256."""
    local = local_path(root, source, path)
    if not local.is_file():
        raise FileNotFoundError(
            f"source {source.name}: {local} is missing. Run `kangaroo-lab corpus --download --from {root} ...` "
            f"on a machine with internet access, or save {source.url(path)} there."
        )
    data = local.read_bytes()
    if sha256(data) != expected:
        raise ValueError(
            f"source {source.name}: {local} has sha256 {sha256(data)}, but the registry pins {expected} "
            f"({source.repo} at {source.commit[:12]}). It is another version of the file: delete it and "
            "run with --download, or register the new version."
        )
    return data


def read_sources(
    root: str | Path, sources: list[Source], progress: bool = True
) -> tuple[list[Candidate], dict[str, list[dict]]]:
    """Parse every pinned file: the candidates, and per source a list of {path, sha256, records}."""

    candidates: list[Candidate] = []
    read: dict[str, list[dict]] = {}
    todo = [(s, p, h) for s in sources for p, h in s.files]
    for source, path, expected in tqdm(
        todo, desc="reading sources", unit="file", disable=not progress, mininterval=2.0
    ):
        data = read_file(root, source, path, expected)
        found = [Candidate(source.name, path, category, turns) for category, turns in source.parse(path, data)]
        candidates += found
        read.setdefault(source.name, []).append({"path": path, "sha256": expected, "records": len(found)})
    return candidates, read
