"""kangaroo_lab.plots: every figure from small synthetic frames in the stored files' schemas, the data-prep
helpers against hand-computed values, `build_figures` and `kangaroo-lab figures`. CPU, seconds."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from kangaroo_lab import plots
from kangaroo_lab.plots import speed, style, trees
from kangaroo_lab.cli import main
from kangaroo_lab.decoding import Round

DEVICE, VERSIONS = "NVIDIA TestCard", "torch 9.9, transformers 9.9, python 3.x"
ENV = {"device": DEVICE, "versions": VERSIONS}
CATS = ["mt_bench", "translation", "summarization", "qa", "math_reasoning", "rag"]
OURS = ["ar", "kangaroo", "pld", "kangaroo-tree", "kangaroo+lookup", "kangaroo-noadapter"]
HF = ["hf", "hf-pld", "hf-earlyexit"]
SPECULATIVE = ["kangaroo", "pld", "kangaroo-tree", "kangaroo+lookup", "kangaroo-noadapter"]  # rounds, tokens per round


# ------------------------------------------------------------------------------------ synthetic frames
def known_trace() -> pd.DataFrame:
    """Three rounds of three drafts (category qa) whose shares are computed by hand in the tests.

    round 1: conf 0.9 0.8 0.3, accepted 1 1 0
    round 2: conf 0.7 0.2 0.9, accepted 1 0 0
    round 3: conf 0.4 0.95 0.5, accepted 0 0 0"""
    conf = [[0.9, 0.8, 0.3], [0.7, 0.2, 0.9], [0.4, 0.95, 0.5]]
    acc = [[1, 1, 0], [1, 0, 0], [0, 0, 0]]
    rows = [
        {
            "category": "qa",
            "question_id": 7,
            "turn": 0,
            "round": r,
            "position": i + 1,
            "confidence": conf[r][i],
            "accepted": acc[r][i],
            **ENV,
        }
        for r in range(3)
        for i in range(3)
    ]
    return pd.DataFrame(rows[::-1])  # stored order must not matter


def random_trace(seed=0, rounds_per_cat=40, gamma=6) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for c, cat in enumerate(CATS):
        for r in range(rounds_per_cat):
            alive = True
            for pos in range(1, gamma + 1):
                ok = rng.random() < 0.75 - 0.05 * c
                conf = float(np.clip(rng.beta(5, 2) if ok else rng.beta(2, 3), 0, 1))
                alive = alive and ok
                rows.append(
                    {
                        "category": cat,
                        "question_id": r // 4,
                        "turn": 0,
                        "round": r,
                        "position": pos,
                        "confidence": conf,
                        "accepted": int(alive),
                        **ENV,
                    }
                )
    return pd.DataFrame(rows)


def summary_frame(with_note=True, methods=tuple(OURS + HF)) -> pd.DataFrame:
    """summary.csv's schema; speedup 1 + 0.1 x (the method's place in `methods`), stored in a scrambled order."""
    rows = []
    for m_i, m in enumerate(methods):
        spec = m in SPECULATIVE
        for c_i, cat in enumerate(CATS + ["overall"]):
            rows.append(
                {
                    "method": m,
                    "category": cat,
                    "questions": 10 if m.startswith("hf") else 20,
                    "tokens_per_s": 300 + 20 * m_i + c_i,
                    "speedup_vs_ar": 1.0 if m == "ar" else 1 + 0.1 * m_i,
                    "speedup_vs_hf": None,
                    "mean_accepted": (1.5 + 0.1 * c_i) if spec else (1.0 if m == "ar" else None),
                    "nodes_per_round": (4.0 + m_i) if spec else None,
                    "draft_steps_per_round": 2.0 if spec else None,
                    "syncs_per_round": 2.5 if m == "kangaroo" else 1.0,
                    **{f"ctar_{w}": (0.8 / w if spec else None) for w in range(1, 7)},
                    "identical_to_ar": (0.75 if m == "pld" else 1.0) if m != "ar" else None,
                    **ENV,
                }
            )
    if with_note:
        rows.append({"method": "note", "category": "hf-pld answered only the first 10 questions per category"})
    return pd.DataFrame(rows).sample(frac=1, random_state=0)  # stored order must not matter


def sweep_exit_frame() -> pd.DataFrame:
    rows = [{"method": "ar", "questions": 7, "tokens_per_s": 300.0, "speedup_vs_ar": 1.0}]
    for layer in range(1, 7):
        rows.append(
            {
                "method": "kangaroo",
                "exit_layer": layer,
                "adapter": "untrained" if layer == 5 else "shipped",
                "threshold": 0.6,
                "max_draft": 6,
                "questions": 7,
                "tokens_per_s": 300 + 10 * layer,
                "speedup_vs_ar": 1 + 0.05 * layer,
                "mean_accepted": 1.5 + 0.1 * layer,
                "drafts_per_round": 2.0,
            }
        )
    rows.append({"method": "ar", "questions": 7, "tokens_per_s": 297.0, "speedup_vs_ar": 0.99})
    return pd.DataFrame([r | ENV for r in rows])


def sweep_threshold_frame() -> pd.DataFrame:
    rows = [{"method": "ar", "questions": 7, "tokens_per_s": 300.0, "speedup_vs_ar": 1.0}]
    for eta in [round(0.1 * i, 1) for i in range(10)]:
        for gamma in range(2, 11):
            rows.append(
                {
                    "method": "kangaroo",
                    "exit_layer": 2,
                    "adapter": "shipped",
                    "threshold": eta,
                    "max_draft": gamma,
                    "questions": 7,
                    "tokens_per_s": 300.0,
                    "speedup_vs_ar": 1 + eta * (1 - abs(gamma - 6) / 10),
                    "mean_accepted": 1 + gamma / 10,
                    "drafts_per_round": gamma * (1 - eta),
                }
            )
    rows.append({"method": "ar", "questions": 7, "tokens_per_s": 301.0, "speedup_vs_ar": 1.003})
    return pd.DataFrame([r | ENV for r in rows])


ROWS = [1, 2, 4, 8, 16, 32, 64, 128]
SHAPES = {"smollm2-135m-instruct": 2.0, "vicuna-7b-shaped (random weights)": 10.0}  # shape -> full(1) ms
STEP_SHARE = {"full": 1.0, "verify": 0.9, "draft": 0.2, "shallow": 0.1}  # step ms at one row ÷ full(1) ms


def step_ms(shape: str, step: str, rows: int) -> float:
    """Synthetic step time: full(1) x the step's share x (1 + (rows - 1) / 254): 1.5x from 1 to 128 rows."""
    return SHAPES[shape] * STEP_SHARE[step] * (1 + (rows - 1) / 254)


def step_times_frame() -> pd.DataFrame:
    rows = [
        {"model": shape.split(" ")[0], "shape": shape, "step": step, "tokens": r, "ms": step_ms(shape, step, r)}
        for shape in SHAPES
        for step in STEP_SHARE
        for r in ROWS
    ]
    return pd.DataFrame([r | ENV for r in rows])


def projection_frame(methods=tuple(SPECULATIVE)) -> pd.DataFrame:
    """projection_7b.csv's schema: speedup = tokens per round x full ms ÷ round ms, as costs.project_stored writes."""
    rows = []
    for m_i, m in enumerate(methods):
        for c_i, c in enumerate(CATS + ["overall"]):
            tokens, round_ms = 1.5 + 0.5 * m_i + 0.05 * c_i, 11.0 + m_i
            rows.append(
                {
                    "method": m,
                    "category": c,
                    "rounds": 100,
                    "mean_accepted": tokens,
                    "mean_draft_steps": 2.0,
                    "round_ms": round_ms,
                    "full_ms": 10.0,
                    "projected_ar_tokens_per_s": 100.0,
                    "projected_tokens_per_s": 100 * tokens * 10 / round_ms,
                    "projected_speedup": tokens * 10 / round_ms,
                    "source": "vicuna-7b-shaped step times x smollm2 rounds",
                    **ENV,
                }
            )
    return pd.DataFrame(rows)


def sweep_tree_frame(lookup=True) -> pd.DataFrame:
    """sweep_tree.csv's schema: the grids of the trees (budget 16/32 x depth 2/3, top-k 4, η 0, device) and variants.
    Speedups: kangaroo-tree 1 + budget / 100 + depth / 10 (best 32, 3: 1.62); kangaroo+lookup 2 + the same
    (best 2.62); pld 2.5 .. 2.7; the tree's top-k 2 variant 1.7 beats its grid."""
    base = {
        "exit_layer": 2,
        "adapter": "shipped",
        "questions": 6,
        "tokens_per_s": 300.0,
        "mean_accepted": 2.0,
        "drafts_per_round": 2.0,
        "nodes_per_round": 10.0,
        "syncs_per_round": 1.0,
    }
    rows = [
        {
            "method": "ar",
            "questions": 6,
            "tokens_per_s": 300.0,
            "speedup_vs_ar": 1.0,
            "mean_accepted": 1.0,
            "syncs_per_round": 1.0,
        }
    ]
    rows += [
        base
        | {
            "method": "pld",
            "exit_layer": None,
            "adapter": None,
            "threshold": 0.6,
            "max_draft": 6,
            "top_k": 4,
            "node_budget": 32,
            "lookup_tokens": n,
            "early_exit": "host",
            "speedup_vs_ar": 2.5 + n / 160,
        }
        for n in (8, 16, 32)
    ]
    methods = ("kangaroo-tree", "kangaroo+lookup") if lookup else ("kangaroo-tree",)
    for m in methods:
        lookup_tokens, offset = (16, 1.0) if m == "kangaroo+lookup" else (8, 0.0)
        rows += [
            base
            | {
                "method": m,
                "threshold": 0.0,
                "max_draft": d,
                "top_k": 4,
                "node_budget": b,
                "lookup_tokens": lookup_tokens,
                "early_exit": "device",
                "speedup_vs_ar": 1 + offset + b / 100 + d / 10,
            }
            for b in (16, 32)
            for d in (2, 3)
        ]
        rows.append(
            base
            | {
                "method": m,
                "threshold": 0.0,
                "max_draft": 3,
                "top_k": 2,
                "node_budget": 32,
                "lookup_tokens": lookup_tokens,
                "early_exit": "device",
                "speedup_vs_ar": 1.7 + offset,
            }
        )
        rows.append(
            base
            | {
                "method": m,
                "threshold": 0.1,
                "max_draft": 6,
                "top_k": 4,
                "node_budget": 32,
                "lookup_tokens": lookup_tokens,
                "early_exit": "host",
                "speedup_vs_ar": 1.1 + offset,
                "syncs_per_round": 3.5,
            }
        )
    rows += [
        base
        | {
            "method": "kangaroo",
            "threshold": 0.6,
            "max_draft": 6,
            "top_k": 4,
            "node_budget": 32,
            "lookup_tokens": 8,
            "early_exit": exit_,
            "speedup_vs_ar": speedup,
        }
        for exit_, speedup in (("device", 0.8), ("host", 1.2))
    ]
    rows.append(
        {
            "method": "ar",
            "questions": 6,
            "tokens_per_s": 290.0,
            "speedup_vs_ar": 0.97,
            "mean_accepted": 1.0,
            "syncs_per_round": 1.0,
        }
    )
    return pd.DataFrame([r | ENV for r in rows])


def chain_round() -> Round:
    """kangaroo: six drafts in a chain, the first three accepted, then the target's token 7."""
    return Round(
        drafts=[1, 2, 3, 4, 5, 6], confidences=[0.9, 0.8, 0.7, 0.4, 0.3, 0.2], accepted=3, token=7, draft_steps=6
    )


def tree_round() -> Round:
    """kangaroo+lookup: an adapter tree (4 children of the root, 4 or 2 below each, 2 below the first 8 of those:
    32 nodes) and a lookup branch of 8 tokens from the root; the lookup branch's first 5 tokens accepted."""
    drafts, parents, conf, sources = [], [], [], []

    def add(parent, token, c, source="adapter"):
        drafts.append(token), parents.append(parent), conf.append(c), sources.append(source)
        return len(drafts) - 1

    level1 = [add(-1, 10 + i, 0.5 / (i + 1)) for i in range(4)]
    level2 = [add(p, 20 + k, 0.3 / (k + 1)) for j, p in enumerate(level1) for k in range(4 if j < 2 else 2)]
    for p in level2[:8]:
        add(p, 40, 0.2), add(p, 41, 0.1)
    lookup, parent = [], -1
    for i in range(8):
        parent = add(parent, 60 + i, float("nan"), "lookup")
        lookup.append(parent)
    return Round(
        drafts=drafts,
        confidences=conf,
        accepted=5,
        token=99,
        parents=parents,
        path=lookup[:5],
        sources=sources,
        draft_steps=3,
    )


def training_curves_frame() -> pd.DataFrame:
    rows = []
    for layer, variant, steps in ((2, "attention", 300), (1, "attention", 300), (2, "none", 0)):
        for step in range(0, steps + 1, 100):
            rows.append(
                {
                    "exit_layer": layer,
                    "variant": variant,
                    "steps_total": steps,
                    "lr_max": 0.003,
                    "step": step,
                    "expected_accept": 0.1 + step / 1000,
                    "loss": 16 / (1 + step / 50),
                    "lr": None if step == 0 else 0.003,
                    "tokens": None if step == 0 else step * 1000,
                    "top1": 0.1 + step / 800,
                    "train_loss": None if step == 0 else 5.0,
                    "device": DEVICE,
                    "torch": "9.9",
                    "transformers": "9.9",
                }
            )
    return pd.DataFrame(rows)


def ablation_frame() -> pd.DataFrame:
    rows = []
    for layer, variant, steps, shipped in (
        (2, "attention", 3000, True),
        (2, "linear", 1500, True),
        (1, "attention", 1500, True),
        (2, "attention", 1500, False),
    ):
        rows.append(
            {
                "exit_layer": layer,
                "variant": variant,
                "steps": steps,
                "lr": 0.003,
                "batch_size": 48,
                "parameters": 1328256,
                "top1": 0.6,
                "expected_accept": 0.55,
                "heldout_loss": 2.6,
                **{f"accept_pos{i}": 0.5 / i for i in range(1, 7)},
                "mean_accepted_eta0": 1.97,
                "train_response_tokens": 10,
                "tokens_seen": 100,
                "minutes": 3.9,
                "shipped": shipped,
                "device": DEVICE,
                "torch": "9.9",
                "transformers": "9.9",
            }
        )
    return pd.DataFrame(rows)


STORED = {  # relative path -> synthetic frame, for build_figures
    "training_curves.csv": training_curves_frame,
    "adapter_ablation.csv": ablation_frame,
    "bench/draft_trace.csv": random_trace,
    "bench/summary.csv": summary_frame,
    "bench/sweep_exit_layer.csv": sweep_exit_frame,
    "bench/sweep_threshold.csv": sweep_threshold_frame,
    "bench/step_times.csv": step_times_frame,
    "bench/projection_7b.csv": projection_frame,
    "bench/sweep_tree.csv": sweep_tree_frame,
}


def write_stored(data_dir, names=tuple(STORED)):
    for name in names:
        path = data_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        STORED[name]().to_csv(path, index=False)


def texts(fig: Figure) -> str:
    """Every piece of text on the figure (titles, labels, footer, annotations, legends), joined."""
    return "\n".join(t.get_text() for t in fig.findobj(matplotlib.text.Text))


def title(fig: Figure) -> str:
    """The figure's title on one line (`_finish` wraps long titles)."""
    return fig._suptitle.get_text().replace("\n", " ")


def close(fig):
    matplotlib.pyplot.close(fig)


# ------------------------------------------------------------------------------------ helpers, by hand
def test_position_acceptance_by_hand():
    table = plots.position_acceptance(known_trace())
    assert table["position"].tolist() == [1, 2, 3]
    assert table["drafts"].tolist() == [3, 3, 3]
    np.testing.assert_allclose(table["acceptance"], [2 / 3, 1 / 3, 0])
    np.testing.assert_allclose(table["conditional"], [2 / 3, 1 / 2, 0])  # reached by 3, 2, 1 rounds


def test_position_acceptance_by_category_splits():
    trace = pd.concat([known_trace(), known_trace().assign(category="rag", accepted=1)])
    table = plots.position_acceptance(trace, by="category").set_index(["category", "position"])
    np.testing.assert_allclose(table.loc["qa", "acceptance"], [2 / 3, 1 / 3, 0])
    np.testing.assert_allclose(table.loc["rag", "acceptance"], [1, 1, 1])


def test_ctar_from_trace_by_hand():
    t = plots.ctar_from_trace(known_trace(), windows=[1, 2, 3])
    np.testing.assert_allclose(t["ctar"], [2 / 3, 1 / 3, 0])
    assert t["rounds"].tolist() == [3, 3, 3]


def test_ctar_from_trace_ignores_acceptances_after_a_rejection():
    trace = known_trace()
    trace.loc[(trace["round"] == 2) & (trace["position"] == 2), "accepted"] = 1  # 0, 1, 0: not a run of 1
    np.testing.assert_allclose(plots.ctar_from_trace(trace, windows=[1])["ctar"], [2 / 3])


def test_threshold_tradeoff_at_zero_changes_nothing():
    t = plots.threshold_tradeoff(known_trace(), 0.0)
    assert t["accepted_kept"] == 1.0 and t["rejected_avoided"] == 0.0 and t["drafts_per_round"] == 3.0


def test_threshold_tradeoff_by_hand():
    # eta 0.5: round 1 drafts all 3; round 2 stops after its 0.2 draft (2); round 3 after its 0.4 draft (1)
    t = plots.threshold_tradeoff(known_trace(), 0.5)
    assert t["accepted_kept"] == 1.0
    assert t["rejected_avoided"] == pytest.approx(3 / 6)
    assert t["drafts_per_round"] == pytest.approx(2.0)
    # eta 0.95: round 1 stops after its 0.9 draft, so its accepted second draft is lost
    t = plots.threshold_tradeoff(known_trace(), 0.95)
    assert t["accepted_kept"] == pytest.approx(2 / 3) and t["rejected_avoided"] == pytest.approx(5 / 6)


def test_threshold_above_every_confidence_proposes_only_the_first_draft():
    trace = random_trace()
    t = plots.threshold_tradeoff(trace, 1.01)
    assert t["drafts_per_round"] == 1.0
    first = trace[trace["position"] == 1]
    assert t["accepted_kept"] == pytest.approx(first["accepted"].sum() / trace["accepted"].sum())
    curve = plots.tradeoff_curve(trace)
    assert len(curve) == 101 and curve["threshold"].iloc[-1] == 1.0
    assert curve["accepted_kept"].is_monotonic_decreasing and curve["rejected_avoided"].is_monotonic_increasing


def test_step_time_ratios_are_multiples_of_full_1():
    t = plots.step_time_ratios(step_times_frame()).set_index(["shape", "step", "tokens"])
    shape = "smollm2-135m-instruct"
    assert t.loc[(shape, "full", 1), "ratio"] == pytest.approx(1.0)
    assert t.loc[(shape, "full", 128), "ratio"] == pytest.approx(1.5)
    assert t.loc[(shape, "verify", 65 - 1), "ratio"] == pytest.approx(0.9 * (1 + 63 / 254))
    assert t.loc[("vicuna-7b-shaped (random weights)", "draft", 1), "full_ms"] == pytest.approx(10.0)


def test_provenance_and_notes():
    assert plots.provenance(summary_frame()) == f"{DEVICE} · {VERSIONS}"
    assert plots.provenance(ablation_frame()) == f"{DEVICE} · torch 9.9, transformers 9.9"
    rows, notes = plots.split_notes(summary_frame())
    assert "note" not in set(rows["method"]) and notes == ["hf-pld answered only the first 10 questions per category"]


# ------------------------------------------------------------------------------------ figures
def bar_color(method):
    return matplotlib.colors.to_rgb(plots.METHOD_COLORS[method])


def test_every_bench_method_has_a_label_and_its_own_colour():
    from kangaroo_lab.bench import METHODS

    assert set(METHODS) <= set(plots.METHOD_LABELS) and set(METHODS) <= set(plots.METHOD_COLORS)
    assert len({plots.METHOD_COLORS[m] for m in METHODS}) == len(METHODS)
    assert plots.METHOD_ORDER[:6] == tuple(OURS) and plots.METHOD_ORDER[6:] == tuple(HF)


def test_speedup_by_category_bars_in_method_order():
    fig = plots.speedup_by_category(summary_frame())
    ax, bx = fig.axes
    n_cats = len(CATS) + 1
    assert len(ax.patches) == 8 * n_cats  # every method but ar, per category and overall
    assert len(bx.patches) == 5 * n_cats  # hf's methods have no rounds: no tokens per round
    kangaroo = [p for p in ax.patches if p.get_facecolor()[:3] == bar_color("kangaroo")]
    assert [round(p.get_height(), 3) for p in kangaroo] == [1.1] * n_cats
    assert [t.get_text() for t in ax.get_xticklabels()][-1] == "Overall"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [plots.METHOD_LABELS[m] for m in OURS + HF]  # the ar line first, then the bars
    first_group = sorted((ax.patches[i * n_cats] for i in range(8)), key=lambda p: p.get_x())  # MT-Bench's bars
    assert [p.get_facecolor()[:3] for p in first_group] == [bar_color(m) for m in OURS[1:] + HF]
    assert DEVICE in texts(fig) and VERSIONS in texts(fig) and "only the first 10 questions" in texts(fig)
    assert "pld 75%" in texts(fig)  # identical to ar
    close(fig)


def test_summary_figures_with_few_methods():
    summary = summary_frame(with_note=False, methods=("ar", "kangaroo+lookup"))
    fig = plots.speedup_by_category(summary)
    assert len(fig.axes[0].patches) == len(CATS) + 1
    close(fig)
    fig = plots.ctar(summary)
    assert len(fig.axes[0].lines) == 1 and "no per-category Kangaroo rows" in texts(fig)
    close(fig)
    fig = plots.methods_overview(summary)
    assert len(fig.axes[0].patches) == 2
    close(fig)


def test_ctar_lines_from_summary_and_trace():
    fig = plots.ctar(summary_frame(), known_trace())
    ax, bx = fig.axes
    assert len(ax.lines) == len(SPECULATIVE) + 1  # the methods with rounds, the trace
    assert [line.get_label() for line in ax.lines[:-1]] == [plots.METHOD_LABELS[m] for m in SPECULATIVE]
    np.testing.assert_allclose(ax.lines[-1].get_ydata(), [2 / 3, 1 / 3, 0, 0, 0, 0])
    assert len(bx.lines) == len(CATS)
    assert "no round emitted" not in texts(fig)
    close(fig)


def test_ctar_notes_a_method_whose_rounds_are_capped():
    summary = summary_frame(with_note=False, methods=("ar", "kangaroo-tree"))
    summary.loc[summary["method"] == "kangaroo-tree", ["ctar_3", "ctar_4", "ctar_5", "ctar_6"]] = 0.0
    fig = plots.ctar(summary)
    assert "Kangaroo tree: no round emitted more than 3 tokens" in texts(fig)
    close(fig)


def test_methods_overview():
    fig = plots.methods_overview(summary_frame())
    ax, bx, cx = fig.axes
    methods = OURS + HF
    assert [t.get_text() for t in ax.get_yticklabels()] == [plots.METHOD_LABELS[m] for m in methods]
    np.testing.assert_allclose([p.get_width() for p in ax.patches], [1.0] + [1 + 0.1 * i for i in range(1, 9)])
    assert [p.get_facecolor()[:3] for p in ax.patches] == [bar_color(m) for m in methods]
    tokens = [p.get_width() for p in bx.patches]
    np.testing.assert_allclose(tokens[:6], [1.0] + [1.5 + 0.1 * 6] * 5)  # overall rows; ar: one token per step
    assert all(np.isnan(tokens[6:]))  # hf methods: no rounds
    table = [t.get_text() for t in cx.texts]
    assert "host syncs\nper round" in table and "2.50" in table  # kangaroo's syncs
    red = [t.get_text() for t in cx.texts if t.get_color() == plots.REJECTED_COLOR]
    assert red == ["75%"]  # pld did not always answer as ar did
    assert "(20 questions)" in fig._suptitle.get_text() and DEVICE in texts(fig)
    close(fig)


def test_trace_figures():
    trace = random_trace()
    fig = plots.acceptance_by_position(trace)
    assert len(fig.axes) == 2 and len(fig.axes[0].patches) == 6 and len(fig.axes[1].lines) == len(CATS)
    np.testing.assert_allclose(
        [p.get_height() for p in fig.axes[0].patches], plots.position_acceptance(trace)["acceptance"]
    )
    close(fig)
    fig = plots.confidence_accepted_vs_rejected(trace)
    assert len(fig.axes) == 2 and len(fig.axes[0].patches) == 2 * (len(plots.BINS) - 1)
    heights = np.array([p.get_height() for p in fig.axes[0].patches]).reshape(2, -1)
    np.testing.assert_allclose(heights.sum(1), [1, 1])  # each group sums to one
    close(fig)
    fig = plots.confidence_by_category(trace, threshold=0.3)
    assert sum(ax.get_visible() and ax.axison for ax in fig.axes) == len(CATS)
    assert all(any(np.allclose(line.get_xdata(), 0.3) for line in ax.lines) for ax in fig.axes if ax.axison)
    close(fig)
    fig = plots.eta_tradeoff(trace, threshold=0.6)
    assert len(fig.axes) == 3  # two panels and the drafts-per-round axis
    assert "η = 0.6" in texts(fig)
    close(fig)


def test_sweep_figures():
    fig = plots.speedup_vs_exit_ratio(sweep_exit_frame(), n_layers=30)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[0].get_xdata(), np.array([1, 2, 3, 4, 6]) / 30)  # trained adapters joined
    joined = [line for line in ax.lines if line.get_linestyle() not in ("None", "", " ") and len(line.get_xdata()) > 1]
    assert not any(np.isclose(line.get_xdata(), 5 / 30).any() for line in joined)  # untrained l=5: a lone marker
    assert "untrained adapter" in texts(fig) and "0.99x" in texts(fig)  # l=5 and the drift note
    close(fig)
    fig = plots.eta_gamma_heatmap(sweep_threshold_frame())
    ax = fig.axes[0]
    assert ax.images[0].get_array().shape == (10, 9)
    assert len([t for t in ax.texts]) == 90  # every cell annotated
    assert "η = 0.9, γ = 6" in texts(fig)  # the best cell
    close(fig)


def test_tree_sweep_heatmaps_variants_and_best():
    sweep = sweep_tree_frame()
    fig = plots.tree_sweep(sweep)
    tree, lookup, bars = fig.axes[0], fig.axes[1], fig.axes[-1]  # between them: the heatmaps' colour bars
    for ax, best in ((tree, 1.62), (lookup, 2.62)):
        grid = ax.images[0].get_array()
        assert grid.shape == (2, 2)  # depth 2, 3 x budget 16, 32
        assert grid.max() == pytest.approx(best) and grid[1, 1] == pytest.approx(best)  # depth 3, budget 32
        boxes = [p for p in ax.patches if matplotlib.colors.to_rgb(p.get_edgecolor()) == (1, 0, 0)]
        assert len(boxes) == 1 and boxes[0].get_xy() == (0.5, 0.5)  # the red box on the best cell
    labels = [t.get_text() for t in bars.get_yticklabels()]
    # ar out; 3 pld, 2 kangaroo, per tree 2 variants + its best grid cell
    assert len(bars.patches) == len(labels) == 3 + 2 + 2 * 3
    assert sum("(best of the heatmap)" in label for label in labels) == 2
    assert "Kangaroo tree: top-k 2, depth 3, budget 32" in labels
    assert "Kangaroo tree: top-k 4, depth ≤ 6, budget 32, η 0.1 host exit" in labels
    assert "Kangaroo (chain): γ 6, η 0.6 device mask" in labels
    starred = [t.get_text() for t in bars.texts if t.get_text().startswith("★")]
    assert starred == ["★ 2.70× · 2.00 tok/round"]  # pld with 32 lookup tokens, the best of the sweep
    bold = [t.get_text() for t in bars.get_yticklabels() if t.get_fontweight() == "bold"]
    assert bold == ["prompt lookup (pld): lookup 32 tokens"]
    assert any("3.50 host syncs/round" in t.get_text() for t in bars.texts)  # host exit: syncs shown
    assert "best setting of the sweep (★): prompt lookup (pld), lookup 32 tokens" in texts(fig)
    assert "0.97x its first speed" in texts(fig)  # the closing ar row
    close(fig)


def test_tree_sweep_without_a_method():
    fig = plots.tree_sweep(sweep_tree_frame(lookup=False))
    assert "no kangaroo+lookup rows in this sweep" in texts(fig)
    assert fig.axes[0].images[0].get_array().shape == (2, 2)
    close(fig)
    only_ar = sweep_tree_frame()
    fig = plots.tree_sweep(only_ar[only_ar["method"] == "ar"])
    assert "no settings but ar in this sweep" in texts(fig)
    close(fig)


def test_step_times_against_rows():
    fig = plots.step_times(step_times_frame())
    assert len(fig.axes) == 2  # one panel per shape
    for ax, (shape, full_ms) in zip(fig.axes, SHAPES.items()):
        assert shape in ax.get_title() and f"full(1) = {full_ms:.2f} ms" in ax.get_title()
        assert ax.get_xscale() == "log"
        assert [t.get_text() for t in ax.get_xticklabels()] == [str(r) for r in ROWS]
        steps = [line for line in ax.lines if len(line.get_xdata()) == len(ROWS)]
        assert len(steps) == 4
        for line, step in zip(steps, plots.STEP_STYLES):  # time ÷ full(1) of its own shape
            np.testing.assert_allclose(line.get_ydata(), [step_ms(shape, step, r) / full_ms for r in ROWS])
        assert "1.50×" in [t.get_text() for t in ax.texts]  # full(128) ÷ full(1), at the line's end
    assert "full(128) costs 1.50× full(1)" in texts(fig)
    close(fig)


def test_projection_bars_per_method_and_category():
    projection = projection_frame()
    fig = plots.projection_7b(projection)
    ax, bx = fig.axes
    assert fig._suptitle.get_text().startswith("PROJECTION")
    assert "PROJECTED" in ax.get_ylabel()
    assert len(ax.patches) == 5 * (len(CATS) + 1)
    assert all(p.get_hatch() == "//" for p in ax.patches)  # hatched: not a measurement
    tree = [p.get_height() for p in ax.patches if p.get_facecolor()[:3] == bar_color("kangaroo-tree")]
    np.testing.assert_allclose(tree, projection.loc[projection["method"] == "kangaroo-tree", "projected_speedup"])
    points = [line for line in bx.lines if line.get_marker() == "o"]
    assert len(points) == 5  # one per method, overall
    assert "source: vicuna-7b-shaped step times x smollm2 rounds" in texts(fig)
    close(fig)
    legacy = projection_frame(methods=("kangaroo",)).drop(columns="method")  # before the trees: no method column
    fig = plots.projection_7b(legacy)
    assert len(fig.axes[0].patches) == len(CATS) + 1
    close(fig)


def test_tree_layout_by_hand():
    # drafts 0, 1 below the root; 2, 3 below 0; the target's token below 0, first among its siblings
    depth, row = trees._tree_layout([-1, -1, 0, 0], target_parent=0)
    np.testing.assert_array_equal(depth, [1, 1, 2, 2, 2, 0])  # drafts 0..3, the target, the root
    np.testing.assert_array_equal(row, [1, 3, 1, 2, 0, 2])  # leaves: target 0, draft 2 at 1, 3 at 2, 1 at 3


def node_texts(fig):
    """The boxed texts of a round_tree (the nodes), by their text."""
    return [
        t
        for t in fig.axes[0].texts
        if t.get_bbox_patch() is not None and t.get_text() and t.get_bbox_patch().get_facecolor()[3] == 1
    ]


def test_round_tree_of_a_chain():
    fig = plots.round_tree(chain_round(), label=lambda t: f"t{t}")
    ax = fig.axes[0]
    names = [t.get_text() for t in node_texts(fig)]
    assert names[:6] == [f"t{i}" for i in range(1, 7)] and "root" in names and "t7" in names
    thick = [line for line in ax.lines if line.get_linewidth() > 2]
    assert len(thick) == 3 + 1  # the accepted path's edges and the edge to the target's token
    accepted = [t for t in node_texts(fig) if t.get_bbox_patch().get_linewidth() == 2.0]
    assert [t.get_text() for t in accepted] == ["t1", "t2", "t3"]
    assert {t.get_text() for t in ax.texts} >= {"0.90", "0.20"}  # confidences
    target = next(t for t in node_texts(fig) if t.get_text() == "t7")
    assert target.get_position()[0] == 4  # right after the last accepted draft (depth 3)
    assert "3 accepted + the target's token = 4 tokens" in title(fig)
    close(fig)


def test_round_tree_with_a_lookup_branch():
    rnd = tree_round()
    fig = plots.round_tree(rnd, label=lambda t: f"t{t}")
    ax = fig.axes[0]
    nodes = node_texts(fig)
    assert len(nodes) == len(rnd.drafts) + 2 == 42  # drafts, the root, the target's token
    colours = {t.get_text(): matplotlib.colors.to_hex(t.get_bbox_patch().get_facecolor()) for t in nodes}
    assert colours["t60"] == plots.NODE_COLORS["lookup"] and colours["t10"] == plots.NODE_COLORS["adapter"]
    thick = [line for line in ax.lines if line.get_linewidth() > 2]
    assert len(thick) == 5 + 1
    target = next(t for t in nodes if t.get_text() == "t99")
    assert target.get_position()[0] == 6  # after the 5th lookup token
    positions = [t.get_position() for t in nodes]
    assert len(set(positions)) == len(positions)  # no two nodes on the same spot
    confidences = [t for t in ax.texts if t.get_text().startswith("0.")]
    assert len(confidences) == 32  # the adapter's drafts only: lookup tokens have none
    assert "32 adapter, 8 lookup, 3 draft steps" in title(fig)
    assert {t.get_text() for t in fig.legends[0].get_texts()} >= {"lookup token", "accepted path"}
    close(fig)


def test_training_figures():
    fig = plots.training_curves(training_curves_frame())
    assert len(fig.axes) == 3 and all(len(ax.lines) == 3 for ax in fig.axes)
    assert fig.axes[0].lines[0].get_xdata()[0] == 0  # step 0 has no token count: drawn at 0
    close(fig)
    fig = plots.adapter_ablation(ablation_frame())
    table = fig.axes[0].tables[0]
    assert table[1, 0].get_text().get_text() == "1"  # sorted by exit layer
    assert table[2, 1].get_text().get_text() == "linear"  # smaller adapters first
    close(fig)


def test_notebook_figures():
    layers = pd.DataFrame(
        [
            {"layer": lay, "position": p, "token": tok, "probability": lay / 4, "top1_matches": lay >= 3}
            for lay in range(1, 5)
            for p, tok in enumerate(["The", " sky", "\n"])
        ]
    )
    fig = plots.layer_predictions_heatmap(layers)
    assert fig.axes[0].images[0].get_array().shape == (4, 3)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["The", "␣sky", "⏎"]
    close(fig)
    parts = pd.DataFrame(
        {
            "part": ["embedding", "layers 1-2 (shallow)", "layers 3-30 (deep)", "adapter", "LM head"],
            "ms": [0.01, 0.2, 2.8, 0.1, 0.3],
            "params": [0, 2e6, 1e8, 1.3e6, 2.8e7],
        }
    )
    fig = plots.cost_breakdown(parts)
    assert len(fig.axes[0].patches) == 5 and len(fig.axes[1].patches) == 5
    close(fig)
    dist = pd.DataFrame(
        {"token": list("abcd"), "target_p": [0.4, 0.3, 0.2, 0.1], "empirical_p": [0.41, 0.29, 0.2, 0.1], "n": 2000}
    )
    fig = plots.distribution_check(dist)
    assert len(fig.axes[0].patches) == 8
    close(fig)
    temps = pd.DataFrame(
        {
            "temperature": [0, 0.5, 1.0] * 2,
            "mean_accepted": [2, 1.8, 1.5] * 2,
            "acceptance_rate": [0.5, 0.45, 0.4] * 2,
            "method": ["kangaroo"] * 3 + ["kangaroo-noadapter"] * 3,
        }
    )
    fig = plots.acceptance_vs_temperature(temps)
    assert all(len(ax.lines) == 2 for ax in fig.axes)
    close(fig)
    fig = plots.acceptance_vs_temperature(temps.drop(columns="method").head(3))
    assert all(len(ax.lines) == 1 for ax in fig.axes)
    close(fig)


def test_notebook_figure_fixes():
    """Issue 11: tokens without a glyph are escaped, the tied LM head is counted once, no point is clipped."""
    assert style.token_label("\u2405a") == "\\x05a"  # a control picture (no glyph in DejaVu Sans)
    assert style.token_label("\u4e2d") in ("\u4e2d", "\\u4e2d")  # drawn if the font has it, else escaped
    assert all(
        style._drawable(c) or c not in label for label in (style.token_label("\u2417\u240e\u00e9"),) for c in label
    )
    dist = pd.DataFrame(
        {"token": ["\u2405", "b"], "token_id": [5, 98], "target_p": [0.6, 0.4], "empirical_p": [0.6, 0.4], "n": 100}
    )
    fig = plots.distribution_check(dist)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["\\x05 #5", "b #98"]
    close(fig)
    parts = pd.DataFrame(
        {
            "part": [
                "embedding",
                "shallow layers 1-2",
                "deep layers 3-30",
                "adapter (attention)",
                "final norm + LM head",
            ],
            "ms": [0.01, 1.8, 42.0, 0.5, 6.6],
            "params": [28311552, 7080192, 99122688, 1328256, 28312128],
        }
    )
    fig = plots.cost_breakdown(parts)
    assert fig.axes[1].patches[4].get_facecolor()[:3] == (1.0, 1.0, 1.0)  # hollow: the embedding's weights
    assert "134.5 M parameters, each weight once" in texts(fig) and "counted once" in texts(fig)
    close(fig)
    temps = pd.DataFrame(
        {"temperature": [0, 0.5, 1.0], "mean_accepted": [1.44, 1.34, 1.33], "acceptance_rate": [0.32, 0.27, 0.28]}
    )
    fig = plots.acceptance_vs_temperature(temps)
    assert fig.axes[0].get_ylim()[1] > 1.44 * 1.1  # the highest marker is not cut by the frame
    close(fig)
    fig = plots.step_times(step_times_frame())
    assert "= full(1), one full step over one row" in texts(fig)  # the dotted line says what it is
    top = fig.axes[0].get_ylim()[1]
    for ax in fig.axes[:2]:
        heights = sorted(t.xyann[1] for t in ax.texts if t.get_text().endswith("×"))
        assert len(heights) == 4 and min(np.diff(heights)) >= 0.05 * top - 1e-9  # end labels never overlap
    close(fig)
    assert speed._spread([0.07, 0.08, 1.0], 0.05) == pytest.approx([0.07, 0.12, 1.0])


# ------------------------------------------------------------------------------------ build + CLI
def test_build_figures_writes_present_and_skips_missing(tmp_path):
    data, out = tmp_path / "data", tmp_path / "figs"
    write_stored(data, ["training_curves.csv", "bench/summary.csv"])
    lines = []
    written = plots.build_figures(data, out, log=lines.append)
    stems = ["fig_training_curves", "fig_ctar", "fig_speedup_by_category", "fig_methods"]
    assert sorted(written) == sorted(out / f"{s}.{ext}" for s in stems for ext in ("png", "pdf"))
    assert all(p.stat().st_size > 1000 for p in written)
    assert sum(line.startswith("wrote ") for line in lines) == 8
    skipped = [line for line in lines if line.startswith("skipped ")]
    assert len(skipped) == len(plots.FIGURES) - 4
    tree = next(line for line in skipped if "fig_tree_sweep" in line)
    assert "bench/sweep_tree.csv" in tree and "kangaroo-lab bench --sweep tree" in tree
    eta = next(line for line in skipped if "fig_eta_gamma_heatmap" in line)
    assert str(data / "bench/sweep_threshold.csv") in eta and "kangaroo-lab bench --sweep threshold" in eta
    assert set(plots.missing_inputs(data)) == set(plots.FIGURES) - set(stems)


def test_build_figures_names_the_file_it_cannot_draw(tmp_path):
    data = tmp_path / "data"
    write_stored(data, ["bench/sweep_threshold.csv"])
    pd.DataFrame({"method": ["ar"], "oops": [1]}).to_csv(data / "bench/sweep_threshold.csv", index=False)
    with pytest.raises(ValueError, match="sweep_threshold.csv"):
        plots.build_figures(data, tmp_path / "figs", log=None)


def test_cli_figures_strict_exit_codes(tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "figs"
    write_stored(data, ["adapter_ablation.csv"])
    assert main(["figures", "--data", str(data), "--out", str(out)]) == 0
    assert main(["figures", "--data", str(data), "--out", str(out), "--strict"]) == 2
    printed = capsys.readouterr().out
    assert f"wrote {out / 'fig_adapter_ablation.png'}" in printed and "skipped fig_projection_7b" in printed
    write_stored(data)
    assert main(["figures", "--data", str(data), "--out", str(out), "--strict"]) == 0
    assert len(list(out.glob("*.png"))) == len(list(out.glob("*.pdf"))) == len(plots.FIGURES)
    assert main(["figures", "--data", str(tmp_path / "nowhere")]) == 2
