"""plots.py: every figure from small synthetic frames in the stored files' schemas, the data-prep
helpers against hand-computed values, `build_figures` and `kangaroo-lab figures`. CPU, seconds."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from kangaroo_lab import plots
from kangaroo_lab.cli import main

DEVICE, VERSIONS = "NVIDIA TestCard", "torch 9.9, transformers 9.9, python 3.x"
ENV = {"device": DEVICE, "versions": VERSIONS}
CATS = ["mt_bench", "translation", "summarization", "qa", "math_reasoning", "rag"]


# ------------------------------------------------------------------------------------ synthetic frames
def known_trace() -> pd.DataFrame:
    """Three rounds of three drafts (category qa) whose shares are computed by hand in the tests.

    round 1: conf 0.9 0.8 0.3, accepted 1 1 0
    round 2: conf 0.7 0.2 0.9, accepted 1 0 0
    round 3: conf 0.4 0.95 0.5, accepted 0 0 0"""
    conf = [[0.9, 0.8, 0.3], [0.7, 0.2, 0.9], [0.4, 0.95, 0.5]]
    acc = [[1, 1, 0], [1, 0, 0], [0, 0, 0]]
    rows = [{"category": "qa", "question_id": 7, "turn": 0, "round": r, "position": i + 1,
             "confidence": conf[r][i], "accepted": acc[r][i], **ENV} for r in range(3) for i in range(3)]
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
                rows.append({"category": cat, "question_id": r // 4, "turn": 0, "round": r, "position": pos,
                             "confidence": conf, "accepted": int(alive), **ENV})
    return pd.DataFrame(rows)


def summary_frame(with_note=True) -> pd.DataFrame:
    methods = ["ar", "kangaroo", "kangaroo-noadapter", "hf", "hf-pld", "hf-earlyexit"]
    rows = []
    for m_i, m in enumerate(methods):
        for c_i, cat in enumerate(CATS + ["overall"]):
            spec = m in ("kangaroo", "kangaroo-noadapter")
            rows.append({"method": m, "category": cat, "questions": 10 if m.startswith("hf") else 20,
                         "tokens_per_s": 300 + 20 * m_i + c_i, "speedup_vs_ar": 1.0 if m == "ar" else 1 + 0.1 * m_i,
                         "speedup_vs_hf": None, "mean_accepted": (1.5 + 0.1 * c_i) if spec else (1.0 if m == "ar" else None),
                         **{f"ctar_{w}": (0.8 / w if spec else None) for w in range(1, 7)},
                         "identical_to_ar": 1.0 if m != "ar" else None, **ENV})
    if with_note:
        rows.append({"method": "note", "category": "hf-pld answered only the first 10 questions per category"})
    return pd.DataFrame(rows)


def sweep_exit_frame() -> pd.DataFrame:
    rows = [{"method": "ar", "questions": 7, "tokens_per_s": 300.0, "speedup_vs_ar": 1.0}]
    for layer in range(1, 7):
        rows.append({"method": "kangaroo", "exit_layer": layer, "adapter": "untrained" if layer == 5 else "shipped",
                     "threshold": 0.6, "max_draft": 6, "questions": 7, "tokens_per_s": 300 + 10 * layer,
                     "speedup_vs_ar": 1 + 0.05 * layer, "mean_accepted": 1.5 + 0.1 * layer, "drafts_per_round": 2.0})
    rows.append({"method": "ar", "questions": 7, "tokens_per_s": 297.0, "speedup_vs_ar": 0.99})
    return pd.DataFrame([r | ENV for r in rows])


def sweep_threshold_frame() -> pd.DataFrame:
    rows = [{"method": "ar", "questions": 7, "tokens_per_s": 300.0, "speedup_vs_ar": 1.0}]
    for eta in [round(0.1 * i, 1) for i in range(10)]:
        for gamma in range(2, 11):
            rows.append({"method": "kangaroo", "exit_layer": 2, "adapter": "shipped", "threshold": eta,
                         "max_draft": gamma, "questions": 7, "tokens_per_s": 300.0,
                         "speedup_vs_ar": 1 + eta * (1 - abs(gamma - 6) / 10), "mean_accepted": 1 + gamma / 10,
                         "drafts_per_round": gamma * (1 - eta)})
    rows.append({"method": "ar", "questions": 7, "tokens_per_s": 301.0, "speedup_vs_ar": 1.003})
    return pd.DataFrame([r | ENV for r in rows])


def step_times_frame() -> pd.DataFrame:
    rows = []
    for shape, full in (("smollm2-135m", 2.0), ("vicuna-7b-shaped (random weights)", 10.0)):
        model = shape.split(" ")[0]
        rows += [{"model": model, "shape": shape, "step": "full", "tokens": 1, "ms": full},
                 {"model": model, "shape": shape, "step": "draft", "tokens": 1, "ms": full / 10}]
        rows += [{"model": model, "shape": shape, "step": "verify", "tokens": k + 1, "ms": full * (1 + 0.05 * k)}
                 for k in range(9)]
    return pd.DataFrame([r | ENV for r in rows])


def projection_frame() -> pd.DataFrame:
    rows = [{"category": c, "rounds": 100, "mean_accepted": 2.0, "mean_drafts": 3.0, "draft_ms": 1.0,
             "verify_ms": 12.0, "full_ms": 10.0, "projected_ar_tokens_per_s": 100.0,
             "projected_kangaroo_tokens_per_s": 100 * (1.2 + 0.05 * i), "projected_speedup": 1.2 + 0.05 * i,
             "source": "vicuna-7b-shaped step times x smollm2 traces", **ENV} for i, c in enumerate(CATS + ["overall"])]
    return pd.DataFrame(rows)


def training_curves_frame() -> pd.DataFrame:
    rows = []
    for layer, variant, steps in ((2, "attention", 300), (1, "attention", 300), (2, "none", 0)):
        for step in range(0, steps + 1, 100):
            rows.append({"exit_layer": layer, "variant": variant, "steps_total": steps, "lr_max": 0.003, "step": step,
                         "expected_accept": 0.1 + step / 1000, "loss": 16 / (1 + step / 50), "lr": None if step == 0 else 0.003,
                         "tokens": None if step == 0 else step * 1000, "top1": 0.1 + step / 800,
                         "train_loss": None if step == 0 else 5.0, "device": DEVICE, "torch": "9.9", "transformers": "9.9"})
    return pd.DataFrame(rows)


def ablation_frame() -> pd.DataFrame:
    rows = []
    for layer, variant, steps, shipped in ((2, "attention", 3000, True), (2, "linear", 1500, True),
                                           (1, "attention", 1500, True), (2, "attention", 1500, False)):
        rows.append({"exit_layer": layer, "variant": variant, "steps": steps, "lr": 0.003, "batch_size": 48,
                     "parameters": 1328256, "top1": 0.6, "expected_accept": 0.55, "heldout_loss": 2.6,
                     **{f"accept_pos{i}": 0.5 / i for i in range(1, 7)}, "mean_accepted_eta0": 1.97,
                     "train_response_tokens": 10, "tokens_seen": 100, "minutes": 3.9, "shipped": shipped,
                     "device": DEVICE, "torch": "9.9", "transformers": "9.9"})
    return pd.DataFrame(rows)


STORED = {  # relative path -> synthetic frame, for build_figures
    "training_curves.csv": training_curves_frame, "adapter_ablation.csv": ablation_frame,
    "bench/draft_trace.csv": random_trace, "bench/summary.csv": summary_frame,
    "bench/sweep_exit_layer.csv": sweep_exit_frame, "bench/sweep_threshold.csv": sweep_threshold_frame,
    "bench/step_times.csv": step_times_frame, "bench/projection_7b.csv": projection_frame,
}


def write_stored(data_dir, names=tuple(STORED)):
    for name in names:
        path = data_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        STORED[name]().to_csv(path, index=False)


def texts(fig: Figure) -> str:
    """Every piece of text on the figure (titles, labels, footer, annotations, legends), joined."""
    return "\n".join(t.get_text() for t in fig.findobj(matplotlib.text.Text))


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
    assert len(curve) == 101 and curve["eta"].iloc[-1] == 1.0
    assert curve["accepted_kept"].is_monotonic_decreasing and curve["rejected_avoided"].is_monotonic_increasing


def test_step_time_ratios():
    t = plots.step_time_ratios(step_times_frame()).set_index(["shape", "step", "tokens"])
    assert t.loc[("smollm2-135m", "verify", 5), "ratio"] == pytest.approx(1.2)
    assert t.loc[("vicuna-7b-shaped (random weights)", "draft", 1), "ratio"] == pytest.approx(0.1)


def test_provenance_and_notes():
    assert plots.provenance(summary_frame()) == f"{DEVICE} · {VERSIONS}"
    assert plots.provenance(ablation_frame()) == f"{DEVICE} · torch 9.9, transformers 9.9"
    rows, notes = plots.split_notes(summary_frame())
    assert "note" not in set(rows["method"]) and notes == ["hf-pld answered only the first 10 questions per category"]


# ------------------------------------------------------------------------------------ figures
def test_speedup_by_category_bars_and_footer():
    fig = plots.speedup_by_category(summary_frame())
    ax, bx = fig.axes
    n_cats = len(CATS) + 1
    assert len(ax.patches) == 5 * n_cats  # every method but ar, per category and overall
    assert len(bx.patches) == 2 * n_cats  # only kangaroo and kangaroo-noadapter have mean accepted tokens
    kangaroo = [p for p in ax.patches if p.get_facecolor()[:3] == matplotlib.colors.to_rgb(plots.METHOD_COLORS["kangaroo"])]
    assert [round(p.get_height(), 3) for p in kangaroo] == [1.1] * n_cats
    assert [t.get_text() for t in ax.get_xticklabels()][-1] == "Overall"
    assert DEVICE in texts(fig) and VERSIONS in texts(fig) and "only the first 10 questions" in texts(fig)
    close(fig)


def test_ctar_lines_from_summary_and_trace():
    fig = plots.ctar(summary_frame(), known_trace())
    ax, bx = fig.axes
    assert len(ax.lines) == 3  # kangaroo, kangaroo-noadapter, the trace
    np.testing.assert_allclose(ax.lines[-1].get_ydata(), [2 / 3, 1 / 3, 0, 0, 0, 0])
    assert len(bx.lines) == len(CATS)
    close(fig)


def test_trace_figures():
    trace = random_trace()
    fig = plots.acceptance_by_position(trace)
    assert len(fig.axes) == 2 and len(fig.axes[0].patches) == 6 and len(fig.axes[1].lines) == len(CATS)
    np.testing.assert_allclose([p.get_height() for p in fig.axes[0].patches],
                               plots.position_acceptance(trace)["acceptance"])
    close(fig)
    fig = plots.confidence_accepted_vs_rejected(trace)
    assert len(fig.axes) == 2 and len(fig.axes[0].patches) == 2 * (len(plots.BINS) - 1)
    heights = np.array([p.get_height() for p in fig.axes[0].patches]).reshape(2, -1)
    np.testing.assert_allclose(heights.sum(1), [1, 1])  # each group sums to one
    close(fig)
    fig = plots.confidence_by_category(trace)
    assert sum(ax.get_visible() and ax.axison for ax in fig.axes) == len(CATS)
    close(fig)
    fig = plots.eta_tradeoff(trace, eta=0.6)
    assert len(fig.axes) == 3  # two panels and the drafts-per-round axis
    assert "η = 0.6" in texts(fig)
    close(fig)


def test_sweep_figures():
    fig = plots.speedup_vs_exit_ratio(sweep_exit_frame(), n_layers=30)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[0].get_xdata(), np.arange(1, 7) / 30)
    assert "untrained adapter" in texts(fig) and "0.99x" in texts(fig)  # l=5 and the drift note
    close(fig)
    fig = plots.eta_gamma_heatmap(sweep_threshold_frame())
    ax = fig.axes[0]
    assert ax.images[0].get_array().shape == (10, 9)
    assert len([t for t in ax.texts]) == 90  # every cell annotated
    assert "η = 0.9, γ = 6" in texts(fig)  # the best cell
    close(fig)


def test_step_times_and_projection():
    fig = plots.step_times(step_times_frame())
    ax, bx = fig.axes
    assert any(np.allclose(line.get_ydata(), plots.TARGET_VERIFY_RATIO) for line in ax.lines)
    assert len(bx.patches) == 2
    close(fig)
    fig = plots.projection_7b(projection_frame())
    assert "projection" in fig._suptitle.get_text().lower()
    assert len(fig.axes[0].patches) == len(CATS) + 1
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
    layers = pd.DataFrame([{"layer": lay, "position": p, "token": tok, "probability": lay / 4,
                            "top1_matches": lay >= 3} for lay in range(1, 5) for p, tok in enumerate(["The", " sky", "\n"])])
    fig = plots.layer_predictions_heatmap(layers)
    assert fig.axes[0].images[0].get_array().shape == (4, 3)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["The", "␣sky", "⏎"]
    close(fig)
    parts = pd.DataFrame({"part": ["embedding", "layers 1-2 (shallow)", "layers 3-30 (deep)", "adapter", "LM head"],
                          "ms": [0.01, 0.2, 2.8, 0.1, 0.3], "params": [0, 2e6, 1e8, 1.3e6, 2.8e7]})
    fig = plots.cost_breakdown(parts)
    assert len(fig.axes[0].patches) == 5 and len(fig.axes[1].patches) == 5
    close(fig)
    dist = pd.DataFrame({"token": list("abcd"), "target_p": [0.4, 0.3, 0.2, 0.1], "empirical_p": [0.41, 0.29, 0.2, 0.1],
                         "n": 2000})
    fig = plots.distribution_check(dist)
    assert len(fig.axes[0].patches) == 8
    close(fig)
    temps = pd.DataFrame({"temperature": [0, 0.5, 1.0] * 2, "mean_accepted": [2, 1.8, 1.5] * 2,
                          "acceptance_rate": [0.5, 0.45, 0.4] * 2, "method": ["kangaroo"] * 3 + ["kangaroo-noadapter"] * 3})
    fig = plots.acceptance_vs_temperature(temps)
    assert all(len(ax.lines) == 2 for ax in fig.axes)
    close(fig)
    fig = plots.acceptance_vs_temperature(temps.drop(columns="method").head(3))
    assert all(len(ax.lines) == 1 for ax in fig.axes)
    close(fig)


# ------------------------------------------------------------------------------------ build + CLI
def test_build_figures_writes_present_and_skips_missing(tmp_path):
    data, out = tmp_path / "data", tmp_path / "figs"
    write_stored(data, ["training_curves.csv", "bench/summary.csv"])
    lines = []
    written = plots.build_figures(data, out, log=lines.append)
    stems = ["fig_training_curves", "fig_ctar", "fig_speedup_by_category"]
    assert sorted(written) == sorted(out / f"{s}.{ext}" for s in stems for ext in ("png", "pdf"))
    assert all(p.stat().st_size > 1000 for p in written)
    assert sum(line.startswith("wrote ") for line in lines) == 6
    skipped = [line for line in lines if line.startswith("skipped ")]
    assert len(skipped) == len(plots.FIGURES) - 3
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
