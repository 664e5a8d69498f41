"""The report's front page, index.html: the run, the headline choice with its numbers and figures, links
to every notebook and the parameters used; or, for a run with no answered request, a plain page that
says what happened.  `report.build_report` writes it after the notebooks ran.
"""
from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from toolkit.analysis.frontier import Headline
    from toolkit.report import NotebookRun
    from toolkit.warehouse import Rows

# pandas, nbconvert, matplotlib and the analysis modules are imported inside the functions that use
# them: report imports this module, and the CLI registers report on every start.

_PAGE_STYLE = """body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.5; }
table { border-collapse: collapse; margin: 1rem 0; } td, th { border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; }"""


def render_index(head: Headline, runs: Sequence[NotebookRun], values: Mapping[str, object]) -> str:
    """The report's front page: the run, the headline choice and what it is worth, links to each
    notebook under its title, and the parameters used."""
    import pandas as pd
    from nbconvert.filters import markdown2html

    from toolkit import present
    run_id = str(head.overview.iloc[0]["run_id"])
    paragraphs = [present.choice_text(head.choice), present.break_even_text(head),
                  present.prices_text(head.prices),
                  present.pricing_rules_text(head.rules) if head.rules is not None else ""]
    links = []
    for run in runs:
        status = ("" if run.error is None else
                  f' <strong class="failed">failed at cell {run.error.cell}: {html.escape(run.error.error)}</strong>')
        title = html.escape(run.title or run.name)
        links.append(f'<li><a href="{html.escape(run.html.name)}">{title}</a> '
                     f'<span class="meta">({html.escape(run.name)}; <a href="{html.escape(run.ipynb.name)}">notebook</a>, '
                     f'{run.seconds:.1f} s)</span>{status}</li>')
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(repr(v))}</td></tr>"
                   for k, v in sorted(values.items()) if k != "run_dir")
    best = head.choice.row
    numbers = ""
    if best is not None:
        cells = {"configuration": str(head.choice.config_id),
                 "accuracy": (present.show(best.to_frame().T, ["accuracy"], index=None).iloc[0, 0]
                              if pd.notna(best.get("accuracy")) else "not graded"),
                 "break-even accuracy": present.pct(head.break_even_accuracy),
                 present.latency_name(head.choice.latency_col): present.secs(best.get(head.choice.latency_col)),
                 "error rate": present.pct(best.get("error_rate", float("nan"))),
                 "cost per 1,000 requests": present.usd(best["usd_per_1k"]),
                 "expected value per request": present.usd(head.ev_usd)}
        numbers = ("<table class='numbers'><tr>" + "".join(f"<th>{html.escape(k)}</th>" for k in cells)
                   + "</tr><tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in cells.values()) + "</tr></table>")
    notes = [present.cache_note(head.frame)] if head.frame is not None else []
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>frontier report: {html.escape(run_id)}</title>
<style>
{_PAGE_STYLE}
.failed {{ color: #b00; }} .meta {{ color: #666; font-size: .9em; }} .notes {{ color: #333; font-size: .95em; }}
</style></head><body>
<h1>frontier report: {html.escape(run_id)}</h1>
{markdown2html(present.run_text(head.overview))}
{markdown2html(present.labels_text(head.labels)) if head.labels else ""}
<h2>Headline</h2>
{numbers}
{"".join(markdown2html(p) for p in paragraphs if p)}
{"".join(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">' for alt, data in index_figures(head))}
<div class="notes">{"".join(markdown2html(n) for n in notes if n)}</div>
<h2>Notebooks</h2>
<ul>{"".join(links)}</ul>
<h2>Parameters</h2>
<table><tr><th>name</th><th>value</th></tr>{rows}</table>
</body></html>
"""


def render_unanswered_index(frame: Rows, run_id: str) -> str:
    """The front page of a run with no answered request (empty, or every request failed): what
    happened and what to do, instead of notebooks that would have nothing to show."""
    from nbconvert.filters import markdown2html

    from toolkit import present
    from toolkit.analysis import rows
    overview = rows.run_overview(frame)
    summary = present.run_text(overview) if overview.at[0, "requests"] else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>frontier report: {html.escape(str(run_id))}</title>
<style>{_PAGE_STYLE}</style></head><body>
<h1>frontier report: {html.escape(str(run_id))}</h1>
{markdown2html(summary) if summary else ""}
{markdown2html(present.failures_text(frame))}
<p>No notebook was run: with no answered request there is no accuracy, latency or cost to show.</p>
</body></html>
"""


def index_figures(head: Headline) -> list[tuple[str, str]]:
    """(alt text, base64 PNG) of the index's figures: the accuracy/cost frontier with the headline
    configuration marked, and the configurations' expected value against their break-even."""
    import base64
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from toolkit import plots
    from toolkit.analysis import cost_model, frontier

    summary = head.summary.dropna(subset=["accuracy", "usd_per_1k"])
    if summary.empty:
        return []
    latency_col = head.choice.latency_col
    objectives = [c for c in (latency_col, "usd_per_1k") if c in summary and summary[c].notna().any()]
    front = frontier.pareto_front(summary, minimize=objectives)
    figures = []
    fig, axes = plt.subplots(1, 2 if head.value_usd is not None and head.error_cost_usd is not None else 1,
                             figsize=(13, 5), squeeze=False)
    plots.frontier_plot(front, x="usd_per_1k", y="accuracy", hue=None, yerr=("accuracy_low", "accuracy_high"),
                        ax=axes[0, 0])
    best = front[front["config_id"] == head.choice.config_id]
    axes[0, 0].scatter(best["usd_per_1k"], best["accuracy"], s=250, facecolors="none", edgecolors="black",
                       linewidths=2, label="headline")
    axes[0, 0].set_title("Accuracy against cost (ringed: the headline)")
    alt = "accuracy against cost per 1,000 requests, Pareto staircase"
    if axes.shape[1] == 2:
        model = cost_model.CostModel(head.value_usd, head.error_cost_usd, failure_cost_usd=head.failure_cost_usd)
        values = cost_model.value_table(summary, model)
        plots.cost_model_plot(values, kind="points", label="config_id", lower="ev_low_usd", upper="ev_high_usd",
                              break_even=None if math.isnan(head.break_even_accuracy) else head.break_even_accuracy,
                              ax=axes[0, 1])
        axes[0, 1].set_title("Expected value per request")
        alt += "; expected value per request against accuracy"
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    figures.append((alt, base64.b64encode(buffer.getvalue()).decode("ascii")))
    return figures
