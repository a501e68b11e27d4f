"""report.html (spicedsl.report): self-contained, with the fit's equations, text, numbers
and figures, and visible when a browser opens it."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spicedsl import api, mathtext, report

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TINY = {"epochs": 5, "sindy_sessions": 1, "sindy_trials": 50, "validation": 0.0}
CHROMIUM = shutil.which("chromium")
# Install with: apt-get update && apt-get install -y chromium
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # no name resolves: the page must need no network
    "--window-size=1200,3000",
]


@pytest.fixture(scope="module")
def data():
    return api.simulate(EXAMPLES / "q_learning.spice", 5, 20, seed=1)[0]


@pytest.fixture(scope="module")
def result(data):
    return api.fit(EXAMPLES / "learning_rate.spice", data, progress=False, **TINY)


@pytest.fixture(scope="module")
def page(tmp_path_factory, result, data) -> Path:
    folder = tmp_path_factory.mktemp("report")
    return report.write_report(result, data, folder / "report.html")


class Page(HTMLParser):
    """The parts of the report the tests read: images, math, the fitted model, the table."""

    def __init__(self) -> None:
        super().__init__()
        self.images: dict[str, str] = {}
        self.maths: list[str] = []
        self.pre: dict[str, str] = {}
        self.cells: list[list[str]] = []
        self.tags: set[str] = set()
        self._pre: str | None = None
        self._math_depth = 0
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.add(tag)
        if tag == "img":
            self.images[attributes["id"]] = attributes["src"]
        elif tag == "math":
            self._math_depth += 1
            self.maths.append("")
        elif tag == "pre":
            self._pre = attributes.get("id", "")
            self.pre[self._pre] = ""
        elif tag == "tr":
            self.cells.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "math":
            self._math_depth -= 1
        elif tag == "pre":
            self._pre = None
        elif tag in ("td", "th"):
            self.cells[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, text):
        if self._math_depth:
            self.maths[-1] += text
        if self._pre is not None:
            self.pre[self._pre] += text
        if self._cell is not None:
            self._cell.append(text)


def read(page: Path) -> tuple[str, Page]:
    text = page.read_text(encoding="utf-8")
    parsed = Page()
    parsed.feed(text)
    return text, parsed


def test_report_shows_equations_as_mathml_and_the_fitted_model(page, result):
    text, parsed = read(page)
    digits = result.options["digits"]
    assert result.equations
    for name, expr in result.equations.items():
        assert mathtext.equation_mathml(name, expr, digits) in text
        assert f'id="equation-{name}"' in text
    assert len(parsed.maths) == len(result.equations)
    # The math shows the module names whole, and the same numbers as the model file.
    for (name, expr), math_text in zip(result.equations.items(), parsed.maths, strict=True):
        assert math_text.startswith(f"{name}=")
        for number in re.findall(r"\d+\.\d+", str(mathtext.rounded(expr, digits))):
            assert number in math_text and number in result.fitted_text
    assert parsed.pre["fitted-model"] == result.fitted_text


def test_report_table_has_the_metrics_of_both_models(page, result):
    _, parsed = read(page)
    header, *rows = parsed.cells
    assert header[:6] == ["model", "split", "NLL per trial", "accuracy", "AIC", "BIC"]
    assert [row[:2] for row in rows] == [["network", "train"], ["equations", "train"]]
    for row in rows:
        m = result.metrics[row[0]][row[1]]
        assert float(row[2]) == pytest.approx(m["nll_per_trial"], abs=1e-5)
        assert float(row[3]) == pytest.approx(m["accuracy"], abs=1e-4)
        assert float(row[4]) == pytest.approx(m["aic"], abs=0.1)
        assert float(row[5]) == pytest.approx(m["bic"], abs=0.1)
        assert int(row[6]) == m["n_params"]


def test_report_is_self_contained_with_png_images(page):
    text, parsed = read(page)
    assert set(parsed.images) == {"loss", "session-0", "session-1", "session-2"}
    for uri in parsed.images.values():
        assert uri.startswith("data:image/png;base64,")
        png = base64.b64decode(uri.split(",", 1)[1], validate=True)
        image = Image.open(io.BytesIO(png))
        assert image.format == "PNG" and image.size[0] >= 800
    # Nothing to fetch: no scripts, no style sheets, no addresses.
    assert not parsed.tags & {"script", "link", "iframe", "object"}
    assert not re.search(r"(src|href)\s*=\s*\"(?!data:)", text)
    assert "http" not in text
    assert page.stat().st_size < 3_000_000
    assert [p.name for p in page.parent.iterdir()] == ["report.html"]  # no temporary left


def test_equations_latex_for_notebooks(result):
    latex = mathtext.equations_latex(result)
    assert latex.startswith(r"$$\begin{aligned}") and latex.endswith(r"\end{aligned}$$")
    lines = latex[len(r"$$\begin{aligned}") : -len(r"\end{aligned}$$")].split(r" \\ ")
    assert len(lines) == len(result.equations)
    for line, name in zip(lines, result.equations, strict=True):
        assert line.startswith(r"\mathrm{" + name.replace("_", r"\_") + "} &= ")


def test_report_of_an_embedding_fit_shows_participant_coefficients(tmp_path):
    from spicedsl.runtime.simulate import simulate as run_simulation

    truth = api.load_model(EXAMPLES / "q_learning.spice")
    dataset, _ = run_simulation(truth, 6, 20, np.random.default_rng(0), np.repeat(np.arange(3), 2))
    fit = api.fit(EXAMPLES / "individual_differences.spice", dataset, progress=False, **TINY)
    _, parsed = read(report.write_report(fit, dataset, tmp_path / "report.html", sessions=1))
    assert set(parsed.images) == {"loss", "session-0", "coefficients"}
    assert parsed.pre["participant-summary"] == fit.participant_summary()
    assert "# per participant (3)" in parsed.pre["participant-summary"]


def screenshot(chromium: str, html_file: Path, png: Path) -> np.ndarray:
    subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--screenshot={png}", html_file.as_uri()],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return np.asarray(Image.open(png).convert("RGB")).astype(int)


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (apt-get update && apt-get install -y chromium)",
)
def test_chromium_shows_the_equations_and_the_plots(tmp_path, page):
    """A screenshot of the report, and of the same page with the math or the images made
    invisible (same layout): whatever differs is what the math and the images show."""
    text = page.read_text(encoding="utf-8")
    variants = {"full": text}
    for hidden in ("math", "img"):
        variants[hidden] = text.replace("</style>", f"{hidden} {{ visibility: hidden; }}</style>")
    shots = {}
    for name, content in variants.items():
        html_file = tmp_path / f"{name}.html"
        html_file.write_text(content, encoding="utf-8")
        shots[name] = screenshot(CHROMIUM, html_file, tmp_path / f"{name}.png")
    full = shots["full"]
    assert full.shape == (3000, 1200, 3)
    assert len(np.unique(full.reshape(-1, 3), axis=0)) > 50
    # The equations: visible ink, near the top of the page (they come first).
    math_ink = np.abs(full - shots["math"]).sum(-1) > 0
    assert math_ink.sum() > 300
    assert np.nonzero(math_ink.any(1))[0].max() < 600
    # The plots: a large area, not uniform, with many colours.
    image_ink = np.abs(full - shots["img"]).sum(-1) > 0
    assert image_ink.sum() > 100_000
    rows = np.nonzero(image_ink.any(1))[0]
    area = full[rows.min() : rows.max() + 1]
    assert area.std() > 10
    assert len(np.unique(area.reshape(-1, 3), axis=0)) > 50
