"""lossviz.widget.standalone: the standalone HTML page of the Explorer's views, and the check of its message."""

from __future__ import annotations

import json
import re

import pytest
from plotly.offline import get_plotlyjs

from lossviz.widget.payloads import PayloadError
from lossviz.widget.standalone import checked_figures, standalone_html

FIG = {"name": "scatter", "data": [{"type": "scatter", "x": [1, 2, 3], "y": [3, None, 1], "name": "</script><b>x"}],
       "layout": {"title": {"text": "t"}}}


def test_page_inlines_plotly_once_and_carries_every_figure():
    page = standalone_html([FIG, {**FIG, "name": "contour"}], title="a <title>")
    assert page.count("<section class=\"lv-view\"") == 2
    assert 'data-view="scatter"' in page and 'data-view="contour"' in page
    # plotly.js itself is inlined (no <script src=...>, so the page needs no network), once
    assert not re.search(r"<script[^>]+src=", page)
    head = get_plotlyjs()[:300]
    assert page.count(head) == 1
    # the figure's data, as JSON, in a Plotly.newPlot call; no raw </script> from the data; the title escaped
    calls = re.findall(r"Plotly\.newPlot\(\s*\"[^\"]+\",\s*(\[.*?\]),\s*\{", page, re.S)
    assert len(calls) == 2 and json.loads(calls[0])[0]["x"] == [1, 2, 3]
    assert "</script><b>x" not in page
    assert "<title>a &lt;title&gt;</title>" in page


@pytest.mark.parametrize("bad, words", [
    (None, "list of 1 to 12"), ([], "list of 1 to 12"), ("abc", "list of 1 to 12"), ([FIG] * 13, "list of 1 to 12"),
    ([{"data": "x"}], "'data' list"), ([{"data": [1]}], "trace objects"),
    ([{"data": [], "layout": 3}], "'layout' object"),
])
def test_bad_figures_are_refused_in_words(bad, words):
    with pytest.raises(PayloadError, match=words):
        checked_figures(bad)


def test_checked_figures_names_unnamed_ones():
    assert checked_figures([{"data": []}])[0] == {"name": "view 1", "data": [], "layout": {}}


def test_the_export_html_command_writes_the_page_and_sends_it(tmp_path):
    from lossviz.widget.explorer import Explorer
    from unit.test_widget import FakeSession

    fake = FakeSession(tmp_path / "proj")
    w = Explorer(fake, throttle=0, background=False)
    sent = []
    w.send = lambda content, buffers=None: sent.append((content, buffers))
    w.handle({"type": "export_html", "figures": [FIG], "title": "demo"})
    assert w.error == ""
    pages = list((tmp_path / "proj" / "exports").glob("views_*.html"))
    assert len(pages) == 1 and "<title>demo</title>" in pages[0].read_text()
    assert sent[0][0] == {"type": "download", "filename": pages[0].name, "mime": "text/html"}
    assert bytes(sent[0][1][0]) == pages[0].read_bytes()
    w.handle({"type": "export_html", "figures": "everything"})
    assert "list of 1 to 12" in w.error
    w.close()
