"""Template prompts: thousands of varied user prompts, written by our own code, no network needed.

`training_prompts()` draws prompts for Spec-Bench's six kinds of work from templates and content
tables written for this project (no benchmark text is copied). They train the adapter where no
real prompt corpus is at hand (the tests, the CPU notebooks), and they are the "templates" arm of
the data ablation; the shipped adapters are trained on the real mix of public prompt corpora
(`corpora.py`), which drafts better on real prompts.

  ===================  ==========================================================
  ``mt_bench``         chat: writing, roleplay, reasoning, maths, coding,
                       extraction, STEM, humanities; some with a second turn
  ``translation``      short texts between English and German/French/Spanish/Italian
  ``summarization``    summarise a 100-150 word article
  ``qa``               short factual questions
  ``math_reasoning``   grade-school word problems
  ``rag``              answer a question from one to three given passages
  ===================  ==========================================================

The content tables (names, towns, sentences in five languages, story and passage templates, ...)
live in `assets/prompt_tables.json`; this module holds the code that combines them.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from types import SimpleNamespace

from .questions import Question

DEFAULT_NUM_PROMPTS = 3600
"""How many prompts `training_prompts()` returns by default: 600 per category."""

TABLES_FILE = "prompt_tables.json"  # in kangaroo_lab/assets/


# ---------------------------------------------------------------------------------------
# Training prompts
#
# Each category has a generator `(rng) -> turns` that draws one prompt at random from its
# templates and content tables. `training_prompts` calls them until it holds enough
# distinct prompts. Related values are drawn together (see `_Template`), so that a product
# keeps its own price and a person keeps their own pronouns.
# ---------------------------------------------------------------------------------------

Choice = str | dict[str, str]
Turns = tuple[str, ...]


@dataclass(frozen=True)
class _Template:
    """A text with {slots}, and the choices for each slot.

    A choice that is a dict fills several slots at once. `questions` are asked about the
    filled-in text (the retrieval prompts use them) and are formatted with the same values.
    """

    text: str
    slots: dict[str, tuple[Choice, ...]]
    questions: tuple[str, ...] = ()

    def draw(self, rng: random.Random) -> dict[str, str]:
        """Pick one choice per slot; return the values to `.format()` text and questions with."""
        values: dict[str, str] = {}
        for name, choices in self.slots.items():
            choice = rng.choice(choices)
            values.update(choice if isinstance(choice, dict) else {name: choice})
        return values

    def fill(self, rng: random.Random) -> str:
        """The text with freshly drawn values."""
        return self.text.format(**self.draw(rng))


def _load_tables() -> SimpleNamespace:
    """The content tables of assets/prompt_tables.json, lists as tuples and templates as `_Template`s."""

    def decode(x):
        if isinstance(x, list):
            return tuple(decode(v) for v in x)
        if isinstance(x, dict) and "template" in x:
            return _Template(x["template"], {k: decode(v) for k, v in x["slots"].items()}, decode(x["questions"]))
        if isinstance(x, dict):
            return {k: decode(v) for k, v in x.items()}
        return x

    raw = json.loads(files("kangaroo_lab").joinpath("assets", TABLES_FILE).read_text(encoding="utf-8"))
    return SimpleNamespace(**{name: decode(value) for name, value in raw.items()})


TABLES = _load_tables()
"""The content tables, by name: TABLES.sentences, TABLES.stories, TABLES.first_names, ..."""


# --- translation -----------------------------------------------------------------------


def _translation(rng: random.Random) -> Turns:
    """One or two sentences on one theme, from English into another language or back."""
    source = rng.choice(tuple(TABLES.sentences))
    others = [language for language in TABLES.sentences if language != "English"]
    target = rng.choice(others) if source == "English" else "English"
    theme = rng.choice(tuple(TABLES.sentences[source]))
    text = " ".join(rng.sample(TABLES.sentences[source][theme], rng.choice((1, 1, 2))))
    request = rng.choice(TABLES.translation_requests)
    return (request.format(source=source, target=target, text=text),)


# --- summarization ---------------------------------------------------------------------


def _summarization(rng: random.Random) -> Turns:
    """A freshly filled article or story, with a request to summarise it."""
    text = rng.choice(TABLES.stories).fill(rng)
    return (rng.choice(TABLES.summary_requests).format(text=text),)


# --- qa --------------------------------------------------------------------------------


def _qa(rng: random.Random) -> Turns:
    """A short factual question about a country, animal, element, idea, organ, ..."""
    subjects, questions = rng.choice(TABLES.qa_sets)
    subject = rng.choice(subjects)
    words = subject if isinstance(subject, tuple) else (subject,)
    question = rng.choice(questions).format(*words)
    return (rng.choice(TABLES.qa_styles).format(q=question),)


# --- math_reasoning --------------------------------------------------------------------


def _math_values(rng: random.Random) -> dict[str, object]:
    """Numbers, names and objects for one word problem, drawn so every template has an answer."""
    person, friend = rng.sample(TABLES.first_names, 2)
    start, each, groups, small = (rng.randint(20, 90), rng.randint(3, 12), rng.randint(3, 12), rng.randint(2, 6))
    price, batch = rng.randint(2, 15), rng.choice((4, 6, 8, 10))
    start_hour, start_minute = rng.randint(6, 10), 5 * rng.randint(0, 11)
    return {
        **person,
        "friend": friend["name"],
        "things": rng.choice(TABLES.things),
        "start": start,
        "given": rng.randint(2, start - 5),
        "more": rng.randint(3, 30),
        "each": each,
        "groups": groups,
        "small": small,
        "price": price,
        "bill": next(b for b in (20, 50, 100, 200) if b > groups * price),
        "pages": each * rng.randint(10, 40),
        "speed": 5 * rng.randint(6, 24),
        "hours": rng.randint(1, 5),
        "ratio_total": rng.randint(3, 15) * (small + 1),
        "tag": 10 * rng.randint(2, 12),
        "percent": rng.choice((10, 20, 25, 50)),
        "minutes": rng.randint(15, 55),
        "club": 20 * rng.randint(1, 6),
        "length": rng.randint(4, 30),
        "width": rng.randint(2, 15),
        "goal_item": rng.choice(TABLES.savings_goals),
        "goal": price * rng.randint(6, 20),
        "age": rng.randint(6, 40),
        "later": rng.randint(2, 15),
        "batch": batch,
        "pancakes": batch * rng.randint(2, 6),
        "clock": f"{start_hour}:{start_minute:02d}",
        "long_minutes": rng.randint(25, 140),
        "wallet": 4 * rng.randint(10, 30),
    }


def _math_reasoning(rng: random.Random) -> Turns:
    """A grade-school word problem with fresh names, objects and numbers."""
    problem = rng.choice(TABLES.word_problems).format(**_math_values(rng))
    return (problem + rng.choice(TABLES.math_suffixes),)


# --- rag -------------------------------------------------------------------------------


def _rag(rng: random.Random) -> Turns:
    """A question about one passage, shown among zero to two unrelated passages."""
    relevant, *distractors = rng.sample(TABLES.rag_documents, rng.choice((1, 2, 2, 3)))
    values = relevant.draw(rng)
    question = rng.choice(relevant.questions).format(**values)
    passages = [relevant.text.format(**values)] + [d.fill(rng) for d in distractors]
    rng.shuffle(passages)
    label = rng.choice(TABLES.rag_labels)
    documents = "\n\n".join(f"{label.format(i)}: {p}" for i, p in enumerate(passages, start=1))
    return (rng.choice(TABLES.rag_requests).format(documents=documents, question=question),)


# --- mt_bench: multi-turn chat ---------------------------------------------------------
# Each `_chat_*` function returns a first turn and the follow-ups that fit it.


def _chat_writing(rng: random.Random) -> tuple[str, tuple[str, ...]]:
    form, topic = rng.choice(TABLES.writing_forms), rng.choice(TABLES.writing_topics)
    return rng.choice(TABLES.writing_requests).format(form=form, topic=topic), TABLES.writing_follow_ups


def _chat_roleplay(rng: random.Random) -> tuple[str, tuple[str, ...]]:
    role, task = rng.choice(TABLES.roles), rng.choice(TABLES.role_tasks)
    return rng.choice(TABLES.role_requests).format(role=role, task=task), TABLES.role_follow_ups


def _chat_reasoning(rng: random.Random) -> tuple[str, tuple[str, ...]]:
    a, b, c = (p["name"] for p in rng.sample(TABLES.first_names, 3))
    up = rng.randint(3, 5)
    books = 3 * rng.randint(5, 40)
    words = ", ".join(rng.sample(rng.choice(TABLES.odd_one_out), 4))
    puzzles = (
        f"{a} is older than {b}, and {c} is younger than {b}. Who is the oldest of the three, and who is the youngest?",
        f"{a}, {b} and {c} ran a race. {a} did not win, and {c} crossed the line right after "
        f"{a}. In what order did they finish?",
        f"If today is {rng.choice(TABLES.weekdays)}, what day of the week will it be in {rng.randint(10, 100)} days?",
        f"A drawer holds {rng.randint(4, 12)} red socks and {rng.randint(4, 12)} blue socks. In "
        "the dark, how many socks must you take out to be sure of a matching pair?",
        f"{a} has twice as many books as {b}, and together they have {books} books. How many "
        "books does each of them have?",
        f"Which word does not belong with the others: {words}? Why?",
        f"A snail climbs {up} metres up a wall each day and slides back {rng.randint(1, up - 1)} "
        f"metres each night. The wall is {rng.randint(10, 30)} metres high. On which day does "
        "the snail reach the top?",
    )
    return rng.choice(puzzles), TABLES.reasoning_follow_ups


def _chat_math(rng: random.Random) -> tuple[str, tuple[str, ...]]:
    a, x, b = rng.randint(2, 9), rng.randint(-9, 12), rng.randint(1, 30)
    gcd = rng.randint(2, 12)
    problems = (
        f"Solve for x: {a}x + {b} = {a * x + b}.",
        f"What is the area of a triangle with a base of {rng.randint(3, 20)} cm and a height of "
        f"{rng.randint(2, 15)} cm?",
        f"Is {rng.randint(20, 400)} a prime number? Explain how you checked.",
        f"Find the greatest common divisor of {gcd * rng.randint(2, 9)} and {gcd * rng.randint(10, 19)}.",
        f"What is the sum of all whole numbers from 1 to {rng.randint(10, 200)}?",
        f"Simplify the fraction {gcd * rng.randint(1, 7)}/{gcd * rng.randint(8, 15)}.",
        f"What is {rng.choice((5, 15, 35, 60, 75))}% of {10 * rng.randint(2, 90)}?",
        f"A square has a perimeter of {4 * rng.randint(3, 30)} cm. What is its area?",
    )
    return rng.choice(problems), TABLES.math_follow_ups


def _chat_coding(rng: random.Random) -> tuple[str, tuple[str, ...]]:
    request = rng.choice(TABLES.coding_requests)
    first = request.format(language=rng.choice(TABLES.languages), task=rng.choice(TABLES.coding_tasks))
    return first, TABLES.coding_follow_ups


def _chat_extraction(rng: random.Random) -> tuple[str, tuple[str, ...]]:
    text = rng.choice(TABLES.rag_documents).fill(rng)
    return rng.choice(TABLES.extraction_requests).format(text=text), TABLES.extraction_follow_ups


def _chat_stem(rng: random.Random) -> tuple[str, tuple[str, ...]]:
    if rng.random() < 0.5:
        return rng.choice(TABLES.how_it_works).format(rng.choice(TABLES.devices)), TABLES.stem_follow_ups
    return rng.choice(TABLES.differences).format(*rng.choice(TABLES.contrasts)), TABLES.stem_follow_ups


def _chat_humanities(rng: random.Random) -> tuple[str, tuple[str, ...]]:
    kind = rng.randrange(3)
    if kind == 0:
        question = rng.choice(TABLES.event_questions).format(rng.choice(TABLES.events))
    elif kind == 1:
        question = rng.choice(TABLES.debate_questions).format(rng.choice(TABLES.debates))
    else:
        question = rng.choice(TABLES.differences).format(*rng.choice(TABLES.comparisons))
    return question, TABLES.humanities_follow_ups


_CHAT_KINDS = (
    _chat_writing,
    _chat_roleplay,
    _chat_reasoning,
    _chat_math,
    _chat_coding,
    _chat_extraction,
    _chat_stem,
    _chat_humanities,
)


def _mt_bench(rng: random.Random) -> Turns:
    """A chat request of one of eight kinds; about half get a second, follow-up turn."""
    first, follow_ups = rng.choice(_CHAT_KINDS)(rng)
    if rng.random() < 0.5:
        return (first,)
    return (first, rng.choice(follow_ups))


# --- the registry and the corpus -------------------------------------------------------

PROMPT_GENERATORS: dict[str, Callable[[random.Random], Turns]] = {
    "mt_bench": _mt_bench,
    "translation": _translation,
    "summarization": _summarization,
    "qa": _qa,
    "math_reasoning": _math_reasoning,
    "rag": _rag,
}
"""Category -> function drawing one random prompt (its turns) of that category."""


def training_prompts(n: int | None = None, seed: int = 0) -> list[Question]:
    """Distinct user prompts for training the adapter, an equal share from each category.

    `n` defaults to `DEFAULT_NUM_PROMPTS`. The same `n` and `seed` always give the same
    prompts in the same (shuffled) order. Ids look like "rag-00012". The templates make
    enough distinct prompts for n up to about 20,000 (the short `qa` questions run out
    first); asking for more raises ValueError.
    """
    n = DEFAULT_NUM_PROMPTS if n is None else n
    if n < 0:
        raise ValueError(f"n must be a non-negative number of prompts, got {n}")
    per_category, extra = divmod(n, len(PROMPT_GENERATORS))
    prompts = []
    for i, (category, generate) in enumerate(PROMPT_GENERATORS.items()):
        quota = per_category + (i < extra)  # the first `extra` categories get one more
        rng = random.Random(f"{seed}:{category}")  # one stream per category, independent of others
        drawn = _draw_distinct(generate, rng, quota, category)
        prompts += [Question(f"{category}-{i:05d}", category, turns) for i, turns in enumerate(drawn)]
    random.Random(seed).shuffle(prompts)
    return prompts


def _draw_distinct(
    generate: Callable[[random.Random], Turns], rng: random.Random, count: int, category: str
) -> list[Turns]:
    """Call `generate` until `count` different prompts have come out (in drawing order)."""
    seen: dict[Turns, None] = {}
    max_draws = 20 * count + 1000
    for _ in range(max_draws):
        if len(seen) == count:
            break
        seen.setdefault(generate(rng), None)
    if len(seen) < count:
        raise ValueError(
            f"could only draw {len(seen)} distinct '{category}' prompts out of the "
            f"{count} asked for; ask training_prompts() for fewer prompts"
        )
    return list(seen)


# ---------------------------------------------------------------------------------------
