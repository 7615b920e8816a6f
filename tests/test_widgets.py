"""widgets.py: the panels' update callbacks, called directly (no browser, no kernel)."""

import html
import re

import pytest

from kangaroo_lab import explore, generate, new_adapter, plots, widgets


@pytest.fixture(scope="module")
def adapters(tiny):
    return {1: new_adapter(tiny, 1, seed=1), 2: new_adapter(tiny, 2, seed=7)}


@pytest.fixture(scope="module")
def trace(tiny, adapters):
    results = [generate(tiny, p, adapter=adapters[2], threshold=0.0, max_new_tokens=24) for p in ("ab", "cd", "ef")]
    return explore.trace_frame(results, [{"category": "qa", "question_id": i} for i in range(3)], model=tiny)


SPAN = re.compile(r'<span style="([^"]*)"[^>]*>(.*?)</span>', re.DOTALL)


def test_token_stream_html_colours_every_token(tiny, adapters):
    res = generate(tiny, "hello there", adapter=adapters[2], threshold=0.1, max_new_tokens=30)
    page = widgets.token_stream_html(model=tiny, result=res)
    body = page.split("</div>", 1)[1]  # after the legend
    spans = [(style, html.unescape(text)) for style, text in SPAN.findall(body)]
    kept = "".join(text for style, text in spans if style != widgets.REJECTED_STYLE)
    assert kept == res.text  # accepted drafts + the target's tokens spell the output
    styles = {style for style, _ in spans}
    assert widgets.TARGET_STYLE in styles
    assert (widgets.ACCEPTED_STYLE in styles) == any(res.draft_accepted)
    assert (widgets.REJECTED_STYLE in styles) == (not all(res.draft_accepted))
    assert "accepted draft" in page and "rejected draft" in page  # the legend
    ar = generate(tiny, "hello there", method="ar", max_new_tokens=30)
    assert {s for s, _ in SPAN.findall(widgets.token_stream_html(tiny, ar, legend=False))} == {widgets.TARGET_STYLE}


def test_token_text_is_escaped():
    assert widgets._span("target", "<b>&") == f'<span style="{widgets.TARGET_STYLE}">&lt;b&gt;&amp;</span>'


def test_threshold_panel_follows_the_slider(trace):
    panel = widgets.threshold_panel(trace, threshold=0.6)
    assert isinstance(panel, widgets.ThresholdPanel) and panel.slider.value == 0.6
    first = panel.summary.value
    assert "η = 0.60" in first and panel.image.value[:4] == b"\x89PNG"
    shares = panel.update(0.3)
    assert shares == plots.threshold_tradeoff(trace, 0.3)
    panel.slider.value = 0.9  # the observer redraws
    assert "η = 0.90" in panel.summary.value and panel.summary.value != first


def test_step_panel_steps_through_rounds(tiny, adapters):
    panel = widgets.step_panel(tiny, adapters, ["hello there", "abc"], max_new_tokens=16)
    assert list(panel.exit_layer.options) == [1, 2] and panel.exit_layer.value == 2
    assert panel.next_button.disabled
    run = panel.generate()
    assert panel.shown == 0 and not panel.next_button.disabled and panel.summary.value == ""
    panel.next_round()
    panel.next_round()
    assert panel.shown == 2 and panel.rounds_html.value.count("<b>round ") == 2
    panel.show_all()
    assert panel.shown == len(run.rounds) and panel.next_button.disabled
    assert "identical to greedy autoregressive decoding" in panel.summary.value and "CTAR(1)" in panel.summary.value


def test_step_panel_settings_reach_generation(tiny, adapters):
    panel = widgets.step_panel(tiny, adapters, ["hello there"])
    panel.exit_layer.value, panel.threshold.value, panel.gamma.value, panel.max_new_tokens.value = 1, 0.0, 3, 10
    panel.free_text.value = "my own prompt"
    run = panel.generate()
    assert run.exit_layer == 1 and run.threshold == 0.0 and run.max_draft == 3 and len(run.kangaroo.token_ids) == 10
    assert run.kangaroo.prompt_ids == tiny.encode("my own prompt")
    assert all(len(r.drafts) == min(3, 10 - r.start - 1) for r in run.rounds)  # η = 0: gamma drafts per round


def test_step_panel_with_a_loader(tiny, adapters):
    calls = []

    def load(layer):
        calls.append(layer)
        return adapters.get(layer) or new_adapter(tiny, layer)

    panel = widgets.step_panel(tiny, load, ["abc"], max_new_tokens=8)
    assert list(panel.exit_layer.options) == [1, 2, 3]  # nothing shipped for tiny-random: every exit layer
    panel.next_round()  # generates first
    panel.next_round()
    assert calls == [2] and panel.shown == 2


def test_step_panel_needs_adapters_and_prompts(tiny, adapters):
    with pytest.raises(ValueError, match="no adapter is shipped"):
        widgets.step_panel(tiny, None, ["abc"])
    with pytest.raises(ValueError, match="at least one prompt"):
        widgets.step_panel(tiny, adapters, [])


def test_step_panel_says_when_settings_changed(tiny, adapters):
    panel = widgets.step_panel(tiny, adapters, ["hello there", "abc"], max_new_tokens=12)
    assert panel.stale.value == "" and "kangaroo-stale" in panel.stale._dom_classes
    panel.threshold.value = 0.3  # before any generation: nothing to be stale
    assert panel.stale.value == ""
    panel.generate()
    panel.gamma.value = 3
    assert "settings changed" in panel.stale.value and "generate" in panel.stale.value
    panel.gamma.value = panel._ran_with[2]  # back to what ran: the note goes
    assert panel.stale.value == ""
    panel.free_text.value = "my own prompt"
    assert "settings changed" in panel.stale.value
    panel.generate()
    assert panel.stale.value == ""


def test_ctar_listed_up_to_gamma(tiny, adapters):
    panel = widgets.step_panel(tiny, adapters, ["hello there"], max_new_tokens=16)
    panel.gamma.value = 3
    panel.generate()
    panel.show_all()
    listed = [int(k) for k in re.findall(r"CTAR\((\d+)\)", panel.summary.value)]
    assert listed == [1, 2, 3]


def test_panels_carry_a_static_copy_for_exported_html(tiny, adapters, trace):
    threshold = widgets.threshold_panel(trace, threshold=0.6)
    data = threshold._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data
    assert "η = 0.60" in data["text/html"] and "data:image/png;base64," in data["text/html"]
    panel = widgets.step_panel(tiny, adapters, ["hello there"], max_new_tokens=12)
    panel.generate()
    panel.next_round()
    page = panel._repr_mimebundle_()["text/html"]
    assert "1 of" in page and "kangaroo-round" in page and "static copy" in page
