"""The Explorer in a real browser (Debian Chromium through Playwright), acting as a person.

1. A Jupyter-free harness (``tests/browser/harness.html``: the built bundle + a mock model) for the front-end
   gestures and form logic, checked against independent geometry computed here.
2. JupyterLab with a real kernel and a real :class:`lossviz.session.Session` (``tests/browser/
   explorer_e2e.ipynb``): restart-and-run-all through the menu, views render, brush / Ctrl-lasso / Alt-deselect
   change ``selection`` in the kernel, a click fills the form, Train adds checkpoints (kernel and points),
   Cancel stops a run, Disturb adds a branch, Surface fills the contour, an invalid field shows an error.
   Surface with "adaptive" ticked: the kernel gets an adaptive surface, the contour's title says so.

Screenshots go to ``test-artifacts/``. Without Chromium these tests fail (they never skip).
"""

from __future__ import annotations

import itertools
import json
import math
import time

import pytest

from browser.helpers import ROOT, kernel_view, lab_notebook, shot, static_server, wait_for

NOTEBOOK = ROOT / "tests" / "browser" / "explorer_e2e.ipynb"
EXPLORER = ".lossviz-explorer"


# ----------------------------------------------------------------------------------------- geometry (independent)
def seg_dist(p, a, b):
    ax, ay = a
    bx, by = b
    px, py = p
    dx, dy = bx - ax, by - ay
    L2 = dx * dx + dy * dy
    t = 0.0 if L2 == 0 else max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / L2))
    return math.hypot(ax + t * dx - px, ay + t * dy - py)


def in_rect(p, x0, y0, x1, y1):
    return x0 < p[0] < x1 and y0 < p[1] < y1




def point_pixels(page):
    """Page-coordinate pixel of every checkpoint in the scatter: {id: (x, y)}."""
    return {int(k): tuple(v) for k, v in page.evaluate(
        """() => {
            const box = document.querySelector('.lossviz-explorer').__lossviz;
            const plot = box.views.scatter.el.getBoundingClientRect();
            const out = {};
            const ids = box.ctx.state.projection.ids;
            for (const id of ids) {
                const p = box.views.scatter.pixelOf(id);
                if (p) out[id] = [plot.left + p[0], plot.top + p[1]];
            }
            return out;
        }"""
    ).items()}


def drag(page, path, modifiers=(), steps_per_segment=8):
    for m in modifiers:
        page.keyboard.down(m)
    page.mouse.move(*path[0])
    page.mouse.down()
    for a, b in itertools.pairwise(path):
        for s in range(1, steps_per_segment + 1):
            t = s / steps_per_segment
            page.mouse.move(a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]))
    page.mouse.up()
    for m in reversed(modifiers):
        page.keyboard.up(m)


def brush_expectation(pixels, a, b, radius=8.0, band=1.0):
    """(must, may): ids surely within the brush, and those on the 8 px edge (either is right)."""
    must = {i for i, p in pixels.items() if seg_dist(p, a, b) <= radius - band}
    may = {i for i, p in pixels.items() if abs(seg_dist(p, a, b) - radius) < band}
    return must, may


def assert_set_between(actual, must, may, what):
    actual = set(actual)
    assert must <= actual <= must | may, (
        f"{what}: got {sorted(actual)}, expected {sorted(must)} (+ maybe {sorted(may)})"
    )


# ----------------------------------------------------------------------------------------- 1. harness


@pytest.fixture(scope="module")
def harness_page(chromium):
    b = chromium
    with static_server() as url:
        page = b.new_page(viewport={"width": 1320, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{url}/tests/browser/harness.html")
        page.wait_for_function("window.harnessReady === true", timeout=60_000)
        page.wait_for_selector(".lv-contour-plot .main-svg", timeout=60_000)
        page.wait_for_selector(".lv-surface3d-plot canvas", timeout=60_000)
        page.errors = errors
        yield page


def model_state(page, key):
    return page.evaluate(f"() => window.model.state[{json.dumps(key)}]")


def test_harness_renders_every_view(harness_page):
    page = harness_page
    assert page.errors == []
    n_plots = page.locator(f"{EXPLORER} .js-plotly-plot").count()
    assert n_plots == 6  # scatter, metrics, contour, 3-D, 1-D, spectrum (its tab)
    assert page.locator(".lv-scatter-plot .scatterlayer .point").count() >= 40  # 40 checkpoints (+ overlays)
    assert page.locator(".lv-contour-plot .contourlayer path").count() > 10
    assert page.locator(".lv-surface3d-plot canvas").count() >= 1
    shot(page, "harness-views")


def test_harness_brush_lasso_deselect_click_and_form(harness_page):
    page = harness_page
    page.evaluate("() => { window.model.set('selection', []); }")
    pix = point_pixels(page)
    # brush along branch 0 from checkpoint 2 to checkpoint 6
    a, b = pix[2], pix[6]
    drag(page, [a, b])
    must, may = brush_expectation(pix, a, b)
    assert {2, 6} <= must
    sel = wait_for(lambda: model_state(page, "selection"), what="brush selection")
    assert_set_between(sel, must, may, "brush")
    assert page.evaluate("() => window.model.saves.some((s) => s.includes('selection'))")
    # Ctrl-lasso: a rectangle around checkpoints 30..34 (branch 2) adds them
    assert point_pixels(page) == pix  # selecting does not move the view
    xs = [pix[i][0] for i in range(30, 35)]
    ys = [pix[i][1] for i in range(30, 35)]
    x0, x1, y0, y1 = min(xs) - 6, max(xs) + 6, min(ys) - 6, max(ys) + 6
    drag(page, [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0 + 1)], modifiers=("Control",))
    lasso = {i for i, p in pix.items() if in_rect(p, x0, y0, x1, y1)}
    assert set(range(30, 35)) <= lasso
    sel2 = wait_for(lambda: (s := model_state(page, "selection")) != sel and s, what="lasso selection")
    assert set(sel2) == set(sel) | lasso
    # Alt-brush over checkpoint 2 (selected by the brush) removes just the points near it
    assert 2 in sel2
    c = pix[2]
    drag(page, [(c[0] - 3, c[1]), (c[0] + 3, c[1])], modifiers=("Alt",))
    near = {i for i, p in pix.items() if seg_dist(p, (c[0] - 3, c[1]), (c[0] + 3, c[1])) <= 8}
    sel3 = wait_for(lambda: (s := model_state(page, "selection")) != sel2 and s, what="deselect")
    assert set(sel3) == set(sel2) - near and 2 not in sel3
    # hover card, then click opens a checkpoint
    page.mouse.move(*pix[7])
    page.wait_for_selector(".lv-card:not([hidden])")
    assert "checkpoint 7" in page.inner_text(".lv-card")
    page.mouse.click(*pix[7])
    wait_for(lambda: model_state(page, "clicked") == 7, what="clicked = 7")
    # form: an edited field is marked; an invalid one is refused in words and nothing is sent
    n_sent = page.evaluate("() => window.model.sent.length")
    page.fill(".lv-form input[name=lr]", "-0.5")
    assert page.locator(".lv-field[data-field=lr].lv-edited").count() == 1
    page.click("button.lv-train")
    page.wait_for_selector(".lv-error:not([hidden])")
    assert "learning rate must be greater than 0" in page.inner_text(".lv-error")
    assert page.evaluate("() => window.model.sent.length") == n_sent
    page.fill(".lv-form input[name=lr]", "0.05")
    page.fill(".lv-form input[name=epochs]", "3")
    page.click("button.lv-train")
    msg = page.evaluate("() => window.model.sent.at(-1)")
    assert msg["type"] == "train" and msg["from"] == 7 and msg["epochs"] == 3 and msg["hparams"]["lr"] == 0.05
    # select none clears; wheel zoom changes the axis range
    page.click("button.lv-select-none")
    assert page.evaluate("() => window.model.sent.at(-1).type") == "select_none"
    x_range = "() => document.querySelector('.lv-scatter-plot')._fullLayout.xaxis.range.slice()"
    before = page.evaluate(x_range)
    page.mouse.move(*pix[10])
    page.mouse.wheel(0, -300)
    wait_for(lambda: page.evaluate(x_range) != before, what="zoom")
    after = page.evaluate(x_range)
    assert after[1] - after[0] < before[1] - before[0]
    shot(page, "harness-after-gestures")
    assert page.errors == []


# ----------------------------------------------------------------------------------------- 2. JupyterLab
@pytest.fixture(scope="module")
def lab(tmp_path_factory, chromium):
    with lab_notebook(chromium, NOTEBOOK, tmp_path_factory.mktemp("e2e"), viewport=(1500, 1000)) as page:
        yield page


def scatter_points(page):
    """How many checkpoints the Explorer's scatter cell says it draws."""
    return int(page.get_attribute(f"{EXPLORER} .lv-cell-scatter", "data-points"))


kernel = kernel_view


def restart_and_run_all(page, attempts=3):
    """Kernel restart and run all cells through the Run menu, as a person does; retried if the page was
    not ready to take it (the first cell's execution count never appears)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    for attempt in range(attempts):
        # restarting a kernel that is still starting loses its websocket: wait until the status bar says Idle
        page.wait_for_function(
            "() => [...document.querySelectorAll('.jp-StatusBar-TextItem')]"
            ".some((e) => /\\|\\s*Idle/.test(e.textContent))",
            timeout=120_000,
        )
        time.sleep(3.0)
        page.locator("div.lm-MenuBar-itemLabel", has_text="Run").first.click()
        item = page.locator("li.lm-Menu-item[data-command='runmenu:restart-and-run-all']")
        item.wait_for(state="visible", timeout=30_000)
        item.click()
        accept = page.locator(".jp-Dialog .jp-mod-accept")
        accept.wait_for(state="visible", timeout=30_000)
        accept.click()
        try:
            page.wait_for_function(
                "() => [...document.querySelectorAll('.jp-InputArea-prompt')]"
                ".some((e) => /\\[(\\*|\\d+)\\]/.test(e.textContent))",
                timeout=60_000,
            )
            return
        except PlaywrightTimeoutError:
            shot(page, f"lab-restart-attempt-{attempt}")
    raise AssertionError("restart-and-run-all from the Run menu never started the cells")


def test_jupyterlab_person_session(lab):
    try:
        person_session(lab)
    except BaseException:
        shot(lab, "lab-failure")
        raise


def person_session(page):
    t0 = time.time()
    restart_and_run_all(page)
    page.wait_for_selector(f"{EXPLORER} .lv-scatter-plot .main-svg", timeout=240_000)
    page.wait_for_selector(f"{EXPLORER} .lv-cell-contour[data-state=complete]", timeout=120_000)
    page.wait_for_selector(f"{EXPLORER} .lv-surface3d-plot canvas", timeout=120_000)
    first_render = time.time() - t0
    k = wait_for(lambda: kernel(page), what="the notebook's probe file")
    n0 = k["n_checkpoints"]
    assert n0 >= 5
    page.locator(f"{EXPLORER} .lv-cell-scatter").scroll_into_view_if_needed()
    time.sleep(0.5)
    assert page.locator(f"{EXPLORER} .js-plotly-plot").count() == 6  # and the spectrum tab
    assert page.locator(f"{EXPLORER} .lv-contour-plot .contourlayer path").count() > 5
    wait_for(lambda: scatter_points(page) == n0, what="points drawn")
    shot(page, "lab-1-rendered")

    # brush along the main branch (layout: epoch x lane): from its 2nd to its 4th checkpoint
    pix = point_pixels(page)
    ids = k["ids"]
    a, b = pix[ids[1]], pix[ids[3]]
    must, may = brush_expectation(pix, a, b)
    assert {ids[1], ids[2], ids[3]} <= must
    drag(page, [a, b])
    sel = wait_for(lambda: kernel(page)["selection"], what="brush selection in the kernel")
    assert_set_between(sel, must, may, "brush (kernel)")
    shot(page, "lab-2-brushed")

    # Ctrl-lasso around the last checkpoint adds it
    last = pix[ids[-1]]
    x0, x1, y0, y1 = last[0] - 12, last[0] + 12, last[1] - 12, last[1] + 12
    drag(page, [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0 + 1)], modifiers=("Control",))
    lasso = {i for i, p in pix.items() if in_rect(p, x0, y0, x1, y1)}
    assert ids[-1] in lasso
    sel2 = wait_for(lambda: (s := kernel(page)["selection"]) != sel and s, what="lasso selection in the kernel")
    assert set(sel2) == set(sel) | lasso

    # Alt-brush over the 3rd checkpoint removes it
    assert point_pixels(page) == pix  # selecting does not move the view
    c = pix[ids[2]]
    seg = ((c[0] - 2, c[1]), (c[0] + 2, c[1]))
    drag(page, list(seg), modifiers=("Alt",))
    near = {i for i, p in pix.items() if seg_dist(p, *seg) <= 8}
    sel3 = wait_for(lambda: (s := kernel(page)["selection"]) != sel2 and s, what="deselect in the kernel")
    assert set(sel3) == set(sel2) - near and ids[2] not in sel3
    shot(page, "lab-3-lasso-deselect")

    # click the 3rd checkpoint: the form fills with its hyperparameters (kernel and page agree)
    page.mouse.click(*pix[ids[2]])
    k = wait_for(lambda: (q := kernel(page))["clicked"] == ids[2] and q, what="clicked in the kernel")
    assert k["form"]["checkpoint"] == ids[2]
    assert float(page.input_value(f"{EXPLORER} .lv-form input[name=lr]")) == pytest.approx(k["form"]["lr"])
    assert page.input_value(f"{EXPLORER} .lv-form input[name=batch_size]") == str(k["form"]["batch_size"])
    assert f"checkpoint {ids[2]}" in page.inner_text(f"{EXPLORER} .lv-branch-header")

    # an invalid field shows an error in words; nothing is trained
    page.fill(f"{EXPLORER} .lv-form input[name=lr]", "abc")
    page.click(f"{EXPLORER} button.lv-train")
    page.wait_for_selector(f"{EXPLORER} .lv-error:not([hidden])")
    assert "not a number" in page.inner_text(f"{EXPLORER} .lv-error")
    wait_for(lambda: "not a number" in kernel(page)["error"], what="the error in the kernel")
    # a value only the session refuses (momentum 1.5) comes back as the kernel's error, in words
    page.fill(f"{EXPLORER} .lv-form input[name=lr]", "0.05")
    page.fill(f"{EXPLORER} .lv-form input[name=momentum]", "1.5")
    page.click(f"{EXPLORER} button.lv-train")
    wait_for(lambda: "momentum" in kernel(page)["error"], what="the session's momentum error")
    wait_for(lambda: "momentum" in page.inner_text(f"{EXPLORER} .lv-error"), timeout=20,
             what="the momentum error shown")
    assert kernel(page)["n_checkpoints"] == n0
    shot(page, "lab-4-invalid-field")
    page.click(f"{EXPLORER} .lv-dismiss")

    # Train 2 epochs from the clicked checkpoint: new checkpoints in the kernel and as points
    page.fill(f"{EXPLORER} .lv-form input[name=momentum]", "0.9")
    page.fill(f"{EXPLORER} .lv-form input[name=epochs]", "2")
    page.click(f"{EXPLORER} button.lv-train")
    k = wait_for(lambda: (q := kernel(page))["n_checkpoints"] >= n0 + 2 and q, timeout=180, what="trained checkpoints")
    assert len(k["branches"]) >= 2  # training from a middle checkpoint starts a branch
    wait_for(lambda: scatter_points(page) == k["n_checkpoints"], what="new points drawn")
    wait_for(lambda: any(j["kind"] == "train" and j["state"] == "done" for j in kernel(page)["jobs"]),
             what="train job done")
    shot(page, "lab-5-trained")

    # a long run, cancelled from its job row
    n1 = kernel(page)["n_checkpoints"]
    page.fill(f"{EXPLORER} .lv-form input[name=epochs]", "500")
    page.click(f"{EXPLORER} button.lv-train")
    page.wait_for_selector(f"{EXPLORER} .lv-job[data-state=running] .lv-job-cancel", timeout=60_000)
    page.click(f"{EXPLORER} .lv-job[data-state=running] .lv-job-cancel")
    k = wait_for(lambda: (q := kernel(page)) and any(j["state"] == "cancelled" for j in q["jobs"]) and q,
                 timeout=60, what="cancelled job")
    assert k["n_checkpoints"] < n1 + 500
    shot(page, "lab-6-cancelled")

    # Disturb the clicked checkpoint: a new branch
    branches = set(kernel(page)["branches"])
    page.fill(f"{EXPLORER} .lv-form input[name=magnitude]", "0.5")
    page.click(f"{EXPLORER} button.lv-disturb")
    k = wait_for(lambda: (q := kernel(page)) and len(set(q["branches"]) - branches) >= 1 and q,
                 timeout=60, what="a disturbed branch")
    wait_for(lambda: scatter_points(page) == kernel(page)["n_checkpoints"], what="disturbed point drawn")

    # Surface around the clicked checkpoint: the contour fills in
    page.fill(f"{EXPLORER} .lv-form input[name=resolution]", "11")
    page.fill(f"{EXPLORER} .lv-form input[name=range]", "-0.5:0.5")
    page.click(f"{EXPLORER} button.lv-surface")
    k = wait_for(lambda: (q := kernel(page))["surface_center"] == ids[2] and q["surface_total"] == 121
                 and q["surface_done"] == 121 and q,
                 timeout=180, what="the new surface, complete")
    page.wait_for_selector(f"{EXPLORER} .lv-cell-contour[data-state=complete]")
    title = page.text_content(f"{EXPLORER} .lv-contour-plot .gtitle")
    assert f"checkpoint {ids[2]}" in title
    shot(page, "lab-7-surface")
    assert k["surface_adaptive"] is None

    # the same, adaptive (33 x 33: a first lattice every 3rd point, then rounds up to a fifth of the grid)
    page.check(f"{EXPLORER} .lv-form input[name=adaptive]")
    page.fill(f"{EXPLORER} .lv-form input[name=resolution]", "33")
    page.click(f"{EXPLORER} button.lv-surface")
    def adaptive_done(q):  # the job done and its last round's surface arrived (the job's count is the points evaluated)
        job = max((j for j in q["jobs"] if j["kind"] == "surface"), key=lambda j: j["id"])
        return (q["surface_total"] == q["surface_done"] == 33 * 33 and q["surface_adaptive"] and job["state"] == "done"
                and job["done"] == q["surface_adaptive"]["n_evaluated"])

    k = wait_for(lambda: adaptive_done(q := kernel(page)) and q, timeout=180, what="the adaptive surface, done")
    n_eval = k["surface_adaptive"]["n_evaluated"]
    assert 11 * 11 <= n_eval <= 0.2 * 33 * 33, k["surface_adaptive"]
    wait_for(lambda: page.get_attribute(f"{EXPLORER} .lv-cell-contour", "data-adaptive") == str(n_eval),
             what="the adaptive mark drawn")
    title = page.text_content(f"{EXPLORER} .lv-contour-plot .gtitle")
    assert f"adaptive: {n_eval} of {33 * 33} points evaluated" in title, title
    shot(page, "lab-8-adaptive-surface")
    assert kernel(page)["error"] == ""
    assert page.errors == [], page.errors
    print(f"display to first complete contour: {first_render:.1f} s")
