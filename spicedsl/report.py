"""``report.html``: a fit shown to people, in one self-contained file.

The page needs no network: its images are PNG data URIs, its equations MathML (which
browsers render natively) beside the model language text, and its style inline. It
shows the discovered equations, the fitted model, the metrics of the network and of the
equation model, the loss curves, a few sessions as :func:`spicedsl.plots.session_figure`
draws them and, when the network tells participants apart, the per-participant
coefficients. ``compare.html`` shows a model comparison in the same way.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import TYPE_CHECKING

from spicedsl.mathtext import equation_mathml

if TYPE_CHECKING:
    from spicedsl.compare import Comparison
    from spicedsl.fitting import FitResult
    from spicedsl.runtime.data import Dataset

#: Sessions drawn in the report by default.
REPORT_SESSIONS = 3

_FILTER_TEXT = {"chosen": "chosen", "not_chosen": "not chosen", "all": "on every trial"}

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
.equation { margin: .8em 0 1.2em; }
.equation .module { color: #555; font-size: .9em; }
math { font-size: 1.3em; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: .9em; }
table { border-collapse: collapse; }
th, td { padding: .25em .8em; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) { text-align: left; }
img { max-width: 100%; height: auto; display: block; margin: .5em 0 1.5em; }
"""


def png_data_uri(png: bytes) -> str:
    """A ``data:`` URI of PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _image(png: bytes, alt: str, ident: str) -> str:
    return f'<img id="{ident}" alt="{html.escape(alt)}" src="{png_data_uri(png)}">'


def _number(value: float, digits: int) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def metrics_table(metrics: dict[str, dict[str, dict[str, float]]]) -> str:
    """The NLL, accuracy, AIC and BIC of each stage and split, as an HTML table."""
    rows = [
        "<tr><th>model</th><th>split</th><th>NLL per trial</th><th>accuracy</th>"
        "<th>AIC</th><th>BIC</th><th>parameters</th><th>trials</th></tr>"
    ]
    for stage, splits in metrics.items():
        for split, m in splits.items():
            rows.append(
                f"<tr><td>{html.escape(stage)}</td><td>{html.escape(split)}</td>"
                f"<td>{_number(m['nll_per_trial'], 5)}</td><td>{_number(m['accuracy'], 4)}</td>"
                f"<td>{_number(m['aic'], 1)}</td><td>{_number(m['bic'], 1)}</td>"
                f"<td>{int(m['n_params'])}</td><td>{int(m['n_trials'])}</td></tr>"
            )
    return '<table id="metrics">' + "".join(rows) + "</table>"


def report_html(result: FitResult, dataset: Dataset, sessions: int = REPORT_SESSIONS) -> str:
    """The text of ``report.html`` for a fit (see :func:`write_report`)."""
    from spicedsl import __version__, plots
    from spicedsl.frontend import load_ir

    digits = int(result.options.get("digits", 4))
    fitted_ir = load_ir(result.fitted_text)
    modules = {m.name: m for m in fitted_ir.modules}
    name = html.escape(result.model_name)
    log = result.log
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>spicedsl fit: {name}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Fit of model <code>{name}</code></h1>",
        f"<p>Training {html.escape(plots.STOPPED_TEXT.get(log.stopped, log.stopped))} after "
        f"{len(log.train_loss)} epochs (best epoch {log.best_epoch}, "
        f"{result.timings.get('training_s', 0):.1f} s); "
        f"equations found in {result.timings.get('equations_s', 0):.1f} s. "
        f"spicedsl {__version__}.</p>",
        "<h2>Discovered equations</h2>",
    ]
    if not result.equations:
        parts.append("<p>The model has no learnable module.</p>")
    for module, expr in result.equations.items():
        parts.append(
            f'<div class="equation" id="equation-{html.escape(module)}">'
            f'<div class="module">{html.escape(_module_text(modules.get(module), module))}</div>'
            f"{equation_mathml(module, expr, digits)}</div>"
        )
    parts += [
        "<h2>Fitted model</h2>",
        "<p>The model file with every <code>learn(...)</code> replaced by its equation and "
        "every param valued; it can be checked, simulated, evaluated and refit.</p>",
        f'<pre id="fitted-model">{html.escape(result.fitted_text)}</pre>',
        "<h2>How well each model predicts the choices</h2>",
        "<p>The <em>network</em> is the trained recurrent network; the <em>equations</em> "
        "model is the fitted model above. NLL per predicted trial (every trial after the "
        "first of its session), accuracy, and AIC and BIC from the summed NLL.</p>",
        metrics_table(result.metrics),
        "<h2>Training</h2>",
    ]
    if log.train_loss:
        parts.append(_image(plots.figure_png(plots.loss_figure(result)), "loss curves", "loss"))
    else:
        parts.append("<p>Nothing was trained.</p>")
    count = min(sessions, len(dataset.session_ids))
    if count:
        parts += [
            "<h2>Sessions</h2>",
            f"<p>The first {count} session(s) of the data: the choices, the choice "
            "probabilities of the network and of the equation model, and their states.</p>",
        ]
        models = {"network": result.network, "equations": result.equation_network}
        for index in range(count):
            figure = plots.session_figure(models, dataset, index)
            label = dataset.session_ids[index]
            parts.append(_image(plots.figure_png(figure), f"session {label}", f"session-{index}"))
    if result.stability is not None:
        parts += _stability_section(result.stability)
    coefficients = plots.participant_coefficients(result)
    if coefficients:
        figure = plots.coefficient_figure(coefficients, plots.pooled_coefficients(result))
        parts += [
            "<h2>Per-participant coefficients</h2>",
            "<p>Each participant's own coefficients of the discovered equations, and their "
            "per-participant params, as the fitted model's participant table gives them "
            "(a term absent for a participant has 0). The line is the mean.</p>",
            _image(plots.figure_png(figure), "per-participant coefficients", "coefficients"),
            "<p>The same numbers in short: for each column of the participant table, for how "
            "many participants it is non-zero, and the distribution of its values.</p>",
            f'<pre id="participant-summary">{html.escape(result.participant_summary())}</pre>',
        ]
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _stability_section(stability) -> list[str]:
    """The ensemble's term frequencies as a figure and a table, and its members'
    equations."""
    from spicedsl import plots
    from spicedsl.fitted import term_text

    members = len(stability.members)
    bound = stability.error_bound
    rows = [
        "<tr><th>module</th><th>term</th><th>selected by</th><th>kept</th>"
        "<th>median coefficient</th><th>interval</th></tr>"
    ]
    for t in stability.terms:
        low, high = t.interval
        rows.append(
            f"<tr><td>{html.escape(t.module)}</td><td>{html.escape(term_text(t.powers))}</td>"
            f"<td>{t.selected}/{members}</td><td>{_kept_text(stability, t)}</td>"
            f"<td>{t.median:.4g}</td><td>[{low:.4g}, {high:.4g}]</td></tr>"
        )
    equations = "\n".join(
        f"member {i + 1}: "
        + "; ".join(f"{name} = {expr}" for name, expr in member_text(member).items())
        for i, member in enumerate(stability.members)
    )
    return [
        "<h2>Stability selection</h2>",
        f"<p>{members} networks were trained at once, each on half of the training sessions "
        "(in complementary pairs), and each found its own equations. A term is kept when at "
        f"least {stability.threshold:g} of them select it"
        + (
            f"; the expected number of falsely kept terms is then at most {bound:.3g} "
            f"(Meinshausen and Bühlmann's bound, q² / ((2π − 1) p), with q = "
            f"{stability.mean_selected:.3g} terms selected per member on average and p = "
            f"{stability.library_size} terms in the libraries)"
            if bound is not None
            else ""
        )
        + ". The kept terms were refit on all the training sessions"
        + (
            f"; so was the members' most frequent structure ({stability.modal_members} of "
            "them), which holds the kept terms and more, and it predicted the choices better "
            "(BIC): it is the fitted model"
            if stability.added
            else ""
        )
        + ". Intervals cover the central 90 % of the members' coefficients.</p>",
        _image(plots.figure_png(plots.stability_figure(stability)), "stability", "stability"),
        '<table id="stability-terms">' + "".join(rows) + "</table>",
        "<p>Each member's own equations:</p>",
        f'<pre id="member-equations">{html.escape(equations)}</pre>',
    ]


def _kept_text(stability, term) -> str:
    if term.kept:
        return "yes"
    return "added" if (term.module, term.powers) in stability.added else "no"


def member_text(member) -> dict[str, str]:
    """A member's equations, module by module, as model text."""
    from spicedsl.fitted import equation_text

    return {name: equation_text(eq) for name, eq in member.equations.items()}


def _module_text(module, name: str) -> str:
    """``module NAME updates TARGET when ...``, as the model file says."""
    if module is None:
        return f"module {name}"
    kind, condition = module.filter.kind, module.filter.condition
    if kind == "condition":
        when = f"when {condition}"
    elif kind == "all":
        when = _FILTER_TEXT[kind]
    else:
        when = f"when {_FILTER_TEXT.get(kind, kind)}"
        when += f" and {condition}" if condition is not None else ""
    return f"module {name} updates {module.target} {when}"


def write_report(
    result: FitResult, dataset: Dataset, path: str | Path, sessions: int = REPORT_SESSIONS
) -> Path:
    """Write ``report.html`` for a fit, atomically.

    Parameters
    ----------
    result : FitResult
        The fit.
    dataset : Dataset
        The data it was fitted to (its first sessions are drawn).
    path : str or Path
        The file to write (its folder must exist).
    sessions : int
        How many sessions to draw.

    Returns
    -------
    Path
        ``path``.
    """
    from spicedsl.files import write_atomic

    write_atomic(path, report_html(result, dataset, sessions))
    return Path(path)


def comparison_html(comparison: Comparison) -> str:
    """The text of ``compare.html`` for ``spicedsl compare`` (see
    :func:`write_comparison_report`)."""
    from spicedsl import __version__, plots
    from spicedsl.compare import mean_se

    n = len(comparison.participants)
    rows = [
        "<tr><th>rank</th><th>model</th><th>held-out NLL per trial</th>"
        "<th>trial likelihood</th><th>BIC (training folds)</th><th>best for</th></tr>"
    ]
    for m in comparison.models:
        (nll, nll_se), (likelihood, likelihood_se) = mean_se(m.nll), mean_se(m.likelihood)
        rows.append(
            f"<tr><td>{m.rank}</td><td><code>{html.escape(m.name)}</code></td>"
            f"<td>{nll:.4f} ± {nll_se:.4f}</td><td>{likelihood:.4f} ± {likelihood_se:.4f}</td>"
            f"<td>{sum(m.bic) / len(m.bic):.1f}</td><td>{m.best_for} of {n}</td></tr>"
        )
    names = [m.name for m in comparison.models]
    people = ["<tr><th>participant</th>" + "".join(f"<th>{html.escape(x)}</th>" for x in names)]
    for label, own in comparison.participants.items():
        best = min(names, key=own.__getitem__)
        cells = "".join(
            f"<td>{'<b>' if x == best else ''}{own[x]:.4f}{'</b>' if x == best else ''}</td>"
            for x in names
        )
        people.append(f"<tr><td>{html.escape(label)}</td>{cells}</tr>")
    figure = plots.figure_png(plots.comparison_figure(comparison))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>spicedsl compare</title><style>{_STYLE}</style></head><body>",
        "<h1>Model comparison</h1>",
        f"<p>{comparison.folds}-fold cross-validation over {comparison.by}s: "
        f"{html.escape(comparison.described())}. "
        "Each model was fitted to the other folds and scored on each fold's held-out "
        f"sessions. spicedsl {__version__}.</p>",
        '<table id="comparison">' + "".join(rows) + "</table>",
        "<p>Held-out NLL per predicted trial and trial likelihood exp(−NLL per trial): mean "
        "± standard error over the folds; lower NLL is better, and ranks the models. BIC: "
        "of each fold's fitted model on its training folds, mean over the folds. Best for: "
        "the participants whose held-out NLL per trial, pooled over the folds, is lowest "
        "under the model.</p>",
        "<h2>Folds and participants</h2>",
        _image(figure, "held-out NLL by fold and per participant", "comparison-figure"),
        "<h2>Each participant's held-out NLL per trial</h2>",
        "<p>Pooled over the folds; the best model of each participant in bold.</p>",
        '<table id="participants">' + "".join(people) + "</table>",
        "</body></html>\n",
    ]
    return "\n".join(parts)


def write_comparison_report(comparison: Comparison, path: str | Path) -> Path:
    """Write ``compare.html``, self-contained like ``report.html``, atomically."""
    from spicedsl.files import write_atomic

    write_atomic(path, comparison_html(comparison))
    return Path(path)
