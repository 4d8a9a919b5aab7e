"""A reopened project in JupyterLab (Playwright, Debian chromium): the Explorer draws the surface stored by
an earlier process without computing anything, lists it, and the VTP, PLY and GIF exports arrive as
downloads that independent readers accept."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from browser.helpers import kernel_view, lab_notebook, shot, wait_for
from browser.test_explorer_ui import EXPLORER, run_all

NOTEBOOK = Path(__file__).resolve().parent / "explorer_reopen.ipynb"
GRID = 9


def _made_by_another_process(work: Path) -> int:
    """The project the notebook reopens: 3 epochs and a 9x9 surface around the last checkpoint."""
    import torch

    from lossviz.session import Session

    torch.set_num_threads(1)
    with Session(work / "spirals", model="mlp", data="spirals", data_kwargs={"n": 120, "n_test": 40},
                 device="cpu", hparams={"batch_size": 60, "lr": 0.1}) as s:
        last = s.train(epochs=3).wait(120)[-1]
        s.surface(last.id, x=f"-1:1:{GRID}", y=f"-1:1:{GRID}")
        return last.id


def _export(page, fmt: str) -> bytes:
    page.select_option(f"{EXPLORER} select.lv-file-format", fmt)
    with page.expect_download(timeout=120_000) as info:
        page.click(f"{EXPLORER} button.lv-export-file")
    download = info.value
    assert download.suggested_filename.endswith(f".{fmt}"), download.suggested_filename
    return Path(download.path()).read_bytes()


def test_a_reopened_project_draws_its_stored_surface_and_exports_vtp_ply_gif(chromium, tmp_path):
    from PIL import Image

    center = _made_by_another_process(tmp_path)
    with lab_notebook(chromium, NOTEBOOK, tmp_path) as page:
        try:
            run_all(page)
            k = wait_for(lambda: (lambda v: v if v["surface_total"] else None)(kernel_view(page)),
                         timeout=120, what="the stored surface in the kernel's view")
            assert k["surface_done"] == k["surface_total"] == GRID * GRID
            assert "surface" not in k["session_jobs"], k["session_jobs"]  # nothing was computed
            assert len(k["stored"]) == 1 and k["stored"][0]["complete"]
            # the contour is drawn from the stored file, and the list offers it
            page.wait_for_selector(f"{EXPLORER} .lv-cell-contour .main-svg .contour", timeout=60_000)
            options = page.eval_on_selector_all(f"{EXPLORER} select.lv-stored option", "os => os.map(o => o.text)")
            assert options[0] == "stored surfaces (1)", options
            assert options[1].startswith(f"checkpoint {center} · random"), options
            page.locator(f"{EXPLORER} .lv-surface-views").scroll_into_view_if_needed()
            shot(page, "exports-reopened")

            vtp = _export(page, "vtp")
            piece = ET.fromstring(vtp).find("PolyData/Piece")
            assert piece is not None and int(piece.get("NumberOfPoints")) == GRID * GRID
            ply = _export(page, "ply")
            assert f"element vertex {GRID * GRID}".encode() in ply[: ply.index(b"end_header")]
            gif = Image.open(io.BytesIO(_export(page, "gif")))
            assert gif.format == "GIF" and gif.n_frames == 4  # a frame per checkpoint of the one branch
            k = kernel_view(page)
            assert k["error"] == "", k["error"]
            assert sorted(Path(n).suffix for n in k["exports"]) == [".gif", ".ply", ".vtp"], k["exports"]
            shot(page, "exports-done")
            assert page.errors == [], page.errors
        except BaseException:
            shot(page, "exports-failure")
            print(json.dumps(kernel_view(page), default=str)[:2000])
            raise


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-v", "-s"])
