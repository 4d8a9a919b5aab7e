"""Exports: VTP (ParaView), PLY (mesh renderers) and GIF/MP4 animations, read back and checked against
the arrays they were written from."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from PIL import Image

from lossviz.io.animation import (
    animate_paths,
    animate_surface_paths,
    frame_indices,
    gif_frame_duration_ms,
    render_path_frames,
    save_animation,
)
from lossviz.io.ply import grid_triangles, write_ply, write_surface_ply
from lossviz.io.vtp import h5_to_vtp, transform_z, vtp_filename, write_surface_vtp, write_vtp


def surface_grid(nx=7, ny=5):
    """A non-square grid with an asymmetric function, so a transposition or a flipped axis shows."""
    x = np.linspace(-1.0, 1.5, nx)
    y = np.linspace(-0.5, 2.0, ny)
    X, Y = np.meshgrid(x, y)
    z = 1.0 + X**2 + 0.5 * Y + 0.3 * X * Y**2  # z[i, j] = f(x[j], y[i])
    return x, y, z


def full_cells(z):
    """(i, j) of every cell whose 4 corners are finite, by a plain loop."""
    ny, nx = z.shape
    return [
        (i, j)
        for i in range(ny - 1)
        for j in range(nx - 1)
        if np.all(np.isfinite([z[i, j], z[i, j + 1], z[i + 1, j], z[i + 1, j + 1]]))
    ]


# ----------------------------------------------------------------------------------------------- VTP


def read_vtp_xml(path):
    """Parse a .vtp with xml.etree: {section/name: array}, and the Piece attributes."""
    root = ET.parse(path).getroot()
    assert root.tag == "VTKFile" and root.get("type") == "PolyData"
    piece = root.find("PolyData/Piece")
    arrays = {}
    for section in ("PointData", "CellData", "Points", "Verts", "Lines", "Strips", "Polys"):
        for da in piece.find(section).findall("DataArray"):
            dtype = np.int64 if da.get("type").startswith("Int") else np.float64
            vals = np.array((da.text or "").split(), dtype=dtype)
            ncomp = int(da.get("NumberOfComponents", "1"))
            arrays[f"{section}/{da.get('Name')}"] = vals.reshape(-1, ncomp) if ncomp > 1 else vals
    return {k: int(v) for k, v in piece.attrib.items()}, arrays


def test_vtp_structure_matches_the_grid(tmp_path):
    x, y, z = surface_grid()
    ny, nx = z.shape
    path = write_vtp(tmp_path / "s.vtp", x, y, z)
    piece, a = read_vtp_xml(path)
    assert piece["NumberOfPoints"] == nx * ny
    assert piece["NumberOfPolys"] == (nx - 1) * (ny - 1)
    assert piece["NumberOfVerts"] == piece["NumberOfLines"] == piece["NumberOfStrips"] == 0
    pts = a["Points/Points"]
    assert pts.shape == (nx * ny, 3)
    for i in range(ny):
        for j in range(nx):  # flat order k = i * nx + j, point (x[j], y[i], z[i, j])
            np.testing.assert_array_equal(pts[i * nx + j], [x[j], y[i], z[i, j]])
    np.testing.assert_array_equal(a["PointData/zvalue"], z.ravel())
    np.testing.assert_array_equal(a["PointData/loss"], z.ravel())
    conn = a["Polys/connectivity"].reshape(-1, 4)
    expected = [[i * nx + j, i * nx + j + 1, (i + 1) * nx + j + 1, (i + 1) * nx + j] for i, j in full_cells(z)]
    np.testing.assert_array_equal(conn, expected)
    np.testing.assert_array_equal(a["Polys/offsets"], 4 * np.arange(1, len(expected) + 1))
    cell_mean = [np.mean([z[i, j], z[i, j + 1], z[i + 1, j + 1], z[i + 1, j]]) for i, j in full_cells(z)]
    np.testing.assert_allclose(a["CellData/averaged zvalue"], cell_mean, rtol=1e-15)
    assert a["Verts/connectivity"].size == a["Lines/connectivity"].size == a["Strips/connectivity"].size == 0


@pytest.mark.parametrize("zmax,log", [(2.0, False), (None, True), (2.0, True), (-1, False), (0, True)])
def test_vtp_zmax_and_log_as_the_reference(tmp_path, zmax, log):
    x, y, z = surface_grid()
    path = write_vtp(tmp_path / "s.vtp", x, y, z, zmax=zmax, log=log)
    _, a = read_vtp_xml(path)
    # the reference: z[z > zmax] = zmax when zmax > 0, then log(z + 0.1)
    expected = z.copy()
    if zmax is not None and zmax > 0:
        expected = np.where(expected > zmax, zmax, expected)
        assert (z > zmax).any() and (z < zmax).any()  # the clip bites
    if log:
        expected = np.log(expected + 0.1)
    np.testing.assert_allclose(a["PointData/zvalue"], expected.ravel(), rtol=1e-15)
    np.testing.assert_allclose(a["Points/Points"][:, 2], expected.ravel(), rtol=1e-15)
    np.testing.assert_array_equal(a["PointData/loss"], z.ravel())  # raw values untouched


def test_vtp_log_of_negative_values_is_refused(tmp_path):
    x, y, z = surface_grid()
    with pytest.raises(ValueError, match="log=False"):
        write_vtp(tmp_path / "s.vtp", x, y, z - 5.0, log=True)
    np.testing.assert_allclose(transform_z(np.array([np.nan, 0.0]), log=True), [np.nan, np.log(0.1)])


def test_vtp_nan_points_are_dropped_and_their_cells_skipped(tmp_path):
    x, y, z = surface_grid(8, 6)
    z[2, 3] = np.nan
    z[0, 7] = np.nan
    z[5, 0] = np.nan
    path = write_vtp(tmp_path / "s.vtp", x, y, z)
    piece, a = read_vtp_xml(path)
    finite = np.isfinite(z)
    assert piece["NumberOfPoints"] == finite.sum()
    cells = full_cells(z)
    assert piece["NumberOfPolys"] == len(cells) == 7 * 5 - 4 - 1 - 1
    pts = a["Points/Points"]
    assert np.all(np.isfinite(pts))
    # each quad's points are its cell's corners, in the order (i,j), (i,j+1), (i+1,j+1), (i+1,j)
    for quad, (i, j) in zip(a["Polys/connectivity"].reshape(-1, 4), cells, strict=True):
        corners = [(i, j), (i, j + 1), (i + 1, j + 1), (i + 1, j)]
        np.testing.assert_array_equal(pts[quad], [[x[c], y[r], z[r, c]] for r, c in corners])


def test_vtp_reads_back_with_vtk(tmp_path):
    import vtk  # in the test extra
    from vtk.util.numpy_support import vtk_to_numpy

    x, y, z = surface_grid(9, 6)
    z[3, 4] = np.nan
    path = write_vtp(tmp_path / "s.vtp", x, y, z, zmax=2.5, log=True)
    reader = vtk.vtkXMLPolyDataReader()
    reader.SetFileName(str(path))
    reader.Update()
    assert reader.GetErrorCode() == 0
    out = reader.GetOutput()
    finite = np.isfinite(z)
    assert out.GetNumberOfPoints() == finite.sum()
    assert out.GetNumberOfPolys() == len(full_cells(z)) == 8 * 5 - 4
    X, Y = np.meshgrid(x, y)
    height = np.log(np.minimum(z, 2.5) + 0.1)
    expected = np.column_stack([X[finite], Y[finite], height[finite]])
    np.testing.assert_allclose(vtk_to_numpy(out.GetPoints().GetData()), expected, rtol=1e-15)
    np.testing.assert_allclose(vtk_to_numpy(out.GetPointData().GetArray("loss")), z[finite])
    assert out.GetPointData().GetScalars().GetName() == "zvalue"
    assert out.GetCellData().GetArray("averaged zvalue").GetNumberOfTuples() == out.GetNumberOfPolys()
    # every cell is a quad
    cells = out.GetPolys()
    assert cells.GetNumberOfConnectivityIds() == 4 * out.GetNumberOfPolys()


def test_h5_to_vtp_reads_a_reference_layout_file(tmp_path):
    x = np.linspace(-1, 1, 5)
    y = np.linspace(-1, 1, 5)
    X, Y = np.meshgrid(x, y)
    loss = 0.5 + X**2 + 0.25 * Y  # square grid: the reference stores loss[i, j] = L(x[j], y[i])
    stored = loss.copy()
    stored[4, 4] = -1  # "not computed" in the reference's files
    surf = tmp_path / "surf.h5"
    with h5py.File(surf, "w") as f:
        f["xcoordinates"] = x
        f["ycoordinates"] = y
        f["train_loss"] = stored
        f["dir_file"] = "dirs.h5"
    out = h5_to_vtp(surf, "train_loss", log=True, zmax=1.0)
    assert str(out) == vtp_filename(surf, "train_loss", 1.0, True) == f"{surf}_train_loss_zmax=1.0_log.vtp"
    piece, a = read_vtp_xml(out)
    assert piece["NumberOfPoints"] == 24 and piece["NumberOfPolys"] == 15
    np.testing.assert_allclose(a["PointData/zvalue"], np.log(np.minimum(loss.ravel()[:-1], 1.0) + 0.1))
    np.testing.assert_array_equal(a["PointData/train_loss"], loss.ravel()[:-1])
    with pytest.raises(ValueError, match="no dataset 'test_loss'"):
        h5_to_vtp(surf, "test_loss")
    with pytest.raises(FileNotFoundError):
        h5_to_vtp(tmp_path / "missing.h5")


def test_vtp_surface_wrapper_and_errors(tmp_path):
    x, y, z = surface_grid()
    surf = SimpleNamespace(x=x, y=y, values={"train_loss": z, "train_acc": 100 - z}, meta={})
    _, a = read_vtp_xml(write_surface_vtp(tmp_path / "a.vtp", surf, metric="train_acc"))
    np.testing.assert_array_equal(a["PointData/train_acc"], (100 - z).ravel())
    _, a = read_vtp_xml(write_surface_vtp(tmp_path / "b.vtp", surf))
    np.testing.assert_array_equal(a["PointData/train_loss"], z.ravel())
    with pytest.raises(ValueError, match="2D surface"):
        write_vtp(tmp_path / "c.vtp", x, None, z[0])
    with pytest.raises(ValueError, match="transposed"):
        write_vtp(tmp_path / "c.vtp", x, y, z.T)
    assert not (tmp_path / "c.vtp").exists()


# ----------------------------------------------------------------------------------------------- PLY


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian"])
@pytest.mark.parametrize("vertex_type", ["float", "double"])
def test_ply_reads_back_with_plyfile(tmp_path, fmt, vertex_type):
    from plyfile import PlyData

    x, y, z = surface_grid(8, 6)
    z[2, 3] = np.nan
    z[5, 7] = np.nan
    path = write_ply(tmp_path / "s.ply", x, y, z, fmt=fmt, vertex_type=vertex_type)
    ply = PlyData.read(str(path))
    assert ply.text == (fmt == "ascii")
    v = ply["vertex"]
    finite = np.isfinite(z)
    assert v.count == finite.sum()
    X, Y = np.meshgrid(x, y)
    got = np.column_stack([v["x"], v["y"], v["z"]])
    assert got.dtype == (np.float32 if vertex_type == "float" else np.float64)
    expected = np.column_stack([X[finite], Y[finite], z[finite]]).astype(got.dtype)
    np.testing.assert_array_equal(got, expected)
    faces = np.stack(ply["face"]["vertex_indices"])
    cells = full_cells(z)
    assert faces.shape == (2 * len(cells), 3) and len(cells) == 7 * 5 - 4 - 1
    # each pair of triangles covers one cell: (a, b, c) and (a, c, d), counter-clockwise seen from +z
    index = -np.ones(z.size, dtype=int)
    index[finite.ravel()] = np.arange(finite.sum())
    for t, (i, j) in enumerate(cells):
        a, b, c, d = (index[r * z.shape[1] + s] for r, s in [(i, j), (i, j + 1), (i + 1, j + 1), (i + 1, j)])
        np.testing.assert_array_equal(faces[2 * t], [a, b, c])
        np.testing.assert_array_equal(faces[2 * t + 1], [a, c, d])
    p = got.astype(np.float64)
    normals = np.cross(p[faces[:, 1]] - p[faces[:, 0]], p[faces[:, 2]] - p[faces[:, 0]])
    assert np.all(normals[:, 2] > 0)


def test_ply_ascii_and_binary_agree_and_header_is_standard(tmp_path):
    x, y, z = surface_grid()
    a = write_ply(tmp_path / "a.ply", x, y, z, zmax=2.0, log=True)
    b = write_ply(tmp_path / "b.ply", x, y, z, zmax=2.0, log=True, fmt="binary_little_endian")
    text = a.read_text()
    header, body = text.split("end_header\n")
    lines = header.splitlines()
    assert lines[:2] == ["ply", "format ascii 1.0"]
    assert f"element vertex {z.size}" in lines and f"element face {2 * 6 * 4}" in lines
    assert "property list uchar int vertex_indices" in lines
    rows = body.strip().splitlines()
    verts = np.array([r.split() for r in rows[: z.size]], dtype=np.float32)
    np.testing.assert_allclose(verts[:, 2], np.log(np.minimum(z, 2.0) + 0.1).ravel().astype(np.float32))
    assert all(r.split()[0] == "3" for r in rows[z.size :])
    raw = b.read_bytes()
    bheader, bbody = raw.split(b"end_header\n", 1)
    assert b"format binary_little_endian 1.0" in bheader
    bverts = np.frombuffer(bbody[: 12 * z.size], dtype="<f4").reshape(-1, 3)
    np.testing.assert_array_equal(bverts, verts)
    bfaces = np.frombuffer(bbody[12 * z.size :], dtype=[("n", "u1"), ("v", "<i4", (3,))])
    _, faces = grid_triangles(x, y, z)
    np.testing.assert_array_equal(bfaces["v"], faces)
    assert np.all(bfaces["n"] == 3)


def test_ply_surface_wrapper_and_errors(tmp_path):
    x, y, z = surface_grid()
    surf = SimpleNamespace(x=x, y=y, values={"test_loss": z}, meta={})
    path = write_surface_ply(tmp_path / "s.ply", surf)  # the only metric is used
    assert f"element vertex {z.size}" in path.read_text()
    with pytest.raises(ValueError, match="fmt"):
        write_ply(tmp_path / "s.ply", x, y, z, fmt="binary")
    with pytest.raises(ValueError, match="2D surface"):
        write_ply(tmp_path / "s.ply", x, None, z[0])


# ----------------------------------------------------------------------------------------- animation

SIZE = (320, 240)


def anim_surface():
    x = np.linspace(-2, 2, 41)
    y = np.linspace(-1.5, 1.5, 31)
    X, Y = np.meshgrid(x, y)
    return x, y, X**2 + 2 * Y**2 + 0.1


def spiral_path(n=12):
    t = np.linspace(0, 1, n)
    r = 1.4 * (1 - t)
    return np.column_stack([r * np.cos(4 * t), 0.9 * r * np.sin(4 * t)])


def read_gif(path):
    im = Image.open(path)
    frames, durations = [], []
    for k in range(im.n_frames):
        im.seek(k)
        frames.append(np.asarray(im.convert("RGB")).astype(int))
        durations.append(im.info["duration"])
    return frames, durations


def colour_near(frame, col_row, colour, radius=2):
    """Smallest max-channel distance to ``colour`` within ``radius`` pixels of (column, row)."""
    c, r = (int(v) for v in col_row)
    patch = frame[max(r - radius, 0) : r + radius + 1, max(c - radius, 0) : c + radius + 1]
    return int(np.abs(patch - np.array(colour)).max(axis=-1).min())


def test_frame_indices():
    idx = frame_indices([12, 6, 1])
    assert idx.shape == (12, 3)
    np.testing.assert_array_equal(idx[:, 0], np.arange(12))
    assert idx[0].tolist() == [0, 0, 0] and idx[-1].tolist() == [11, 5, 0]
    assert np.all(np.diff(idx, axis=0) >= 0)
    sub = frame_indices([12], frames=4)
    assert sub[:, 0].tolist() == [0, 4, 7, 11]
    with pytest.raises(ValueError, match="between 1 and"):
        frame_indices([5], frames=6)


@pytest.mark.parametrize("fps,ms", [(10, 100), (4, 250), (20, 50), (3, 330)])
def test_gif_frame_duration(fps, ms):
    assert gif_frame_duration_ms(fps) == ms  # 1000 / fps, to the GIF's 10 ms resolution


def test_gif_frames_duration_and_path_pixels(tmp_path):
    x, y, z = anim_surface()
    path = spiral_path(12)
    frames = render_path_frames(x, y, z, path, size=SIZE, epochs=np.arange(12) * 0.5)
    assert len(frames.images) == 12 and frames.images[0].size == SIZE == frames.size
    out = save_animation(tmp_path / "a.gif", frames, fps=20)
    gif, durations = read_gif(out)
    assert len(gif) == 12
    assert durations == [50] * 12  # 1000 / fps
    red = frames.colors[0]
    assert red == (228, 26, 28)
    px = frames.data_to_pixel(path)
    # the pixel mapping agrees with the axes: data corners land inside the frame, y grows upwards
    corners = frames.data_to_pixel([[x[0], y[0]], [x[-1], y[-1]]])
    assert 0 < corners[0, 0] < corners[1, 0] < SIZE[0] and SIZE[1] > corners[0, 1] > corners[1, 1] > 0
    for f in range(12):
        # the marker (path colour) sits on the current point
        assert colour_near(gif[f], px[f], red) <= 30, f
    # where the path ends has no marker at the start (the path has not been there yet) ...
    assert colour_near(gif[0], px[-1], red, radius=1) > 60
    # ... and frames differ where the path moved, and nowhere far from it
    for f in range(1, 12):
        changed = np.abs(gif[f] - gif[f - 1]).max(axis=-1) > 0
        rows, cols = np.nonzero(changed)
        assert rows.size > 0
        near_path = np.min(np.hypot(cols[:, None] - px[:, 0], rows[:, None] - px[:, 1]), axis=1) < 15
        in_caption = (rows < SIZE[1] * 0.25) & (cols < SIZE[0] * 0.65)  # "step k · epoch e", top left
        assert np.all(near_path | in_caption)
        # the contour far from the path is identical in every frame
    far = frames.data_to_pixel([[x[0] + 0.1, y[0] + 0.1]])[0]
    assert all(np.array_equal(g[int(far[1]), int(far[0])], gif[0][int(far[1]), int(far[0])]) for g in gif)


def test_gif_requested_frame_count_and_optimizer_comparison(tmp_path):
    x, y, z = anim_surface()
    paths = {"SGD": spiral_path(15), "Adam": spiral_path(9)[::-1] * 0.8}
    out = animate_paths(tmp_path / "cmp.gif", x, y, z, paths, fps=10, frames=5, size=SIZE, log=True)
    gif, durations = read_gif(out)
    assert len(gif) == 5 and durations == [100] * 5
    frames = render_path_frames(x, y, z, paths, frames=5, size=SIZE, log=True)
    assert frames.labels == ["SGD", "Adam"]
    np.testing.assert_array_equal(frames.indices, [[0, 0], [4, 2], [7, 4], [10, 6], [14, 8]])
    for k, p in enumerate(frames.paths):
        px = frames.data_to_pixel(p)
        for f in range(5):
            assert colour_near(gif[f], px[frames.indices[f, k]], frames.colors[k]) <= 30, (k, f)
    # the legend (upper right of the axes) shows both path colours at frame 0, where the paths
    # themselves are elsewhere; an unnamed single path gets no legend
    col, row = frames.data_to_pixel([[x[-1], y[-1]]])[0]
    box = gif[0][int(row) : int(row) + SIZE[1] // 4, int(col) - SIZE[0] // 4 : int(col)]
    for colour in frames.colors:
        assert (np.abs(box - np.array(colour)).max(axis=-1) <= 30).sum() >= 10
    single = render_path_frames(x, y, z, spiral_path(15), frames=2, size=SIZE, log=True)
    box1 = np.asarray(single.images[0]).astype(int)
    box1 = box1[int(row) : int(row) + SIZE[1] // 4, int(col) - SIZE[0] // 4 : int(col)]
    assert (np.abs(box1 - np.array(frames.colors[0])).max(axis=-1) <= 30).sum() == 0


def test_mp4_when_imageio_ffmpeg_is_present(tmp_path):
    import imageio_ffmpeg

    x, y, z = anim_surface()
    out = animate_paths(tmp_path / "a.mp4", x, y, z, spiral_path(8), fps=8, size=(321, 241))
    reader = imageio_ffmpeg.read_frames(str(out))
    meta = reader.__next__()
    frames = [np.frombuffer(fr, dtype=np.uint8) for fr in reader]
    assert meta["size"] == (322, 242)  # padded to even for yuv420p
    assert meta["fps"] == 8
    assert len(frames) == 8
    assert np.ptp(frames[0]) > 100  # not blank


def test_mp4_without_encoder_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import fails
    x, y, z = anim_surface()
    with pytest.raises(RuntimeError, match="pip install imageio-ffmpeg"):
        animate_paths(tmp_path / "a.mp4", x, y, z, spiral_path(4), size=SIZE)
    assert not (tmp_path / "a.mp4").exists()


def test_animation_bad_input(tmp_path):
    x, y, z = anim_surface()
    with pytest.raises(ValueError, match="fps"):
        animate_paths(tmp_path / "a.gif", x, y, z, spiral_path(4), fps=60)
    with pytest.raises(ValueError, match=r"\.gif or \.mp4"):
        animate_paths(tmp_path / "a.avi", x, y, z, spiral_path(4))
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        render_path_frames(x, y, z, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="log=False"):
        render_path_frames(x, y, z - 1.0, spiral_path(4), log=True)
    with pytest.raises(ValueError, match="one label per path"):
        render_path_frames(x, y, z, [spiral_path(4), spiral_path(5)], labels=["a"])
    with pytest.raises(ValueError, match="epochs"):
        render_path_frames(x, y, z, spiral_path(4), epochs=[1, 2])


def test_animate_surface_uses_its_trajectory(tmp_path):
    x, y, z = anim_surface()
    z = z.copy()
    z[:3, :3] = np.nan  # not computed: left blank
    path = spiral_path(6)
    meta = {"trajectory": {"ids": list(range(6)), "coords": path.tolist()}}
    surf = SimpleNamespace(x=x, y=y, values={"train_loss": z}, meta=meta)
    out = animate_surface_paths(tmp_path / "s.gif", surf, fps=5, size=SIZE, filled=False, colors=["red"])
    gif, durations = read_gif(out)
    assert len(gif) == 6 and durations == [200] * 6
    with pytest.raises(ValueError, match="no trajectory"):
        animate_surface_paths(tmp_path / "t.gif", SimpleNamespace(x=x, y=y, values={"train_loss": z}, meta={}))


def test_animation_colour_bar_names_the_metric(tmp_path, monkeypatch):
    """The colour bar says which metric the contour shows (it said "value" for every one)."""
    import lossviz.io.animation as animation

    x, y, z = anim_surface()
    drawn = []
    real_save = animation.save_animation
    monkeypatch.setattr(animation, "save_animation", lambda p, f, fps=10: drawn.append(f) or real_save(p, f, fps))
    meta = {"trajectory": {"ids": [0, 1, 2], "coords": spiral_path(3).tolist()}}
    surf = SimpleNamespace(x=x, y=y, values={"train_loss": z, "test_acc": 1 - z / z.max()}, meta=meta)
    animate_surface_paths(tmp_path / "a.gif", surf, metric="test_acc", size=SIZE, frames=2)
    animate_surface_paths(tmp_path / "l.gif", surf, size=SIZE, frames=2, log=True)
    assert [f.meta["colorbar_label"] for f in drawn] == ["test_acc", "log10 train_loss"]
    plain = render_path_frames(x, y, z, spiral_path(3), size=SIZE, frames=2)
    assert plain.meta["colorbar_label"] == "value" and plain.meta["xlabel"] == "x"
    bare = render_path_frames(x, y, z, spiral_path(3), size=SIZE, frames=2, colorbar=False)
    assert bare.meta["colorbar_label"] is None
