"""Prompt lookup: propose the continuation of the latest earlier occurrence of the newest n-gram.

Models copy. A summary repeats names from its source, a translation keeps numbers and markup, an
answer about a document quotes it, and a small model falls into loops. Prompt lookup decoding
(Saxena 2023) exploits that without any draft model: take the last `n` tokens of prompt +
output (n = n_max, ..., 1, the longest that occurred before), find where they last occurred
before, and propose the `lookup_tokens` tokens that followed there. The proposal is a chain below
the round's root; verification decides, so a wrong guess costs nothing but the rows verified.

`PromptLookup` keeps an index of every n-gram (n <= n_max) seen so far, updated as tokens are
committed, so a proposal is a few dictionary lookups on the host (no device work, no sync).
"""

from __future__ import annotations

from collections.abc import Iterable


class PromptLookup:
    """n-gram index over a growing token sequence (prompt, then committed output).

    `index[ngram]` is the position just after the latest occurrence of `ngram` that has a token
    after it; the newest n-gram itself (at the very end) is indexed only once a token follows."""

    def __init__(self, tokens: Iterable[int], n_max: int, lookup_tokens: int):
        if n_max < 1:
            raise ValueError(f"n_max must be >= 1 (the longest n-gram to look up), got {n_max}")
        if lookup_tokens < 1:
            raise ValueError(f"lookup_tokens must be >= 1 (tokens proposed per match), got {lookup_tokens}")
        self.n_max, self.lookup_tokens = n_max, lookup_tokens
        self.tokens: list[int] = []
        self.index: dict[tuple[int, ...], int] = {}
        self.extend(tokens)

    def extend(self, tokens: Iterable[int]):
        """Commit `tokens`: index every n-gram that now has a successor."""
        for t in tokens:
            end = len(self.tokens)  # t sits at position `end`: the n-grams ending at end - 1 now have a successor
            for n in range(1, min(self.n_max, end) + 1):
                self.index[tuple(self.tokens[end - n : end])] = end
            self.tokens.append(t)

    def propose(self) -> tuple[list[int], int]:
        """(continuation, n): up to lookup_tokens tokens that followed the latest earlier occurrence
        of the longest matching suffix n-gram (n from n_max down to 1); ([], 0) without a match."""
        toks = self.tokens
        for n in range(min(self.n_max, len(toks)), 0, -1):
            start = self.index.get(tuple(toks[len(toks) - n :]))
            if start is not None:
                return toks[start : start + self.lookup_tokens], n
        return [], 0
