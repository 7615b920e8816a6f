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
* **The mix** (`build_mix`) parses every file, derives translation prompts from English
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
import itertools
import json
import random
import re
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from importlib.resources import files as package_files
from pathlib import Path

from .questions import CATEGORIES, Question, load_minibench, load_questions, write_questions

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

TRANSLATION = "translation"
"""The derived source: English sentences of the other sources, to be translated."""

# ---------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------

DEFAULT_QUOTAS = {
    "mt_bench": 10000,
    "translation": 9000,
    "summarization": 9000,
    "qa": 9000,
    "math_reasoning": 9000,
    "rag": 10000,
}
"""Prompts per category at most. Categories short of sources give what they have."""


@dataclass(frozen=True)
class MixOptions:
    """How `build_mix` filters and samples. Lengths count all turns of a prompt together."""

    quotas: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_QUOTAS))
    max_chars: int = 3000  # ~750 tokens
    min_chars: int = 10
    max_words: int | None = None
    max_per_passage: int = 2  # prompts that share their longest paragraph (same article, new question)
    ngram: int = 8  # a shared run of this many words with an excluded question drops a prompt
    seed: int = 0

    def __post_init__(self):
        unknown = set(self.quotas) - set(CATEGORIES)
        if unknown:
            raise ValueError(f"quotas for unknown categories {sorted(unknown)}; categories are {CATEGORIES}")
        if any(n < 0 for n in self.quotas.values()) or self.max_chars < 1 or self.max_per_passage < 1:
            raise ValueError("quotas must be >= 0; max_chars and max_per_passage must be >= 1")


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
    from tqdm.auto import tqdm

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
    from tqdm.auto import tqdm

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


# ---------------------------------------------------------------------------------------
# Translation prompts, written by us around sentences of the sources
# ---------------------------------------------------------------------------------------

TRANSLATION_LANGUAGES = ("German", "French", "Spanish", "Italian")
TRANSLATION_REQUESTS = (
    "Translate into {lang}: {text}",
    "Translate the following text into {lang}.\n\n{text}",
    "How would you say this in {lang}?\n\n{text}",
    "Please translate this into {lang}:\n{text}",
    'Give me a {lang} translation of the following:\n\n"{text}"',
    "English: {text}\n{lang}:",
    "Can you translate this sentence into {lang} for me? {text}",
    "Render the following in natural {lang}.\n\n{text}",
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_CLEAN_SENTENCE = re.compile(r"^[A-Z][A-Za-z0-9 ,;:'\"()%$&\-.!?’]+[.!?]$")


def _prose_sentences(candidates: Iterable[Candidate]) -> list[str]:
    """Distinct, clean English sentences of 8-35 words from summarization and rag passages."""
    seen: dict[str, None] = {}
    for c in candidates:
        if c.category not in ("summarization", "rag"):
            continue
        for paragraph in c.turns[0].split("\n"):
            if len(paragraph.split()) < 40:  # passages, not instructions or questions
                continue
            for sentence in _SENTENCE_END.split(paragraph.strip()):
                if 8 <= len(sentence.split()) <= 35 and _CLEAN_SENTENCE.match(sentence) and " -- " not in sentence:
                    seen.setdefault(sentence, None)
    return list(seen)


def translation_candidates(candidates: list[Candidate], n: int, seed: int) -> list[Candidate]:
    """Up to `n` translation prompts: one (two thirds) or two consecutive sentences, a target
    language and a phrasing, drawn with `seed`. When `n` exceeds the sentences found, a
    sentence is asked again into another language (at most once per language)."""
    rng = random.Random(seed)
    sentences = _prose_sentences(candidates)
    starts = list(range(len(sentences)))
    rng.shuffle(starts)
    out = []
    for round_, start in itertools.product(range(len(TRANSLATION_LANGUAGES)), starts):
        if len(out) >= n:
            break
        text = " ".join(sentences[start : start + (2 if (start + round_) % 3 == 0 else 1)])
        lang = TRANSLATION_LANGUAGES[(start + round_) % len(TRANSLATION_LANGUAGES)]
        prompt = rng.choice(TRANSLATION_REQUESTS).format(lang=lang, text=text)
        out.append(Candidate(TRANSLATION, "(derived)", "translation", (prompt,)))
    return out


# ---------------------------------------------------------------------------------------
# Filtering and mixing
# ---------------------------------------------------------------------------------------


def normalise(text: str) -> str:
    """Lower-case words joined by single spaces: what deduplication compares."""
    return " ".join(re.findall(r"\w+", text.lower()))


def _grams(text: str, k: int) -> set[str]:
    words = normalise(text).split()
    return {" ".join(words[i : i + k]) for i in range(len(words) - k + 1)}


class Exclusion:
    """Questions no prompt may resemble: same normalised turn, or a shared run of `k` words."""

    def __init__(self, questions: Iterable[Question], k: int = 8):
        turns = [t for q in questions for t in q.turns]
        self.k = k
        self.texts = {normalise(t) for t in turns}
        self.grams = set().union(*(_grams(t, k) for t in turns)) if turns else set()

    def hits(self, turns: Turns) -> bool:
        return any(normalise(t) in self.texts or not self.grams.isdisjoint(_grams(t, self.k)) for t in turns)


def _passage_key(turns: Turns) -> str | None:
    """The prompt's longest paragraph, normalised, if it is a passage (40 words or more)."""
    longest = max((p for t in turns for p in t.split("\n")), key=len)
    return normalise(longest) if len(longest.split()) >= 40 else None


def _keep(
    candidates: list[Candidate], options: MixOptions, exclusion: Exclusion, dropped: dict[str, Counter]
) -> list[Candidate]:
    """Candidates that pass every filter, in order; each drop is counted as dropped[reason][source]."""
    seen: set[str] = set()
    passages: Counter = Counter()
    kept = []
    for c in candidates:
        text = "\n".join(c.turns)
        if len(text) > options.max_chars or (options.max_words and len(text.split()) > options.max_words):
            reason = "too_long"
        elif len(text) < options.min_chars:
            reason = "too_short"
        elif (norm := normalise(text)) in seen:
            reason = "duplicate"
        elif (key := _passage_key(c.turns)) is not None and passages[key] >= options.max_per_passage:
            reason = "passage_repeat"
        elif exclusion.hits(c.turns):
            reason = "excluded"
        else:
            seen.add(norm)
            if key is not None:
                passages[key] += 1
            kept.append(c)
            continue
        dropped[reason][c.source] += 1
    return kept


def _fill_quotas(kept: list[Candidate], quotas: dict[str, int], rng: random.Random) -> list[Candidate]:
    """Per category, take up to its quota, round-robin over its sources so that small sources
    are not drowned by big ones; candidates arrive shuffled."""
    chosen = []
    for category in CATEGORIES:
        by_source: dict[str, list[Candidate]] = defaultdict(list)
        for c in kept:
            if c.category == category:
                by_source[c.source].append(c)
        lists = [v for _, v in sorted(by_source.items())]
        interleaved = [c for row in itertools.zip_longest(*lists) for c in row if c is not None]
        picked = interleaved[: quotas.get(category, 0)]
        rng.shuffle(picked)
        chosen += picked
    return chosen


def mix(
    candidates: list[Candidate], options: MixOptions, exclusion: Exclusion
) -> tuple[list[Question], dict[str, Counter]]:
    """Filter, deduplicate and sample `candidates` into questions with ids like "rag-00042".

    Returns the questions and the drop counts: reason -> source -> count."""
    rng = random.Random(options.seed)
    shuffled = list(candidates)
    rng.shuffle(shuffled)  # which duplicate or passage repeat survives is random, but seeded
    dropped: dict[str, Counter] = defaultdict(Counter)
    chosen = _fill_quotas(_keep(shuffled, options, exclusion, dropped), options.quotas, rng)
    if not chosen:
        summary = ", ".join(f"{r}: {sum(c.values())}" for r, c in dropped.items()) or "no records were read"
        raise ValueError(
            f"the mix is empty: every one of {len(candidates)} records was filtered out ({summary}). "
            "Raise --max-chars or the --quota values, or add sources."
        )
    counters: Counter = Counter()
    questions = []
    for c in chosen:
        questions.append(Question(f"{c.category}-{counters[c.category]:05d}", c.category, c.turns))
        counters[c.category] += 1
    return questions, dropped


def build_mix(
    root: str | Path,
    out: str | Path,
    names: Iterable[str] | None = None,
    options: MixOptions | None = None,
    exclude: Iterable[str | Path] = (),
    fetch: bool = False,
    sources: dict[str, Source] | None = None,
    progress: bool = True,
) -> dict:
    """Read the sources under `root` (fetching them first if `fetch`), mix, and write `out`
    (Spec-Bench question format) and `<out stem>.manifest.json`. Returns the manifest.

    `names` picks sources (default: every default source; "translation" is always derived
    when its quota is above 0). `exclude` names question files whose questions, like the
    mini-bench's, must not leak into the mix."""
    options = options or MixOptions()
    chosen = resolve_sources([n for n in names if n != TRANSLATION] if names is not None else None, sources)
    if fetch:
        download(root, chosen, progress)
    candidates, read = read_sources(root, chosen, progress)
    n_translation = options.quotas.get("translation", 0)
    candidates += translation_candidates(candidates, 2 * n_translation, options.seed) if n_translation else []
    exclude = [Path(p) for p in exclude]
    exclusion = Exclusion(load_minibench() + [q for p in exclude for q in load_questions(p)], options.ngram)
    questions, dropped = mix(candidates, options, exclusion)
    out = write_questions(questions, out)
    manifest = _manifest(out, chosen, read, candidates, questions, dropped, options, exclude)
    manifest_path(out).write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


def manifest_path(out: str | Path) -> Path:
    """The run manifest written next to a mix: prompts.jsonl -> prompts.manifest.json."""
    out = Path(out)
    return out.with_name(out.stem + ".manifest.json")


def _manifest(
    out: Path,
    chosen: list[Source],
    read: dict,
    candidates: list[Candidate],
    questions: list[Question],
    dropped: dict[str, Counter],
    options: MixOptions,
    exclude: list[Path],
) -> dict:
    per_source: dict[str, Counter] = defaultdict(Counter)
    available: dict[str, Counter] = defaultdict(Counter)
    for c in candidates:
        available[c.source][c.category] += 1
    kept_turns = {q.turns: q.category for q in questions}
    for c in candidates:  # the candidate a question came from: same turns (deduplicated, so unique)
        if kept_turns.get(c.turns) == c.category:
            per_source[c.source][c.category] += 1
            kept_turns.pop(c.turns)
    sources = {
        s.name: {
            "repo": s.repo,
            "commit": s.commit,
            "license": s.license,
            "note": s.note,
            "files": read.get(s.name, []),
            "records": dict(available[s.name]),
            "kept": dict(per_source[s.name]),
        }
        for s in chosen
    }
    if available[TRANSLATION]:
        sources[TRANSLATION] = {
            "derived_from": "English sentences of the summarization and rag passages above",
            "records": dict(available[TRANSLATION]),
            "kept": dict(per_source[TRANSLATION]),
        }
    return {
        "format": MIX_FORMAT,
        "questions": out.name,
        "total": len(questions),
        "counts": {c: sum(q.category == c for q in questions) for c in CATEGORIES},
        "sources": sources,
        "dropped": {reason: dict(by_source) for reason, by_source in sorted(dropped.items())},
        "excluded_with": ["kangaroo_lab minibench"] + [str(p) for p in exclude],
        "options": asdict(options),
    }
