"""The Explorer notebook widget: :class:`Explorer` (traits and handlers) and the modules it is built from.

- :mod:`~lossviz.widget.options`: constants shared with the front end (the ``options`` trait);
- :mod:`~lossviz.widget.serializers`: arrays as binary buffers on the wire;
- :mod:`~lossviz.widget.payloads`: checks of the front end's command messages;
- :mod:`~lossviz.widget.views`: the view models the traits hold;
- :mod:`~lossviz.widget.protocol`: what the Explorer needs of a session.
"""

from __future__ import annotations

from lossviz.widget.explorer import COMMANDS, Explorer
from lossviz.widget.payloads import PayloadError, surface_axis_spec
from lossviz.widget.serializers import to_wire, wire_array, wire_mask
from lossviz.widget.views import checkpoint_table, schedule_text

__all__ = [
    "COMMANDS",
    "Explorer",
    "PayloadError",
    "checkpoint_table",
    "schedule_text",
    "surface_axis_spec",
    "to_wire",
    "wire_array",
    "wire_mask",
]
