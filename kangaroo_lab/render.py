"""Token rendering shared by the command line, the notebooks' panels and `explore`.

A generated token is of one of four kinds (`KINDS`): "target" (the target model's own: the first
token, a correction, a bonus token), "accepted" (an adapter's draft the target accepted), "lookup"
(a prompt-lookup token the target accepted) or "rejected" (a chain's draft the target refused; it
is not part of the output).

* `token_kinds`, `token_pieces`, `segments`   a generation cut into (kind, text) in reading order;
* `render`, `legend`, `use_colour`, `stats_line`   the same on a terminal (ANSI colours);
* `token_text`                                  one token as readable text (tables of `explore`).

`widgets.token_stream_html` turns the same segments into HTML.
"""

from __future__ import annotations

import os

from tqdm.auto import tqdm

from .decoding import GenerationResult
from .models import Model
from .proposers import METHOD_TABLE

KINDS = ("target", "accepted", "lookup", "rejected")
DRAFT_LABELS = {"accepted": "accepted draft", "lookup": "accepted lookup token", "rejected": "rejected draft"}
"""What a legend calls the kinds it colours (the target's tokens are shown plain on a terminal)."""

ACCEPTED, LOOKUP, REJECTED, RESET = "\x1b[32m", "\x1b[33m", "\x1b[9;31m", "\x1b[0m"  # green; yellow; red struck
COLOURS = {"accepted": ACCEPTED, "lookup": LOOKUP, "rejected": REJECTED}  # ANSI colour per kind on a terminal
CONTROL_PICTURES = {c: 0x2400 + c for c in range(32)}  # control characters as visible symbols (␅, ␛, ...)
# on a terminal, control characters the model emits are shown as symbols (a random model's ESC would garble it)
_TERMINAL_PICTURES = {c: p for c, p in CONTROL_PICTURES.items() if chr(c) not in "\n\t"}


# ------------------------------------------------------------------------------------ kinds and pieces
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


def token_text(model: Model, token_id: int) -> str:
    """One token as readable text: line breaks as ⏎, tabs as ⇥, an empty piece as ∅; a token that is
    only part of a character (a byte of UTF-8) as the tokenizer's own name for it."""
    text = model.decode([token_id], skip_special_tokens=False)
    if "\ufffd" in text:
        text = model.tokenizer.convert_ids_to_tokens(token_id)
    return text.replace("\n", "⏎").replace("\t", "⇥").translate(CONTROL_PICTURES) or "∅"


# ------------------------------------------------------------------------------------ on a terminal
def use_colour(stream) -> bool:
    """ANSI colours only on a terminal, and never with NO_COLOR set (https://no-color.org)."""
    return stream.isatty() and not os.environ.get("NO_COLOR")


def legend() -> str:
    coloured = " | ".join(f"{COLOURS[kind]}{label}{RESET}" for kind, label in DRAFT_LABELS.items())
    return f"legend: {coloured} | plain = token from the target model"


def render(res: GenerationResult, decode, colour: bool) -> str:
    """The generated text; with colour, accepted drafts green, lookup tokens yellow and rejected drafts
    red, struck through. Without colour it is exactly decode(res.token_ids)."""
    if not colour:
        return "".join(text for kind, text in segments(res, decode) if kind != "rejected")
    parts = []
    for kind, text in segments(res, decode):
        text = text.translate(_TERMINAL_PICTURES)
        if kind == "rejected":  # its line breaks stay visible but out of the layout
            text = text.replace("\n", "⏎")
        parts.append(f"{COLOURS[kind]}{text}{RESET}" if kind in COLOURS and text else text)
    return "".join(parts)


def stats_line(res: GenerationResult) -> str:
    """'kangaroo: 64 tokens in 1.20 s = 53.3 tokens/s | mean accepted ... | stop: eos'."""
    line = f"{res.method}: {len(res.token_ids)} tokens in {res.seconds:.2f} s = {res.tokens_per_second:.1f} tokens/s"
    if METHOD_TABLE[res.method].speculative:  # autoregressive decoding: one token per round, by definition
        line += f" | mean accepted {res.mean_accepted:.2f} tokens/round | {res.rounds} rounds"
    return f"{line} | stop: {res.stop_reason}"


def progress_bar(items, show: bool, what: str, unit: str, total: int | None = None):
    """`items` wrapped in a progress bar that says what is being done (a silent one when not `show`)."""
    return tqdm(items, desc=what, unit=unit, total=total, disable=not show)
