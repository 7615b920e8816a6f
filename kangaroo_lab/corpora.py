"""Public prompt corpora by manifest, mixed into one question file in our six categories.

The adapter learns to imitate the model it drafts for on the model's own answers
(self-distillation), so what matters is the *prompts*: many, varied, real, and never the
questions we measure on. This module knows where to find public prompt sources and how to
turn them into `Question`s, without copying a word of them into the repository:

* **The registry** (`SOURCES`) pins each source: its GitHub repository, a commit, the path
  and sha256 of every file read, its license, a parser, and the categories its records go
  to. Files are read from a local folder (`DIR/<source>/<path in repo>`); `download()`
  fetches exactly those bytes from raw.githubusercontent.com and checks their hashes.
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

_SELF_INSTRUCT = ("yizhongw/self-instruct", "0b26ccaa415992100fa32df62d41b994cf928e23")
_T0_DIR = "data/finetuning/t0_train_50k/data_per_template/"

T0_TEMPLATES: dict[str, tuple[str, str]] = {
    "adversarial_qa_dbert_answer_the_following_q": (
        "rag",
        "e0bb31d67cfc7615956981d6502dc2c75847ca7f979c0e9c72cac8b206768942",
    ),
    "adversarial_qa_dbert_based_on": ("rag", "00d9b1c3cf5e8b1f83e91e1cd7b6d3af7a663c2de5066bc9f681d60149fc9e7e"),
    "adversarial_qa_dbert_question_context_answer": (
        "rag",
        "b7085ee25cae1129454369bf0d0024b367d57b3f06d7d7c6f7eea99e209c3b92",
    ),
    "adversarial_qa_dbert_tell_what_it_is": ("rag", "7aa6c608caafe7ab127cfe56ca8a3ec2e29765b4c272bf704a4723b44ef546e7"),
    "adversarial_qa_dbidaf_answer_the_following_q": (
        "rag",
        "38f03eaf33c048f0808b54517f222ddbdc01e254bb31cad476b2c4d0b1ec84ab",
    ),
    "adversarial_qa_dbidaf_based_on": ("rag", "2e61b18d84062ad4b3aa832e70179e03af364a993f448a6d34caec03590507b4"),
    "adversarial_qa_dbidaf_question_context_answer": (
        "rag",
        "13590d2ee190d6e5e92b75f8ad0bcead5fd13ef9914457e18df202d7b21bc2f5",
    ),
    "adversarial_qa_dbidaf_tell_what_it_is": (
        "rag",
        "96cc96a5b748440605615e273f43a6311666ca9aae7cb7572e0f46d92f312e7f",
    ),
    "adversarial_qa_droberta_answer_the_following_q": (
        "rag",
        "47961be97656db2eceb577ac8f2b426ebcd84c1f3bc124f5f800c85d5062377e",
    ),
    "adversarial_qa_droberta_based_on": ("rag", "f18e82ad58d950d3b86a2362014e77a90c614c91623d8950d659f35d2fb5e32c"),
    "adversarial_qa_droberta_question_context_answer": (
        "rag",
        "d3c30be65d4c6b9538e386ec02131fad22171fdbd87bbf9f4437ef1bcdf9d4b7",
    ),
    "adversarial_qa_droberta_tell_what_it_is": (
        "rag",
        "72cdf0ce9543f8abe2ff82b488b71d99c788ffb31f43d41cdb7ff61270cdf511",
    ),
    "cnn_dailymail_3_0_0_2_or_3_sentences": (
        "summarization",
        "aea6ffe338c503e0c5f34a39c1978ed4fa97a8baa31387862ec962c8f6013747",
    ),
    "cnn_dailymail_3_0_0_generate_story": (
        "mt_bench",
        "6b43b30f89db5961decf525bc2bcde18e09126ae28e9d506aefd78a88d77ab75",
    ),
    "cnn_dailymail_3_0_0_news_card_view": (
        "summarization",
        "517a2772445fe463cffbe7eed6eaf32d252c8eae742e874eab55602cfa8c9356",
    ),
    "cnn_dailymail_3_0_0_news_stock": (
        "summarization",
        "30faa012f0c1b60c59d28b502d3ab852b189e994850c1569436921980e1252a6",
    ),
    "cnn_dailymail_3_0_0_news_summary": (
        "summarization",
        "65aa425fc79a9ec7903ba58f8be6369cde82a3bf6788cd21581b5a6a4f8c4b1b",
    ),
    "cnn_dailymail_3_0_0_spice_up_story": (
        "mt_bench",
        "ecc4c1757d08542939c641b3e6b6a762ce282c257a0695fff7d1016a515accb7",
    ),
    "cnn_dailymail_3_0_0_sum_in_brief": (
        "summarization",
        "f927bcc731d9b396c091cd252e32ea517bb76274d5e0c25e0ae2c07f2a45ee46",
    ),
    "cnn_dailymail_3_0_0_tldr_summary": (
        "summarization",
        "56c029dbc69206ac005818d1c2f229b653406d35f0e3cf0647cba4693b26040d",
    ),
    "cnn_dailymail_3_0_0_write_an_outline": (
        "summarization",
        "89c6873558aaee2dab27b2249b144fb769db89b4ef03d3b84bb38d6931df4dca",
    ),
    "common_gen_Example_prompt": ("mt_bench", "60bcb54f09ea41081ab47469d2bc41b7129d06bb17234d694a294f545b59719d"),
    "common_gen_Given_concepts_type_1": (
        "mt_bench",
        "20d79a4004631031db9ab4d540502ca984c4591ce42a01c0999d70c8bdca578f",
    ),
    "common_gen_Given_concepts_type_2": (
        "mt_bench",
        "134a1ad84f4c96024a972d27198f0fbeab3db5e0ed5118550103ba52bccac6d2",
    ),
    "common_gen_Put_together": ("mt_bench", "cb99ebe14aeb36792c179a69343df9fa331de1a907d9543411ea13d346e9aa06"),
    "common_gen_choice_in_concept_centric_sentence_generation": (
        "mt_bench",
        "d2c5eff3cd0df65d598b6c8c8c7525c2dbfb0194a9d36aa1f4672d94e00267c3",
    ),
    "common_gen_random_task_template_prompt": (
        "mt_bench",
        "a162f93471e541fb8df79902494047afb7f7edd4282c50c65af20ecf89d5371d",
    ),
    "commonsense_qa_answer_given_question_without_options": (
        "qa",
        "630766ed39dad1a0a0f9a3d8e7ccda5d74306aef939c67634cda95c4ed52b9ea",
    ),
    "commonsense_qa_answer_to_question": ("qa", "8ca5ce2f975b13f38657aa840e6115bc7c84ac644955bf209cbedd77835725e8"),
    "commonsense_qa_most_suitable_answer": ("qa", "f59a3966d12f41019c22e2dc58ec9b68e6ca5c3a20e83b5c86227df96bc7b8a0"),
    "commonsense_qa_question_answering": ("qa", "0db3ef28a3192f4dd869022010dfcd1baa80d076b533e1ec562266ca1ef86c1b"),
    "cosmos_qa_context_description_question_answer_text": (
        "rag",
        "e07b107dc60948ee34be9761f96a3370ff50b9bcc54f2fa3f7fba3487246ea76",
    ),
    "cosmos_qa_context_description_question_text": (
        "rag",
        "8a5034f85703d671fe635eb0287ae277f406d0642df357f962632eb0a9103a7a",
    ),
    "cosmos_qa_context_question_description_answer_text": (
        "rag",
        "3cc9939e4ebf807ab88f0e4db82ae7348ba6c0f75a9dd3833919421b76eb0955",
    ),
    "cosmos_qa_context_question_description_text": (
        "rag",
        "1a4c173c065a64e714a153fa37fc000991daa647849818277311e20c6da9426f",
    ),
    "cosmos_qa_description_context_question_answer_text": (
        "rag",
        "899fdc7364ba7174536732002085f796289ab118d820319909981b596ee8404e",
    ),
    "cosmos_qa_description_context_question_text": (
        "rag",
        "cebcd491f8885bccf124f148d751cef9b868e420e1ccabe40f6d75ef8b441e8a",
    ),
    "cosmos_qa_no_prompt_text": ("rag", "36568cb2d3d831e777c6f35507123dab6391a6051584ccb806e4e6c10d6bbd37"),
    "dream_baseline": ("rag", "88c9823e55686ca1ac2b3d25aebf4421fd8451df15bb28223c9271a09acafa6b"),
    "dream_read_the_following_conversation_and_answer_the_question": (
        "rag",
        "c14380cde6497546bcd8842d585e0a87c40d5da554cd11cd776aed891828c960",
    ),
    "duorc_ParaphraseRC_answer_question": ("rag", "8158e6044d144244173bc057b65ae0806595147cd67ca8700334acb29412ca2d"),
    "duorc_ParaphraseRC_build_story_around_qa": (
        "mt_bench",
        "390bf4a6393b515156a10f65aea21d57f8c269ae90210a8d6ccb3a12f53d720c",
    ),
    "duorc_ParaphraseRC_extract_answer": ("rag", "35084dde15491ba6d5f260db91caffb3e4984ed54771be25126ddbe6b29eeaec"),
    "duorc_ParaphraseRC_movie_director": ("rag", "b3b872091f218684573ac499b57c9098c3acab65838fd677d3ce90ff7dd15088"),
    "duorc_ParaphraseRC_question_answering": (
        "rag",
        "b372bdd944bedf73d96544eaed09164bcceac79567d7dd5dfc086a6c70d50338",
    ),
    "duorc_SelfRC_answer_question": ("rag", "203a8415a365e0fc396809be05a8584489be362afabe9f3686d2d5b0cfc96d35"),
    "duorc_SelfRC_build_story_around_qa": (
        "mt_bench",
        "82ca8e2c5f8dfab68c8002ae90725fa0d496979aa8c17a5f7ddbdf8728206ec6",
    ),
    "duorc_SelfRC_extract_answer": ("rag", "0e63fdec32e1550dfa9b1cb520c124b0f2602fb70f5243a96d9a1e63ec07d24c"),
    "duorc_SelfRC_movie_director": ("rag", "d101e37af1395877b30ab4bf261d4ffed2713d76c237a894812331cb3664541e"),
    "duorc_SelfRC_question_answering": ("rag", "7f1cc460f3e1e21d9f48009234e74d6a544c52f026167bf5183d6514484e06af"),
    "gigaword_TLDR": ("summarization", "4e53c009ef2a5ffa13c5fcbc38366e567a3d25a13ca8a199ee51c1287690522c"),
    "gigaword_first_sentence_title": (
        "summarization",
        "e508aca97a54b02abd082d5718b84f6dd60157f0f3608137b848d6d185bbb555",
    ),
    "gigaword_generate_summary_for_this": (
        "summarization",
        "73a883e1d4c9f67eb1ae37f18759c4685d9a60baf94202030a55a5c1372e9743",
    ),
    "gigaword_in_a_nutshell": ("summarization", "e6d2e5aa54a527185b83d290ed029fa761eebae098e44fb3b2a79754ffb97938"),
    "gigaword_make_a_title": ("summarization", "671afa702cf400fed0e6b9c5f87e121e7cdcc8cb3f8a9ebcec785e798fcb71ba"),
    "gigaword_write_a_title_for_this_sentence": (
        "summarization",
        "184fbd4c35b93339c376993cfdd834fec63437b7fd4b5ab2f57bd808ce04e1fe",
    ),
    "gigaword_write_an_article": ("mt_bench", "6be15d8f8da5d96a2d841669d9396051ecd2b66f843b7d1934999fb832d91672"),
    "kilt_tasks_hotpotqa_combining_facts": ("qa", "f642ce55438026864770b785f3ea62e1d083f446a6b143238df05ed1163aaf9d"),
    "kilt_tasks_hotpotqa_complex_question": ("qa", "ded535e13e0c1b60826167dbdc6374fff8ee090b4fd2b7b384585d29609b9f5a"),
    "kilt_tasks_hotpotqa_final_exam": ("qa", "52d5fab0b32b630077c4a3bf4c6d848776766f38927046636aeb2509a9342a13"),
    "kilt_tasks_hotpotqa_formulate": ("qa", "444bbeed01e52f1a6cb59e675c22813a44fb4965fc084535d059227bcd35d55e"),
    "kilt_tasks_hotpotqa_straighforward_qa": ("qa", "c7b6217bc8dd379e3bd32b48d741025be02614f9ddec84f29abfde3e173b43bb"),
    "multi_news_distill": ("summarization", "67bbfe5e3dc154f31aa588951851088ee65c7afabbe97141ad29f94051c5f228"),
    "multi_news_expand_reverse_task_": ("mt_bench", "35cbdf3b8314aecd3ca12ea0230a0db640ca51a982f72ba6e4b8f66a450b399c"),
    "multi_news_summarize": ("summarization", "ea918df1c11eb9c67ce634f96696edc8e9908a7f12fe0285a3306e74af7d2ae8"),
    "multi_news_summary_scenario": (
        "summarization",
        "ebda50c461e7fa6973c9f8f0b9c41d287861e7f21a8e903c4bd6dbe38786372a",
    ),
    "multi_news_synthesize": ("summarization", "dcb30cbce51c5acd587f4ccdaa457ae525854196588cc2a4e31b029163f0c699"),
    "multi_news_what_are_the_key_points": (
        "summarization",
        "ad0976e24184a4a9b4e9c4c39f60b40ab551134fb5b12902cbca2458497e1882",
    ),
    "qasc_qa_with_combined_facts_1": ("rag", "3d94e1ce74e8c18d48115424d9900f46db452f59f073763934179b11c5274d27"),
    "qasc_qa_with_separated_facts_1": ("rag", "94ef9db8890220a6718f7fd47ff8a80ab93bd20222dfbcd4dd10806aa820427a"),
    "qasc_qa_with_separated_facts_2": ("rag", "2aca435f1393baee311c7bbea1702111e1a03935bbf56b98a5ba309b63a86660"),
    "qasc_qa_with_separated_facts_3": ("rag", "141287c20f9dfb3b655a2c4a26ee8302b6ffb0b5b38521603ceec89edf8a2328"),
    "qasc_qa_with_separated_facts_4": ("rag", "287fcc5a76b2548a6512e4d2ab303795f59e69dafb539f4cb7972a97739c5fcf"),
    "qasc_qa_with_separated_facts_5": ("rag", "05b7c36348c9a525e4dfd67606761c7646b695382f8e8f48091a554c44e9741a"),
    "quarel_choose_between": ("qa", "2ad21717c118210df79f512bb063510d2db6d6bb49576b2bbc20f454959e44c7"),
    "quarel_do_not_use": ("qa", "02b3f32559b5f1a45c9d07e4a44b4209024f5707b8a351c8c23cd4949617ac06"),
    "quarel_heres_a_story": ("qa", "9ac33792d6800a9c5e56c1154a4d1ce2e1aa344661246736046713d084301f98"),
    "quarel_logic_test": ("qa", "cd63c0040c6508d45737444e75c4fbaeac7a9b71c42095659d1a67ac920f07d3"),
    "quarel_testing_students": ("qa", "1b0b17d66540d1cfc6eebb6c0752f6bbe2eee679b6b379f19719c455b54e1ec2"),
    "quartz_answer_question_based_on": ("rag", "eb59f90b6a2b1563ae39469dc57e746202ae0a324a3d0dc29d303979fa69e0f5"),
    "quartz_answer_question_below": ("rag", "0d2e7324964da2571237b13505917a14ffeb89120a931155967b17932f996069"),
    "quartz_given_the_fact_answer_the_q": ("rag", "d1ca04bce8e950d683c8c42d017a279bbd44ad6f16b46b6e9a02a94d2b028fb4"),
    "quartz_having_read_above_passage": ("rag", "584769872098122663cd3d4c28d12c365fc9019c22588ab9425f6f0ff400481e"),
    "quartz_paragraph_question_plain_concat": (
        "rag",
        "ca08e101364af8de2a19e553d0f7692365827d4e05eef69a8a936b914d7f612e",
    ),
    "quartz_read_passage_below_choose": ("rag", "879d2f142be48753dbee412d1e7632610e48acf842fb810211256326ea4ff64f"),
    "quartz_use_info_from_paragraph_question": (
        "rag",
        "d910980c9f0a3e5b0875508ae76b1271b075d2a04f4c0680cc355997ce717285",
    ),
    "quartz_use_info_from_question_paragraph": (
        "rag",
        "81dd3e362e83d4323fb9670dbd87394548f4a0743a5eb5a7fa021625d58c2d34",
    ),
    "quoref_Answer_Friend_Question": ("rag", "7f26f6657d1a52d915951039488a067e2c567fb363df0a3dda8257b9c5d1104b"),
    "quoref_Answer_Question_Given_Context": ("rag", "b1d378f08949ad58c3d68805a9be34b803c31ac71abc50adddec405ff1026d88"),
    "quoref_Answer_Test": ("rag", "fb79b0de8d7ddc54719f3448dac343c382963719f7d5b43d7dec8a30c7150093"),
    "quoref_Context_Contains_Answer": ("rag", "d9d8eb109bce1c4b1e333f06fb5e968e600691930665c02ac9806a2ff36a1e33"),
    "quoref_Find_Answer": ("rag", "f542fcf3428c1a42b30b39e36265d2262b59aef0437b364871138444a9dbb953"),
    "quoref_Found_Context_Online": ("rag", "5c81a074d9f9275c92369a513813a3f9fae0849c301542bc79de18b58b22f40d"),
    "quoref_Given_Context_Answer_Question": ("rag", "b0f7de49f116086b2af0507a659280f0d2b224e71961b00ffc39a9c349b98b22"),
    "quoref_Guess_Answer": ("rag", "c11176cd2e7ba0f2a58250df7d698c577cf461719af65c11486a81d3b95eb30f"),
    "quoref_Read_And_Extract_": ("rag", "e18b6ef6892d4dd918ee64d744a0ab0b40a1fea4d2497a171d6b13d726cf477a"),
    "quoref_What_Is_The_Answer": ("rag", "090e771527bd1146cc9fad32edb204b34a24841328d4ea89b94ff6d2d73b686f"),
    "ropes_background_new_situation_answer": (
        "rag",
        "042e0291cb63b37b185487976635fb419c2c065a80b22c2d90e6b2d361b91bf5",
    ),
    "ropes_background_situation_middle": ("rag", "efc72a211ed7c3103c36048de46121027c677764f4d8f7e56f2538a0e5e6d442"),
    "ropes_given_background_situation": ("rag", "ab3ea67480e145160d0de17ff20098c134e2f0c265d0ebbfd2131a06485e30b7"),
    "ropes_new_situation_background_answer": (
        "rag",
        "938933bf0d21b1cb4d71f139d3b5805b888f9e32b0c206dfe54ef622adf63e1c",
    ),
    "ropes_plain_background_situation": ("rag", "5e6a43e0bb53820d648b7da4a45935df91fee817ced8b53b63e287460bf7fe1d"),
    "ropes_plain_bottom_hint": ("rag", "c0629bf16a77ea62cb1293d67a822163058d6b052706f4d636191b5097fe1889"),
    "ropes_plain_no_background": ("rag", "5245064bc9cfbea9c58da8540d131027c1ab0b2c6719978bd95a8cf1b7710087"),
    "ropes_prompt_beginning": ("rag", "f2f0a7612c3352849bd831614246e49a939faa8e078173c7656398c736ff0a13"),
    "ropes_prompt_bottom_hint_beginning": ("rag", "a41ef40860ab17ab0be7624374ec8bf237ba6dd438c9740ed8eede457fe40d74"),
    "ropes_prompt_bottom_no_hint": ("rag", "1ffec7008ba557701a63d7971a0d6721fb2cf2a593c88bb46ae0361ed5da76ae"),
    "ropes_prompt_mix": ("rag", "ed92e38b66c20ae5c7ad8138260afdeaa8053552ea5626b0c981b860c7f8ebf2"),
    "ropes_read_background_situation": ("rag", "dfab6570ba81528111e6f85d26aa33a9311ec9946dbe720c73922ad988900ccb"),
    "samsum_Generate_a_summary_for_this_dialogue": (
        "summarization",
        "92ccc49e08ab669dae831124853b638a8d01e4d5471e31c13a5881f48d728b57",
    ),
    "samsum_Given_the_above_dialogue_write_a_summary": (
        "summarization",
        "734e21e47c3ce3f8faeaab7deb15d694777ce37247b3d6b3dab556179377dc66",
    ),
    "samsum_Sum_up_the_following_dialogue": (
        "summarization",
        "b03da61f4e3be01c037fd9a4336196874278b550501412be48a5335a0013a529",
    ),
    "samsum_Summarize_": ("summarization", "47b51038d87de53e762f560174018001258812f924f45ec129af170b83100b27"),
    "samsum_Summarize_this_dialogue_": (
        "summarization",
        "3289ff87d7d167bc1351818dee3051815790651472040f77bb92625c010b09ba",
    ),
    "samsum_To_sum_up_this_dialog": (
        "summarization",
        "adf8b9bcfe3c92a3ddf7e037dfdaad01c9c882335e3853dd6aa725a699a2bc8a",
    ),
    "samsum_Write_a_dialogue_that_match_this_summary": (
        "mt_bench",
        "9c0247f20321abeaf4c7dc6d779457ab16c5dff0c6fc81eb6e51f9b80136fa83",
    ),
    "sciq_Direct_Question": ("rag", "f15de6820d5eca9d334e3bb2443d8ef744c96d433affae3c791f5f22c5d0e17f"),
    "sciq_Direct_Question_Closed_Book_": ("qa", "6795bb3d3ff1fda709c4e89dac3d9694e0213cc9479daa937108526edc2e8a7d"),
    "sciq_Multiple_Choice": ("rag", "f16f5df5cab0bd2cef7544ad860ea2f10048c4f68f614446eacd444c68abe086"),
    "sciq_Multiple_Choice_Closed_Book_": ("qa", "c6c34fd35b28580777a90cd33bc538271162fb26f7417c2fb50d444d9551fe91"),
    "sciq_Multiple_Choice_Question_First": ("rag", "d5c631e349fd9eb2dd18769168f170ed919048ba35a6a22fb9bdd1728e92d17a"),
    "social_i_qa_Generate_answer": ("rag", "0b1d5efc30f697f74365e178c9041629c1f2e3398d665079c5d277f03164dea9"),
    "social_i_qa_I_was_wondering": ("rag", "19c34ea6f146a1a9be19b41229f98e5ab728156ef70b71fce17e438d814d5622"),
    "social_i_qa_Show_choices_and_generate_answer": (
        "rag",
        "a66038b5c2352a5d580e7b6ba328dce34f9b6f1bbe84371943c6fa72820fc941",
    ),
    "wiki_bio_who": ("mt_bench", "c4b232eea8261c9c41c2fc7c5f4b83046afaca63b623db85abb05ad93d66da01"),
    "wiqa_what_is_the_final_step_of_the_following_process": (
        "rag",
        "d62335ee02b9de9573f47de7bcee2c603e2ca3851d7deccb768f6c861470cd39",
    ),
    "wiqa_what_is_the_missing_first_step": ("rag", "e88eff3966489d59595f5aa7020b342aba8a339036a403186d17edf41a433fb7"),
    "wiqa_what_might_be_the_first_step_of_the_process": (
        "rag",
        "7114fa29af5a6b88f6cd2973b1db6be343fa02bc07fc87031e54619c04056d67",
    ),
    "wiqa_what_might_be_the_last_step_of_the_process": (
        "rag",
        "5deef2e5432179bcba91e38755d882e4df0e381d94171691e8b8d8e050417119",
    ),
    "xsum_DOC_boils_down_to_simple_idea_that": (
        "summarization",
        "b93320733803faa25ba220f20445cb6e21ebb1424b5b82f5d714c0ebf0ed8ed0",
    ),
    "xsum_DOC_given_above_write_one_sentence": (
        "summarization",
        "e78022eb06da09669a9c4f7d7722a092276ad64f6771cc3fe66459477d0b48ca",
    ),
    "xsum_DOC_how_would_you_rephrase_few_words": (
        "summarization",
        "0a80761c1de87d69b1d482989a4f74b5ff44b43a9bc1e6bf0e2aa39de669aa42",
    ),
    "xsum_DOC_tldr": ("summarization", "c517fd5254055ab9bafc9a079e8d358607bc9c5c51b4cec7769d447d79dea958"),
    "xsum_DOC_write_summary_of_above": (
        "summarization",
        "71f99545d7892e6b683f54fa2e21cbbe24997d1da1a734c16ba2abe488112a87",
    ),
    "xsum_article_DOC_summary": ("summarization", "2e1444be2e7e922c005973df33578744f95e47a404c78e67361a5395e746d740"),
    "xsum_college_roommate_asked_DOC_so_I_recap": (
        "summarization",
        "df6254d93b620e328af6976032656a0b2d9784bf7b94517ea6d614ff41c054f1",
    ),
    "xsum_read_below_DOC_write_abstract": (
        "summarization",
        "19fd26d58459695a721f66443525466a5e265df0e948750e1d778fd59e0ae980",
    ),
    "xsum_summarize_DOC": ("summarization", "fd90496681cfc08b38662100e06ecf9d11dc82d3ba3a77670721038753bf789c"),
    "xsum_summarize_this_DOC_summary": (
        "summarization",
        "c76ea29399de6b3320cefce211afd933dd53e14196c3fb65fd52de41c72373c4",
    ),
}
"""Self-Instruct's T0 sample (200 records per prompt template): template -> (category, sha256).
Summaries of news (CNN/DM, XSum, Gigaword, Multi-News) and dialogues (SAMSum) are
summarization; reading comprehension with its passage (AdversarialQA, Quoref, DuoRC, ROPES,
QuaRTz, SciQ, QASC, CosmosQA, DREAM, WIQA, Social IQa) is rag; closed-book questions (HotpotQA,
CommonsenseQA, SciQ closed-book, QuaRel) are qa; writing from key points, titles or concepts
is mt_bench. Classification templates (sentiment, topic, paraphrase) are left out."""


def _asset_files(name: str) -> tuple[tuple[str, str], ...]:
    """(path, sha256) pairs kept in assets/<name>_files.json, for sources of many files."""
    text = (package_files("kangaroo_lab") / "assets" / f"{name}_files.json").read_text(encoding="utf-8")
    return tuple(sorted(json.loads(text).items()))


_OASST_RUNS = (
    "00_en_100_seed_2637670843",
    "01_en_100_seed_3522131311",
    "02_en_100_seed_3772407843",
    "03_en_100_seed_1591628218",
    "04_en_100_seed_3853958079",
    "05_en_100_seed_0409526259",
    "07_en_100_seed_3504426902",
    "08_en_100_seed_3570948328",
    "09_en_100_seed_0600081992",
)
_OASST_HASHES = (
    "a74d3eb62148dcf9d93c4f705ae10b4dfee26569ce9dd8f22000f5374df99391",
    "2a8b2ac769ea65226d30158467a180719d10f9d60f640d2be22f2d091e26501f",
    "33ece6977def51097123a4c5386fdc1eb8ca5f73d16d766a827be35c298ba671",
    "23d39dba56843f441a40f676921a9579bd5ab8fa849ac13d5b2be40d0d9dab1f",
    "161308d6187396b14fd7f7a0e60c6e7f0ddf5651437091f7c971893814391833",
    "5c80783ab574d9d0a703aedbb05e0f3b8062ddfeaf3fdfa028052bc4f98e5f7d",
    "dac217ce9475d9880e859573b4615268606dad8cfad12fa5a2fac7fc180e4ac4",
    "000cc2096399c495624c21de21a0e1962c7993f98dd2559404b1eddca55f32cc",
    "a36a7858d3fd174948164fbe1a557b238d4d8a6f344f3a19173cfb732c855683",
)


def _registry() -> dict[str, Source]:
    sources = [
        Source(
            "gsm8k",
            "openai/grade-school-math",
            "3101c7d5072418e28b9008a6636bde82a006892c",
            "MIT",
            (
                (
                    "grade_school_math/data/train.jsonl",
                    "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465",
                ),
            ),
            parse_gsm8k,
            ("math_reasoning",),
            note="train split only; test.jsonl is an evaluation set",
        ),
        Source(
            "nq-open",
            "google-research-datasets/natural-questions",
            "fb26a3073b1fe636c97302890a27b491d6530130",
            "Apache-2.0",
            (
                (
                    "nq_open/NQ-open.efficientqa.dev.1.1.jsonl",
                    "0ad45e2fa9fd32d10b3cf08c63e6d22f97ba1a0ce44ea98040f4c18bce7e268d",
                ),
                (
                    "nq_open/NQ-open.efficientqa.test.1.1.jsonl",
                    "c37b3cb2069632dfef219fa770d7910ac77ff6d12a08e8f3d5f058b388aca8a6",
                ),
            ),
            parse_nq_open,
            ("qa",),
            note="EfficientQA questions; NQ-open.dev.jsonl is an evaluation set",
        ),
        Source(
            "self-instruct-t0",
            *_SELF_INSTRUCT,
            "Apache-2.0",
            tuple((f"{_T0_DIR}{name}.jsonl", sha) for name, (_, sha) in T0_TEMPLATES.items()),
            parse_t0_template,
            ("summarization", "rag", "qa", "mt_bench"),
        ),
        Source(
            "self-instruct-tasks",
            *_SELF_INSTRUCT,
            "Apache-2.0",
            (
                ("data/seed_tasks.jsonl", "7779004fa198fdf27cf70a159363879d8a26c53329e11b436af17b3941875f48"),
                (
                    "human_eval/user_oriented_instructions.jsonl",
                    "81d60a117db495cecedecd9193504fd07c5b5a42f6699ef6b0f9da10fc22f42e",
                ),
            ),
            parse_self_instruct_tasks,
            ("mt_bench",),
        ),
        Source(
            "oasst-model-eval",
            "Open-Assistant/oasst-model-eval",
            "ce935dee6922ec75d5a4006dd1c3595b39a01fdf",
            "Apache-2.0",
            (
                (
                    "model_eval/manual/data/prompt_lottery_en_250_text.jsonl",
                    "34d15c9d7aab691daf4e86583f340f5f03adb3b62c2787521fd5f6b74594e389",
                ),
                (
                    "model_eval/manual/data/en_100_text.jsonl",
                    "96ea33eb2fc670b3638887eee4ec85d8c840927dbd2c2293816cccde27d6cc5f",
                ),
                (
                    "model_eval/manual/data/multilingual-60.jsonl",
                    "602fda8270a043dc4ac971b4a8f8572b7ab55f858118cdb1fe2d14b9282bd805",
                ),
            )
            + tuple(
                (f"sampling_reports/oasst-sft/1k-prompts/result_{run}.json", sha)
                for run, sha in zip(_OASST_RUNS, _OASST_HASHES)
            ),
            parse_oasst_prompts,
            ("mt_bench",),
            note="prompts only; the models' answers are ignored",
        ),
        Source(
            "sharegpt92k",
            "Marugannwg/ShareGPT92k_user_linguistic_mining",
            "8186064b06829a39494e941fb7a83f66b2228cd8",
            "MIT (repository); conversations unlicensed",
            _asset_files("sharegpt92k"),
            parse_sharegpt_conversation,
            ("mt_bench",),
            note="1,003 sampled ShareGPT conversations; the repository is MIT, the users' text has no "
            "license of its own",
        ),
    ]
    return {s.name: s for s in sources}


SOURCES: dict[str, Source] = _registry()
"""Every registered source by name. `build_mix(sources=...)` takes another dict (tests do)."""

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
