"""Everything about one example: its text shown literally, sentiment against the label's
polarity, which detectors flag it and by what rule, and the per-task influence breakdown
(original queries against each sentiment transform) as a bar chart.
"""

from __future__ import annotations

from itertools import groupby

from rich.console import Group, RenderableType
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from engine.review_queries import ExampleDetail, InfluenceBar
from poison_tui.widgets.literal import literal, visible
from poison_tui.widgets.suspect_list import STATUS_STYLE

BAR_CELLS = 24
_EIGHTHS = " ▏▎▍▌▋▊▉█"


def _bar(value: float, scale: float) -> str:
    eighths = round(abs(value) / scale * BAR_CELLS * 8) if scale > 0 else 0
    full, part = divmod(min(eighths, BAR_CELLS * 8), 8)
    return "█" * full + (_EIGHTHS[part] if part else "")


def influence_chart(bars: list[InfluenceBar]) -> Text:
    """One line per (task, variant): positive bars green to the right, negative red."""
    out = Text()
    if not bars:
        out.append("no influence scores for this example yet (press c to compute)\n", style="dim")
        return out
    scale = max(abs(b.score) for b in bars) or 1.0
    width = max(len(b.variant) for b in bars)
    for task, group in groupby(bars, key=lambda b: b.task):
        out.append(visible(task) + "\n", style="bold")
        for b in group:
            out.append(f"  {visible(b.variant):<{width}} {b.score:+8.3f} ")
            style = "green3" if b.score >= 0 else "red3"
            out.append(("+" if b.score >= 0 else "-") + _bar(b.score, scale), style=style)
            out.append("\n")
    return out


def _polarity_word(p: float | None) -> str:
    return {1.0: "positive", -1.0: "negative", 0.0: "neutral"}.get(p, "no polarity") if p is not None else "no polarity"


def render_detail(d: ExampleDetail) -> RenderableType:
    head = Text()
    head.append("id ", style="dim")
    head.append(visible(d.source_id or d.uid), style="bold")
    head.append(f"  uid {visible(d.uid)}  task ", style="dim")
    head.append(visible(d.task))
    head.append("  status ", style="dim")
    head.append(d.status, style=STATUS_STYLE.get(d.status, ""))
    if d.reason:
        head.append(f" ({visible(d.reason)})")
    head.append("\nsource ", style="dim")
    head.append(visible(d.source_file) + (f":{d.source_line}" if d.source_line else ""))
    if d.note:
        head.append("\nnote ", style="dim")
        head.append(visible(d.note))

    sentiment = Text()
    sentiment.append("sentiment of input ", style="dim")
    sentiment.append("—" if d.sentiment is None else f"{d.sentiment:+.2f} ({d.sentiment_scorer})")
    sentiment.append("   label polarity ", style="dim")
    sentiment.append(_polarity_word(d.polarity))
    if d.sentiment is not None and d.polarity and d.sentiment * d.polarity < 0:
        sentiment.append("   ⚠ sentiment contradicts the label", style="bold orange3")

    findings = Text()
    for f in d.findings:
        mark = "FLAGGED" if f.flagged else "not flagged"
        findings.append(f"{'*' if f.is_default else ' '} {visible(f.detector)}: ",
                        style="bold" if f.flagged else "")
        findings.append(mark, style="bold red3" if f.flagged else "dim")
        rank = "—" if f.rank is None else str(f.rank)
        score = "—" if f.score is None else f"{f.score:.4g}"
        findings.append(f"  score {score} rank {rank}\n    rule: ")
        findings.append(visible(f.rule) + "\n", style="italic")
    if not d.findings:
        findings.append("no detector has run on this workspace yet\n", style="dim")

    def section(title: str) -> Text:
        return Text(f"── {title} ", style="bold cyan")

    return Group(
        head, sentiment,
        section("definition"), literal(d.definition),
        section("input"), literal(d.input),
        section("output"), literal(d.output),
        section("detectors (* ranks the queue)"), findings,
        section("influence per evaluation task: original vs transforms"), influence_chart(d.influence),
    )


class DetailView(VerticalScroll):
    """Scrollable detail of the example under the queue's cursor."""

    DEFAULT_CSS = """
    DetailView { height: 1fr; border-top: solid $primary; }
    DetailView > Static { width: 1fr; }
    """

    def compose(self):
        yield Static(Text("no example selected", style="dim"), id="detail-body")

    def show(self, detail: ExampleDetail | None) -> None:
        body = self.query_one("#detail-body", Static)
        body.update(render_detail(detail) if detail else Text("no example selected", style="dim"))
        self.scroll_home(animate=False)
