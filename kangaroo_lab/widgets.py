"""Interactive panels for the notebooks: thin layers over `explore` and `plots`.

* `token_stream_html`   a generation as HTML: accepted drafts, rejected drafts, the target's own tokens;
* `threshold_panel`     a slider for the confidence threshold (η) over a recorded draft trace;
* `step_panel`          one Kangaroo generation round by round, with its settings as controls.

Each panel is a widget to display; its update methods are plain methods, so they can be called
(and tested) without a browser. Figures are sent as PNG images. The controls and outputs carry CSS
classes (`kangaroo-eta`, `kangaroo-status`, ...) that the browser test (tests/test_browser.py) finds them by.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Mapping, Sequence

import ipywidgets as w
import matplotlib.pyplot as plt

from . import explore, plots
from .adapter import META_FILE, Adapter, load_adapter, shipped_adapter_dir
from .decoding import DEFAULTS, GenerationResult
from .models import Model
from .render import DRAFT_LABELS, segments

ACCEPTED_STYLE = "background:#c8e6c9;border-radius:3px"  # green
LOOKUP_STYLE = "background:#fdd0a2;border-radius:3px"  # orange, as in plots: a lookup token the target accepted
REJECTED_STYLE = "color:#c62828;text-decoration:line-through;opacity:0.55"  # red, struck through, faint
TARGET_STYLE = "background:#e3f2fd;border-radius:3px"  # blue: the target's correction or bonus token
BOX_STYLE = "font-family:ui-monospace,monospace;white-space:pre-wrap;line-height:1.7;font-size:13px"
STYLES = {"accepted": ACCEPTED_STYLE, "lookup": LOOKUP_STYLE, "rejected": REJECTED_STYLE, "target": TARGET_STYLE}


def _span(kind: str, text: str, title: str = "") -> str:
    title = f' title="{html.escape(title)}"' if title else ""
    return f'<span style="{STYLES[kind]}"{title}>{html.escape(text)}</span>'


def legend_html() -> str:
    drafts = " ".join(_span(kind, label) for kind, label in DRAFT_LABELS.items())
    return (
        f'<div style="font-size:12px;margin-bottom:4px">{drafts} {_span("target", "token of the target model")} '
        "(its correction after a rejection, or its bonus token after a fully accepted round)</div>"
    )


def token_stream_html(model: Model, result: GenerationResult, legend: bool = True) -> str:
    """The generated text as HTML, each token coloured by where it came from (see `legend_html`).

    A rejected draft is shown struck through where it was proposed, just before the target's
    token that replaced it. Without a trace (method "ar") every token is the target's own."""
    # the terminal's colouring (`kangaroo-lab generate`) cuts the text the same way (`render.segments`)
    parts = [_span(kind, text) for kind, text in segments(result, model.decode) if text]
    body = f'<div style="{BOX_STYLE}">{"".join(parts)}</div>'
    return (legend_html() if legend else "") + body


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=90)
    finally:
        plt.close(fig)
    return buf.getvalue()


def _png_html(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">' if png else ""


STATIC_NOTE = (
    "<p style='font-size:11px;color:#666'>(a static copy of the panel as it was displayed: "
    "open the notebook in Jupyter to move the controls)</p>"
)


class _StaticCopy:
    """Adds a text/html copy of the panel to its display data. A live frontend shows the widget; an exported
    HTML page without saved widget state (nbconvert falls back to the next format) shows this copy."""

    def static_html(self) -> str:
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs):
        data = super()._repr_mimebundle_(**kwargs)
        if isinstance(data, tuple):  # (data, metadata)
            data = data[0]
        return (data or {}) | {"text/html": self.static_html() + STATIC_NOTE}


def _classes(parts: dict) -> None:
    """Stable CSS classes on a panel's parts, for the browser test; they change nothing on screen."""
    for widget, name in parts.items():
        widget.add_class(name)


# ------------------------------------------------------------------------------------ threshold
class ThresholdPanel(_StaticCopy, w.VBox):
    """A slider for the confidence threshold η over a draft trace recorded at η = 0 (see `threshold_panel`)."""

    def __init__(self, trace_df, threshold: float = DEFAULTS.threshold):
        self.trace = trace_df
        self.slider = w.FloatSlider(
            value=threshold,
            min=0.0,
            max=1.0,
            step=0.05,
            description="η (threshold)",
            continuous_update=False,
            readout_format=".2f",
            style={"description_width": "initial"},
            layout=w.Layout(width="420px"),
        )
        self.summary = w.HTML()
        self.image = w.Image(format="png")
        super().__init__([self.slider, self.summary, self.image])
        _classes(
            {
                self: "kangaroo-threshold-panel",
                self.slider: "kangaroo-eta",
                self.summary: "kangaroo-summary",
                self.image: "kangaroo-figure",
            }
        )
        self.slider.observe(lambda change: self.update(change["new"]), names="value")
        self.update(threshold)

    def update(self, threshold: float) -> dict:
        """Redraw for `threshold`; returns `plots.threshold_tradeoff` at it."""
        shares = plots.threshold_tradeoff(self.trace, threshold)
        self.summary.value = (
            f"<b>η = {threshold:.2f}</b>: {shares['rejected_avoided']:.0%} of the rejected drafts would not be made, "
            f"{1 - shares['accepted_kept']:.0%} of the accepted drafts would be lost; "
            f"{shares['drafts_per_round']:.2f} drafts per round, {shares['accepted_per_round']:.2f} of them accepted."
        )
        self.image.value = figure_png(plots.eta_tradeoff(self.trace, threshold))
        return shares

    def static_html(self) -> str:
        return f"<div>{self.summary.value}</div>" + _png_html(self.image.value, "the η trade-off")


def threshold_panel(trace_df, threshold: float = DEFAULTS.threshold) -> ThresholdPanel:
    """Move the threshold η and see the share of rejected drafts it cuts and of accepted drafts it loses.

    trace_df: one row per draft, recorded at η = 0 (figures/data/bench/draft_trace.csv or `explore.record_trace`)."""
    return ThresholdPanel(trace_df, threshold)


# ------------------------------------------------------------------------------------ step by step
AdapterSource = Mapping[int, Adapter] | Callable[[int], Adapter] | None


def _exit_layers(model: Model, adapters: AdapterSource) -> list[int]:
    """Exit layers the panel offers: the dict's keys, else those with a shipped adapter."""
    if isinstance(adapters, Mapping):
        return sorted(adapters)
    shipped = [l for l in range(1, model.config.n_layers) if (shipped_adapter_dir(model.name, l) / META_FILE).is_file()]
    if not shipped and adapters is None:
        raise ValueError(
            f"no adapter is shipped for {model.name!r}: pass a dict {{exit_layer: adapter}} "
            "or a function exit_layer -> adapter"
        )
    return shipped or list(range(1, model.config.n_layers))


STALE_NOTE = (
    "<b style='color:#b26a00'>settings changed: press <i>generate</i></b> to run with them "
    "(the rounds below are from the previous settings)"
)


class StepPanel(_StaticCopy, w.VBox):
    """Controls for one generation and a "next round" button that reveals it round by round (see `step_panel`)."""

    def __init__(self, model: Model, adapters: AdapterSource, prompts: Sequence[str], max_new_tokens: int = 48):
        if not prompts:
            raise ValueError("give the panel at least one prompt")
        self.model, self.adapters, self.cache = model, adapters, {}
        layers = _exit_layers(model, adapters)
        label = {"style": {"description_width": "initial"}}
        self.exit_layer = w.Dropdown(
            options=layers, value=2 if 2 in layers else layers[0], description="exit layer l", **label
        )
        self.threshold = w.FloatSlider(
            value=DEFAULTS.threshold,
            min=0.0,
            max=1.0,
            step=0.05,
            description="η (threshold)",
            readout_format=".2f",
            **label,
        )
        self.gamma = w.IntSlider(value=DEFAULTS.max_draft, min=1, max=12, description="γ (max drafts)", **label)
        self.max_new_tokens = w.IntSlider(value=max_new_tokens, min=4, max=256, description="max new tokens", **label)
        self.prompt = w.Dropdown(options=list(prompts), description="prompt", layout=w.Layout(width="95%"), **label)
        self.free_text = w.Textarea(
            placeholder="or type your own prompt here (used when not empty)",
            layout=w.Layout(width="95%", height="48px"),
        )
        self.generate_button = w.Button(description="generate", button_style="primary")
        self.next_button = w.Button(description="next round", disabled=True)
        self.all_button = w.Button(description="all rounds", disabled=True)
        self.status = w.HTML()
        self.stale = w.HTML()  # "settings changed: press generate", when the controls no longer match the run
        self.rounds_html = w.HTML()
        self.summary = w.HTML()
        self.generate_button.on_click(lambda _: self.generate())
        self.next_button.on_click(lambda _: self.next_round())
        self.all_button.on_click(lambda _: self.show_all())
        self.run: explore.StepThrough | None = None
        self._ran_with: tuple | None = None
        self.shown = 0
        controls = w.VBox(
            [
                w.HBox([self.exit_layer, self.threshold, self.gamma]),
                self.max_new_tokens,
                self.prompt,
                self.free_text,
                w.HBox([self.generate_button, self.next_button, self.all_button]),
            ]
        )
        super().__init__([controls, self.stale, self.status, self.rounds_html, self.summary])
        for control in (self.exit_layer, self.threshold, self.gamma, self.max_new_tokens, self.prompt, self.free_text):
            control.observe(lambda _: self._mark_stale(), names="value")
        _classes(
            {
                self: "kangaroo-step-panel",
                self.exit_layer: "kangaroo-exit-layer",
                self.threshold: "kangaroo-eta",
                self.gamma: "kangaroo-gamma",
                self.generate_button: "kangaroo-generate",
                self.next_button: "kangaroo-next",
                self.all_button: "kangaroo-all",
                self.status: "kangaroo-status",
                self.rounds_html: "kangaroo-rounds",
                self.summary: "kangaroo-summary",
                self.stale: "kangaroo-stale",
            }
        )

    def adapter(self, exit_layer: int) -> Adapter:
        if isinstance(self.adapters, Mapping):
            return self.adapters[exit_layer]
        if exit_layer not in self.cache:
            load = self.adapters or (lambda l: load_adapter(self.model, exit_layer=l))
            self.cache[exit_layer] = load(exit_layer)
        return self.cache[exit_layer]

    def current_prompt(self) -> str:
        return self.free_text.value.strip() or self.prompt.value

    def settings(self) -> tuple:
        """What `generate` would run now: exit layer, η, γ, max new tokens, prompt."""
        return (
            self.exit_layer.value,
            self.threshold.value,
            self.gamma.value,
            self.max_new_tokens.value,
            self.current_prompt(),
        )

    def _mark_stale(self):
        stale = self.run is not None and self.settings() != self._ran_with
        self.stale.value = STALE_NOTE if stale else ""

    def generate(self) -> explore.StepThrough:
        """Run Kangaroo and AR with the current settings; show no round yet."""
        self.status.value = "<i>generating (Kangaroo and, for comparison, autoregressive decoding)...</i>"
        l = self.exit_layer.value
        self.run = explore.step_through(
            self.model,
            self.adapter(l),
            self.current_prompt(),
            threshold=self.threshold.value,
            max_draft=self.gamma.value,
            max_new_tokens=self.max_new_tokens.value,
        )
        self.shown = 0
        self._ran_with = self.settings()
        self.stale.value = ""
        self.status.value = (
            f"exit layer {l}, η = {self.threshold.value:.2f}, γ = {self.gamma.value}: "
            f"{len(self.run.rounds)} rounds. The prefill produced the first token "
            f"<code>{html.escape(self.run.first_token)}</code>. Press <b>next round</b>."
        )
        self.next_button.disabled = self.all_button.disabled = not self.run.rounds
        self._render()
        return self.run

    def next_round(self):
        """Reveal one more round (generating first if needed)."""
        if self.run is None:
            self.generate()
        self.shown = min(self.shown + 1, len(self.run.rounds))
        self._render()

    def show_all(self):
        if self.run is None:
            self.generate()
        self.shown = len(self.run.rounds)
        self._render()

    def _render(self):
        run = self.run
        self.rounds_html.value = "".join(round_html(r, run.threshold) for r in run.rounds[: self.shown])
        done = self.shown == len(run.rounds)
        self.next_button.disabled = self.all_button.disabled = done
        self.summary.value = summary_html(self.model, run) if done else ""

    def static_html(self) -> str:
        settings = (
            f"<p>exit layer {self.exit_layer.value}, η = {self.threshold.value:.2f}, γ = {self.gamma.value}, "
            f"max new tokens {self.max_new_tokens.value}; prompt: <i>{html.escape(self.current_prompt())}</i></p>"
        )
        shown = (
            f"<p>{self.shown} of {len(self.run.rounds)} rounds shown</p>"
            if self.run is not None
            else "<p>no generation yet</p>"
        )
        return settings + self.stale.value + self.status.value + shown + self.rounds_html.value + self.summary.value


def round_html(r: explore.RoundStep, threshold: float) -> str:
    """One round: each draft with its confidence, accepted or rejected; the target's token; the text so far."""
    cells = []
    for i, (d, c) in enumerate(zip(r.drafts, r.confidences)):
        kind = "accepted" if i < r.accepted else "rejected"
        low = " &lt; η" if c < threshold else ""
        cells.append(
            f'{_span(kind, d, f"draft {i + 1}: confidence {c:.3f}")}<sub style="color:#666">{c:.2f}{low}</sub>'
        )
    why = {
        "threshold": "drafting stopped: the last draft's confidence fell below η",
        "gamma": "drafting stopped: γ drafts were made",
        "budget": "drafting stopped: max new tokens reached",
    }[r.stop]
    kind = {
        "bonus": "a bonus token: every draft was accepted",
        "correction": "its correction",
        "plain": "its next token: no room for drafts",
    }[r.kind]
    back = f"; {r.rolled_back} rejected draft(s) rolled back" if r.rolled_back else ""
    return (
        f'<div class="kangaroo-round" style="border-left:3px solid #90caf9;padding:2px 8px;margin:6px 0">'
        f"<b>round {r.index + 1}</b> ({why}): drafts {' '.join(cells) or '(none)'} &rarr; "
        f"accepted {r.accepted}/{len(r.drafts)}{back}; the target adds {_span('target', r.token)}, {kind}"
        f'<div style="{BOX_STYLE};color:#333;font-size:12px">{html.escape(r.text)}</div></div>'
    )


def summary_html(model: Model, run: explore.StepThrough) -> str:
    """Losslessness against AR, mean accepted tokens, CTAR(w), and the coloured output."""
    same = (
        "<b style='color:#2e7d32'>identical to greedy autoregressive decoding</b>"
        if run.identical
        else "<b style='color:#c62828'>differs from greedy autoregressive decoding</b>"
    )
    # a round emits at most γ + 1 tokens, so CTAR(w) for w > γ is 0 by construction: not listed
    ctar = ", ".join(f"CTAR({k}) = {v:.2f}" for k, v in run.ctar.items() if k <= run.max_draft)
    return (
        f"<p>{len(run.kangaroo.token_ids)} tokens in {len(run.rounds)} rounds: "
        f"{run.kangaroo.mean_accepted:.2f} tokens per round; output {same}.<br>{ctar}</p>"
        + token_stream_html(model, run.kangaroo)
    )


def step_panel(
    model: Model, adapters_or_loader: AdapterSource = None, prompts: Sequence[str] = (), max_new_tokens: int = 48
) -> StepPanel:
    """Step through one Kangaroo generation round by round.

    Controls: exit layer (those with a shipped adapter, or the keys of a dict {exit_layer: adapter}),
    the threshold η, gamma, the prompt (a dropdown of `prompts`, or free text), max new tokens. "generate" runs
    it, "next round" reveals the rounds one by one (drafts with their confidences, accepted or
    rejected, the rollback), and the last round shows the comparison with AR and CTAR(w).
    adapters_or_loader: a dict, a function exit_layer -> adapter, or None (load the shipped ones)."""
    return StepPanel(model, adapters_or_loader, prompts, max_new_tokens)
