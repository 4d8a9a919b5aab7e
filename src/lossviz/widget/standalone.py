"""A standalone interactive HTML page of the Explorer's current views: the figures the front end drew
(plotly JSON), laid out in a grid, with plotly.js inlined so the page opens with no kernel and no network.

The figures come from a widget message (untrusted): each must be ``{"name": str, "data": [trace, ...],
"layout": {...}}``; plotly's serializer escapes ``</script>`` in them, and the title is HTML-escaped.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.io as pio

from lossviz.widget.payloads import PayloadError

__all__ = ["checked_figures", "standalone_html"]

_MAX_FIGURES = 12


def checked_figures(raw: Any) -> list[dict[str, Any]]:
    """The figures of an ``export_html`` message, checked: a list of 1 to 12 ``{name, data, layout}``."""
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not 1 <= len(raw) <= _MAX_FIGURES:
        raise PayloadError(f"'figures' must be a list of 1 to {_MAX_FIGURES} figures: draw a view, then export")
    out = []
    for k, fig in enumerate(raw):
        if (not isinstance(fig, Mapping) or not isinstance(fig.get("data"), list)
                or not isinstance(fig.get("layout", {}), Mapping)):
            raise PayloadError(f"figure {k} must be an object with a 'data' list and a 'layout' object")
        if not all(isinstance(t, Mapping) for t in fig["data"]):
            raise PayloadError(f"figure {k}'s 'data' must hold trace objects")
        out.append({"name": str(fig.get("name", f"view {k + 1}")), "data": list(fig["data"]),
                    "layout": dict(fig.get("layout", {}))})
    return out


def standalone_html(figures: Sequence[Mapping[str, Any]], title: str = "lossviz views") -> str:
    """One HTML page: every figure in a resizable grid cell, plotly.js inlined once (the first figure)."""
    cells = []
    for k, fig in enumerate(figures):
        div = pio.to_html({"data": fig["data"], "layout": fig["layout"]}, include_plotlyjs=(k == 0), full_html=False,
                          validate=False, default_height="100%", default_width="100%", config={"responsive": True})
        name = html.escape(str(fig.get("name", "")))
        cells.append(f'<section class="lv-view" data-view="{name}">{div}</section>')
    head = html.escape(title)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{head}</title>
<style>body {{ font: 13px system-ui, sans-serif; margin: 12px; }}
main {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 12px; }}
.lv-view {{ height: 460px; border: 1px solid #ddd; border-radius: 4px; }}</style></head>
<body><h3>{head}</h3><p>Exported from the lossviz Explorer: zoom, pan and hover work without a kernel.</p>
<main>{"".join(cells)}</main></body></html>
"""
