"""Mixing prompts from the registered corpora (`corpora.py`): quotas per category, translation prompts
derived from English prose, exclusions (our benchmarks, every test split, 8-gram overlap), the manifest.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .questions import CATEGORIES, Question, load_minibench, load_questions, write_questions

from .corpora import MIX_FORMAT, Candidate, Source, Turns, download, read_sources, resolve_sources

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
