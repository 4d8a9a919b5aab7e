"""The Explorer on a real (tiny) Session: a reopened project shows its stored surfaces (a damaged file is
named, the others still shown), and the surface on screen is exported as VTP, PLY and GIF downloads that
independent readers accept."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lossviz.io.h5 import read_surface  # noqa: E402
from lossviz.session import Session  # noqa: E402
from lossviz.widget import Explorer  # noqa: E402
from lossviz.widget.exports import GIF_FRAMES, branch_paths  # noqa: E402

# the ``session`` fixture (a small spirals project): tests/unit/conftest.py


def _reopened(session):
    return Session(session.path, device="cpu")


def _explorer(session):
    w = Explorer(session, throttle=0.02, background=True)
    sent: list = []
    w.send = lambda content, buffers=None: sent.append((content, buffers))
    return w, sent


def test_a_reopened_project_shows_its_newest_stored_surface(session):
    first = session.train(epochs=2).wait(120)
    older = session.surface(first[0].id, x="-1:1:3", y="-1:1:3")
    newer = session.surface(first[-1].id, x="-1:1:5", y="-1:1:4")
    assert older is not None and newer is not None
    reopened = _reopened(session)
    w, _ = _explorer(reopened)
    try:
        w.wait_idle(60)
        assert [e["complete"] for e in w.stored_surfaces] == [True, True]
        assert w.stored_surfaces[0]["label"].startswith(f"checkpoint {first[-1].id} · random · x -1:1:5, y -1:1:4")
        shown = w.surface
        assert shown and shown["total"] == 20 and shown["done"] == 20
        row = next(r for r in reopened.surfaces() if r["key"] == w.stored_surfaces[0]["key"])
        stored = read_surface(row["path"])  # the file itself, read independently of the Session
        z = np.asarray(shown["z"], dtype=np.float64).reshape(4, 5)
        np.testing.assert_allclose(z, stored.values[shown["metric"]], rtol=1e-6)
        assert shown.get("trajectory") is not None  # the checkpoints placed in the stored plane
        # the other stored surface, picked from the list
        w.handle({"type": "show_stored_surface", "key": w.stored_surfaces[1]["key"]})
        assert w.error == "", w.error
        assert w.surface["total"] == 9
        w.handle({"type": "show_stored_surface", "key": "../../etc/passwd"})
        assert "not one of the project's stored surfaces" in w.error
        assert w.surface["total"] == 9  # the view is kept
    finally:
        w.close()
        reopened.close()


def test_a_damaged_stored_surface_is_named_and_the_next_one_shown(session):
    first = session.train(epochs=1).wait(120)
    session.surface(first[0].id, x="-1:1:3", y="-1:1:3")
    session.surface(first[-1].id, x="-1:1:5", y="-1:1:5")
    rows = sorted(session.surfaces(), key=lambda r: r["created"])
    rows[-1]["path"].write_bytes(b"not an HDF5 file")  # the newest one damaged
    reopened = _reopened(session)
    w, _ = _explorer(reopened)
    try:
        w.wait_idle(60)
        assert "cannot be read" in w.error and f"checkpoint {first[-1].id}" in w.error
        assert w.surface and w.surface["total"] == 9  # the older one is shown
        w.handle({"type": "show_stored_surface", "key": rows[-1]["key"]})
        assert "cannot be read" in w.error and w.surface["total"] == 9
    finally:
        w.close()
        reopened.close()


def test_vtp_ply_and_gif_exports_of_the_surface_on_screen(session):
    from PIL import Image

    first = session.train(epochs=3).wait(120)
    w, sent = _explorer(session)
    try:
        w.handle({"type": "export_file", "format": "vtp"})
        assert "no surface to export" in w.error
        w.handle({"type": "surface", "center": first[-1].id, "directions": "random", "x_range": "-1:1",
                  "y_range": "-0.5:0.5", "resolution": 5})
        session.jobs[-1].wait(120)
        w.wait_idle(60)
        assert w.error == "", w.error
        surf = w._surface_obj
        nx, ny = len(surf.x), len(surf.y)

        w.handle({"type": "export_file", "format": "vtp", "metric": "train_loss"})
        assert w.error == "", w.error
        content, buffers = sent[-1]
        assert content["type"] == "download" and content["filename"].endswith(".vtp")
        vtp = bytes(buffers[0])
        assert vtp == (session.path / "exports" / content["filename"]).read_bytes()
        piece = ET.fromstring(vtp).find("PolyData/Piece")
        assert piece is not None and int(piece.get("NumberOfPoints")) == nx * ny
        assert int(piece.get("NumberOfPolys")) == (nx - 1) * (ny - 1)  # quads, as h52vtp.py writes them

        w.handle({"type": "export_file", "format": "ply"})
        content, buffers = sent[-1]
        ply = bytes(buffers[0])
        header = ply[: ply.index(b"end_header")].decode()
        assert header.startswith("ply") and f"element vertex {nx * ny}" in header
        assert f"element face {2 * (nx - 1) * (ny - 1)}" in header

        w.handle({"type": "export_file", "format": "gif"})
        assert w.error == "", w.error
        w.wait_idle(120)
        assert w.error == "", w.error
        content, buffers = sent[-1]
        assert content["type"] == "download" and content["mime"] == "image/gif", (content, w.message)
        gif = Image.open(io.BytesIO(bytes(buffers[0])))
        assert gif.format == "GIF" and gif.n_frames == min(GIF_FRAMES, len(first) + 1)  # a frame per checkpoint
        assert w.message.startswith("GIF written to")

        for bad, words in (({"format": "obj"}, "export format"), ({"format": 3}, "format"),
                           ({"format": "ply", "metric": ["x"]}, "metric")):
            w.handle({"type": "export_file", **bad})
            assert words in w.error, (bad, w.error)
    finally:
        w.close()


def test_a_one_d_or_partial_surface_is_not_exported_as_a_mesh():
    from types import SimpleNamespace

    from lossviz.widget.exports import check_exportable
    from lossviz.widget.payloads import PayloadError

    line = SimpleNamespace(x=np.linspace(-1, 1, 5), y=None, values={"train_loss": np.ones(5)}, done=np.ones(5, bool))
    with pytest.raises(PayloadError, match="needs a 2-D surface"):
        check_exportable(line, "vtp", None)
    partial = SimpleNamespace(x=np.arange(3.0), y=np.arange(2.0), values={"train_loss": np.ones((2, 3))},
                              done=np.array([[1, 1, 0], [1, 1, 1]], bool))
    with pytest.raises(PayloadError, match="still being computed"):
        check_exportable(partial, "ply", None)


def test_branch_paths_split_the_trajectory_per_branch_in_id_order():
    ids = [4, 0, 3, 1, 2]
    coords = np.arange(10.0).reshape(5, 2)
    paths, labels = branch_paths(ids, coords, {0: 0, 1: 0, 2: 0, 3: 1, 4: 1})
    assert labels == ["branch 0", "branch 1"]
    np.testing.assert_array_equal(paths[0], coords[[1, 3, 4]])  # ids 0, 1, 2
    np.testing.assert_array_equal(paths[1], coords[[2, 0]])  # ids 3, 4
