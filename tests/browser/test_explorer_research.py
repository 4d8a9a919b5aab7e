"""The Explorer's research views (issue 15) in JupyterLab with a real kernel, in Debian Chromium through
Playwright: brush the ends of two branches, Connect, and the 1-D view draws the curve's and the line's profiles
with the kernel's barriers in its title; open a checkpoint, Spectrum, and the spectrum tab draws the
eigenvalue density with the kernel's trace in its title. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from browser.helpers import BUNDLE, browser, kernel_view, lab_notebook, pixel_of, require_chromium, shot, wait_for
from browser.test_explorer_ui import EXPLORER

NOTEBOOK = Path(__file__).resolve().parent / "explorer_research.ipynb"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    require_chromium()
    assert BUNDLE.exists(), "build the front end first: npm install && npm run build"
    with browser() as chromium, lab_notebook(chromium, NOTEBOOK, tmp_path_factory.mktemp("research")) as page:
        yield page


kernel = kernel_view


def brush(page, ident):
    """A short drag over checkpoint ``ident``: the brush adds it to the selection."""
    page.locator(f"{EXPLORER} .lv-cell-scatter").scroll_into_view_if_needed()
    x, y = pixel_of(page, ident)
    page.mouse.move(x - 3, y)
    page.mouse.down()
    page.mouse.move(x, y, steps=3)
    page.mouse.move(x + 3, y, steps=3)
    page.mouse.up()


def numbers(text):
    return [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", text)]


def save(page, selector, name):
    shot(page, f"research-{name}", element=selector)
    shot(page, f"research-{name}-page")


def test_connect_and_spectrum_in_jupyterlab(lab):
    page = lab
    try:
        research_session(page)
    except BaseException:
        shot(page, "research-failure")
        raise


def research_session(page):
    page.wait_for_function("() => [...document.querySelectorAll('.jp-StatusBar-TextItem')]"
                           ".some((e) => /\\|\\s*Idle/.test(e.textContent))", timeout=120_000)
    page.locator("div.lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()
    page.wait_for_selector(f"{EXPLORER} .lv-scatter-plot .main-svg", timeout=120_000)
    k = wait_for(lambda: kernel(page), what="the notebook's probe file")
    ids = k["ids"]
    wait_for(lambda: int(page.get_attribute(f"{EXPLORER} .lv-cell-scatter", "data-points")) == len(ids),
             what="points drawn")
    # 1. two checkpoints brushed, then Connect: the curve and the line in the 1-D view, barriers in the title
    a, b = k["ends"]  # the ends of two branches trained from two starts
    brush(page, a)
    brush(page, b)
    wait_for(lambda: kernel(page)["selection"] == [a, b], what=f"checkpoints {a} and {b} selected")
    page.fill(f"{EXPLORER} input.lv-connect-epochs", "3")
    page.select_option(f"{EXPLORER} select.lv-connect-curve", "bezier")
    page.click(f"{EXPLORER} button.lv-connect")
    conn = wait_for(lambda: (c := kernel(page)["connection"]).get("a") == a and c, timeout=60, what="the connection")
    assert (conn["b"], conn["curve"], conn["epochs"]) == (b, "bezier", 3)
    wait_for(lambda: any(j["kind"] == "connect" and j["state"] == "done" for j in kernel(page)["jobs"]),
             what="the connect job listed as done")
    page.wait_for_selector(f"{EXPLORER} .lv-job[data-state=done]", timeout=30_000)
    lines = f"{EXPLORER} .lv-lines-plot"
    wait_for(lambda: page.locator(f"{lines} .scatterlayer .trace").count() == 4, what="4 traces in the 1-D view")
    title = page.text_content(f"{lines} .gtitle")
    assert title.startswith(f"connect {a} → {b} (bezier, 3 ep.)"), title
    shown = numbers(title.split("barrier", 1)[1])
    assert shown == pytest.approx([conn["barriers"]["line"], conn["barriers"]["curve"]], rel=5e-3, abs=5e-4), title
    legend = page.text_content(f"{lines} .legend")
    assert "barrier" in legend and "bezier" in legend and "line" in legend, legend
    save(page, f"{EXPLORER} .lv-cell-lines", "connect-1d")

    # 2. a checkpoint opened, Spectrum: the density with the top eigenvalues marked and the trace in the title
    last = ids[-1]
    page.locator(f"{EXPLORER} .lv-cell-scatter").scroll_into_view_if_needed()
    page.mouse.click(*pixel_of(page, last))
    wait_for(lambda: kernel(page)["clicked"] == last, what="the last checkpoint opened")
    page.click(f"{EXPLORER} button.lv-spectrum-btn")
    sp = wait_for(lambda: (s := kernel(page)["spectrum"]).get("checkpoint") == last and s, timeout=60,
                  what="the spectrum")
    plot = f"{EXPLORER} .lv-spectrum-plot"
    page.wait_for_selector(f"{plot} .scatterlayer .trace", state="visible", timeout=30_000)
    wait_for(lambda: "trace" in page.text_content(f"{plot} .gtitle"), what="the spectrum's title")
    title = page.text_content(f"{plot} .gtitle")
    m = re.search(r"trace (-?[\d.e+-]+)", title)
    assert m and float(m.group(1)) == pytest.approx(sp["trace"], rel=1e-3), title
    assert page.locator(f"{plot} .scatterlayer .trace").count() == 2  # density and the eigenvalue markers
    assert page.locator(f"{plot} .scatterlayer .trace .textpoint").count() == len(sp["eigenvalues"])
    assert kernel(page)["error"] == ""
    save(page, f"{EXPLORER} .lv-col-right", "spectrum-tab")
    shot(page, "research-explorer-full")
    assert page.errors == [], page.errors
