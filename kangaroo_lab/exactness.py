"""Speculative sampling against the exact distribution of the target model, for the tutorials and
the tests: exact marginals of the first tokens, a chi-square check of sampled tokens against them,
and acceptance as the temperature moves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import pandas as pd
import torch

from .adapter import Adapter
from .accept import Sampler
from .decoding import DEFAULTS, generate
from .models import Model
from .render import progress_bar, token_text


def exact_marginals(model: Model, prompt: list[int], sampler: Sampler, prune: float = 1e-7):
    """Exact distributions (V,) of the 2nd and 3rd sampled tokens under plain sampling from the target.

    Enumerates every first token t0 and every pair (t0, t1) with P(t0, t1) > `prune`: for a small
    vocabulary (tiny-random's 259 tokens) this takes seconds. The pruned mass is renormalised."""
    e, V = model.engine, model.config.vocab_size

    def next_probs(prefixes: torch.Tensor) -> torch.Tensor:  # (N, T) -> (N, V)
        out = [sampler.probs(e.head(e.hidden_states(chunk)[-1])[:, -1]) for chunk in prefixes.split(4096)]
        return torch.cat(out)

    with torch.inference_mode():
        base = torch.tensor([prompt], device=model.device)
        p0 = next_probs(base)[0]  # (V,)
        seq1 = torch.cat([base.expand(V, -1), torch.arange(V, device=model.device)[:, None]], 1)
        p1 = next_probs(seq1)  # (V, V): row t0
        joint = p0[:, None] * p1  # P(t0, t1)
        pairs = (joint > prune).nonzero()
        seq2 = torch.cat([base.expand(len(pairs), -1), pairs], 1)
        p2 = next_probs(seq2)  # (pairs, V)
        m2 = (joint[pairs[:, 0], pairs[:, 1]][:, None] * p2).sum(0)
    return joint.sum(0), m2 / m2.sum()


def exact_token_distribution(
    model: Model, prompt, position: int = 1, temperature: float = 1.0, top_p: float = 1.0, chat: bool = True
) -> torch.Tensor:
    """Exact distribution (V,) of the generated token at 0-based `position` (0, 1 or 2) when sampling
    from the target alone at `temperature` / `top_p`. Positions 1 and 2 need `exact_marginals`
    (a small vocabulary)."""
    if position not in (0, 1, 2):
        raise ValueError(f"position must be 0, 1 or 2 (the 1st, 2nd or 3rd generated token), got {position}")
    if temperature <= 0:
        raise ValueError("the exact distribution is for sampling: pass temperature > 0")
    ids = model.encode(prompt, chat=chat)
    sampler = Sampler(temperature, top_p, 0, model.device)
    if position == 0:
        with torch.inference_mode():
            e = model.engine
            return sampler.probs(e.head(e.hidden_states(torch.tensor([ids], device=model.device))[-1])[0, -1]).cpu()
    return exact_marginals(model, ids, sampler)[position - 1].cpu()


def chi_square(counts: torch.Tensor, probs: torch.Tensor, min_expected: float = 5.0) -> tuple[float, int, float]:
    """Pearson's chi-square of observed `counts` (V,) against exact `probs` (V,): (statistic, dof, p-value).

    Categories expected fewer than `min_expected` times are pooled into one bin. The p-value is the
    upper tail of the chi-square distribution, Q(dof / 2, statistic / 2)."""
    counts, probs = counts.double().cpu(), probs.double().cpu()
    expected = probs * counts.sum()
    big = expected >= min_expected
    obs = torch.cat([counts[big], counts[~big].sum().view(1)])
    exp = torch.cat([expected[big], expected[~big].sum().view(1)])
    keep = exp > 0
    stat = ((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum()
    dof = int(keep.sum()) - 1
    if dof < 1:
        raise ValueError("the distribution has a single likely token: nothing to test; raise the temperature")
    p = torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64), stat / 2)
    return float(stat), dof, float(p)


@dataclass
class SamplingCheck:
    """Empirical distribution of one generated token under Kangaroo sampling vs the target's exact one."""

    frame: pd.DataFrame  # token, token_id, target_p, empirical_p, count, n (all samples); most likely first
    statistic: float  # Pearson's chi-square
    dof: int
    p_value: float  # a small p-value (say < 0.001) would mean the distributions differ
    position: int  # 0-based index of the generated token that was checked
    n: int
    settings: dict = field(default_factory=dict)


def sampling_check(
    model: Model,
    adapter: Adapter,
    prompt,
    temperature: float = 0.7,
    top_p: float = 0.95,
    n: int = 3000,
    position: int = 1,
    threshold: float = 0.0,
    max_draft: int = 3,
    top: int = 20,
    chat: bool = True,
    progress: bool = False,
) -> SamplingCheck:
    """Sample `n` generations with Kangaroo (seeds 0..n-1) and compare the token at `position` with
    the exact distribution under the target (`exact_token_distribution`).

    position 1 or 2: the 2nd or 3rd generated token, which the draft proposes and the acceptance
    rule accepts or replaces (the 1st comes from the prefill). The frame keeps the `top` most
    likely tokens under the target; the chi-square test uses every token."""
    ids = model.encode(prompt, chat=chat)
    exact = exact_token_distribution(model, ids, position, temperature, top_p)
    no_eos = replace(model, eos_token_ids=frozenset())  # fixed length: the checked position always exists
    tokens = [
        generate(
            no_eos,
            ids,
            adapter=adapter,
            temperature=temperature,
            top_p=top_p,
            threshold=threshold,
            max_draft=max_draft,
            max_new_tokens=position + 1,
            seed=s,
        ).token_ids[position]
        for s in progress_bar(range(n), progress, f"sampling token {position + 1} with Kangaroo", "sample")
    ]
    counts = torch.bincount(torch.tensor(tokens), minlength=exact.numel())
    stat, dof, p = chi_square(counts, exact)
    order = exact.argsort(descending=True)[:top].tolist()
    frame = pd.DataFrame(
        [
            {
                "token": token_text(model, t),
                "token_id": t,
                "target_p": float(exact[t]),
                "empirical_p": float(counts[t]) / n,
                "count": int(counts[t]),
                "n": n,
            }
            for t in order
        ]
    )
    settings = {
        "temperature": temperature,
        "top_p": top_p,
        "threshold": threshold,
        "max_draft": max_draft,
        "exit_layer": adapter.exit_layer,
    }
    return SamplingCheck(frame, stat, dof, p, position, n, settings)


def acceptance_vs_temperature(
    model: Model,
    adapter: Adapter,
    prompts: Sequence,
    temperatures=(0.0, 0.3, 0.7, 1.0),
    threshold: float = DEFAULTS.threshold,
    max_draft: int = DEFAULTS.max_draft,
    max_new_tokens: int = 64,
    top_p: float = 1.0,
    seed: int = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """Kangaroo at each temperature (greedy at 0, speculative sampling above) over `prompts`.

    Columns: method, temperature, mean_accepted (tokens per verification round, bonus included),
    acceptance_rate (share of drafts accepted), drafts, rounds, tokens."""
    rows = []
    bar = progress_bar(
        None, progress, "Kangaroo at each temperature", "generation", total=len(temperatures) * len(prompts)
    )
    for t in temperatures:
        bar.set_postfix_str(f"temperature {t}")
        results = []
        for i, p in enumerate(prompts):
            results.append(
                generate(
                    model,
                    p,
                    adapter=adapter,
                    temperature=t,
                    top_p=top_p,
                    threshold=threshold,
                    max_draft=max_draft,
                    max_new_tokens=max_new_tokens,
                    seed=seed + i,
                )
            )
            bar.update()
        lengths = [n for r in results for n in r.accept_lengths]
        accepted = [a for r in results for a in r.draft_accepted]
        rows.append(
            {
                "method": "kangaroo",
                "temperature": t,
                "mean_accepted": sum(lengths) / len(lengths) if lengths else math.nan,
                "acceptance_rate": sum(accepted) / len(accepted) if accepted else math.nan,
                "drafts": len(accepted),
                "rounds": len(lengths),
                "tokens": sum(len(r.token_ids) for r in results),
            }
        )
    bar.close()
    return pd.DataFrame(rows)
