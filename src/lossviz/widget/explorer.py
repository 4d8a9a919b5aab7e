"""``Explorer(session)``: the lossviz notebook widget (one composite anywidget), traitlets and handlers.

Every action is delegated to a session (:class:`~lossviz.widget.protocol.SessionLike`). Long work
(training, surfaces, disturb, interpolate, projections, distances, opening a project) runs as the
session's jobs: they are listed in the ``jobs`` trait with progress and cancel, and when one ends its
result is applied to the traits (:mod:`lossviz.widget.follow`). Arrays cross to
the browser as binary buffers (:mod:`lossviz.widget.serializers`); the choices, form fields and limits
the front end needs arrive once in ``options`` (:mod:`lossviz.widget.options`).

Front-end commands arrive as custom messages ``{"type": ..., ...}`` (see :data:`COMMANDS`); a bad payload
(:mod:`lossviz.widget.payloads`) or a failing session call sets the ``error`` trait (words naming the
problem and the fix) and never raises into the kernel. Session events arrive on worker threads and
update traits (coalesced by ``throttle`` seconds).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets as t

from lossviz.io.h5 import write_surface
from lossviz.jobs import Job, start_in_thread
from lossviz.jsonable import json_safe
from lossviz.session import Session
from lossviz.training import prewarm_optimizers
from lossviz.widget import payloads as P
from lossviz.widget import views
from lossviz.widget.exports import (
    EXPORT_FORMATS,
    NO_SURFACE,
    branch_paths,
    check_exportable,
    export_name,
    write_export,
)
from lossviz.widget.follow import JobFollower
from lossviz.widget.live import StoreWatch
from lossviz.widget.options import (
    CONTOUR_MODES,
    DIRECTIONS,
    LIMITS,
    MAX_STORED_SURFACES,
    PROJECTIONS,
    explorer_options,
)
from lossviz.widget.payloads import PayloadError
from lossviz.widget.projections import ProjectionRequest, ProjectionRequests
from lossviz.widget.protocol import SessionFactory, SessionLike
from lossviz.widget.research import CONNECT_CURVES, CONNECT_EPOCHS, SPECTRUM_K, connection_view, spectrum_view
from lossviz.widget.serializers import to_wire
from lossviz.widget.standalone import checked_figures, standalone_html
from lossviz.widget.throttle import Coalescer

_STATIC = Path(__file__).resolve().parent.parent / "static"
_ESM_PATH = _STATIC / "widget.js"
_CSS_PATH = _STATIC / "widget.css"
_NOT_BUILT_ESM = """
export default { render({ el }) {
  el.textContent = "lossviz: the Explorer front end is not built. Run `npm install && npm run build` in the "
    + "repository (or `pip install -e .`), then restart the kernel.";
} };
"""
_FINISHED = ("done", "failed", "cancelled")


def _trait_choice(value: str, choices: tuple[str, ...], name: str) -> str:
    """:func:`lossviz.widget.payloads.choice` for a trait validator (traitlets wants a TraitError)."""
    try:
        return P.choice(value, choices, name)
    except PayloadError as e:
        raise t.TraitError(str(e)) from None


class Explorer(anywidget.AnyWidget):
    """Interactive explorer of a :class:`~lossviz.session.Session`: trajectory scatter, contour / 3D / 1D
    surface views, metric curves, branch and project panels.

    Parameters
    ----------
    session
        The Session (anything with :class:`~lossviz.widget.protocol.SessionLike`'s members).
    throttle
        Seconds between pushes of progressive updates (checkpoints, surface fill) to the browser.
    background
        ``True``: a command returns at once and its job's result is applied when the job ends.
        ``False``: a command from the kernel's thread waits for its job (tests, scripts).
    project_root
        The folder the project panel lists (default: the session's parent folder).
    session_factory
        What opens and lists projects (default :class:`~lossviz.session.Session`).
    surface
        A Surface to show at once.
    """

    _esm = _ESM_PATH if _ESM_PATH.exists() else _NOT_BUILT_ESM
    _css = _CSS_PATH if _CSS_PATH.exists() else ""

    # checkpoint table and projection
    checkpoints = t.Dict().tag(sync=True, to_json=to_wire)
    projection_method = t.Unicode("layout").tag(sync=True)
    projection = t.Dict().tag(sync=True, to_json=to_wire)
    selection = t.List(t.Int()).tag(sync=True)
    clicked = t.Int(None, allow_none=True).tag(sync=True)
    form = t.Dict().tag(sync=True)
    options = t.Dict().tag(sync=True)
    color_by = t.Unicode("branch").tag(sync=True)
    # surface and its view options
    surface = t.Dict().tag(sync=True, to_json=to_wire)
    surface_metric = t.Unicode("train_loss").tag(sync=True)
    contour_mode = t.Unicode("filled").tag(sync=True)
    log_scale = t.Bool(False).tag(sync=True)
    vmin = t.Float(None, allow_none=True).tag(sync=True)
    vmax = t.Float(None, allow_none=True).tag(sync=True)
    levels = t.Int(20).tag(sync=True)
    curves = t.List(t.Dict()).tag(sync=True, to_json=to_wire)
    distances = t.Dict().tag(sync=True, to_json=to_wire)
    # jobs, messages, projects
    jobs = t.List(t.Dict()).tag(sync=True)
    error = t.Unicode("").tag(sync=True)
    message = t.Unicode("").tag(sync=True)
    projects = t.List(t.Dict()).tag(sync=True)
    project_root = t.Unicode("").tag(sync=True)
    project = t.Dict().tag(sync=True)
    height = t.Int(760).tag(sync=True)

    # ---------------------------------------------------------------- kernel-side view state (issue 14)
    #: True: outlying and diverged checkpoints are projected too (default: left out, listed in ``outliers``)
    include_outliers = t.Bool(False).tag(sync=True)
    #: ids of the checkpoints the last projection left out (lossviz.projection.outlying; diverged ones)
    outliers = t.List(t.Int()).tag(sync=True)
    #: checkpoint ids, and branch ids, hidden from the projections (and by the front end from every view)
    hidden = t.List(t.Int()).tag(sync=True)
    hidden_branches = t.List(t.Int()).tag(sync=True)
    #: critical-point markers on the contour (only ever for loss-like metrics)
    show_critical = t.Bool(True).tag(sync=True)
    #: errors keyed by the control they belong to (e.g. {"open_project": "..."}); empty when none
    control_errors = t.Dict().tag(sync=True)
    #: a delete waiting for the user's confirmation: {"ids": [...], "text": "..."}; empty when none
    confirm_delete = t.Dict().tag(sync=True)
    #: the project's stored surfaces, newest first: [{"key", "label", "complete"}] (a reopened project
    #: shows the newest complete one; ``show_stored_surface`` shows another)
    stored_surfaces = t.List(t.Dict()).tag(sync=True)

    # ---------------------------------------------------------------- research views (issue 15)
    #: the last Connect: a curve's and the straight line's profiles and barriers (lossviz.widget.research)
    connection = t.Dict().tag(sync=True)
    #: the last spectrum: the Hessian eigenvalue density of a checkpoint (lossviz.widget.research)
    spectrum = t.Dict().tag(sync=True)

    def __init__(self, session: SessionLike, *, throttle: float = 0.25, background: bool = True,
                 project_root: str | os.PathLike | None = None, session_factory: SessionFactory | None = None,
                 surface: Any = None, **kwargs: Any):
        if not _ESM_PATH.exists():
            raise FileNotFoundError(
                f"the Explorer front end is not built ({_ESM_PATH} is missing): run `npm install && npm run build` "
                "in the repository, or reinstall with `pip install -e .`"
            )
        super().__init__(**kwargs)
        self._lock = threading.RLock()
        self._throttle = float(throttle)
        self._background = background
        self._session_factory: SessionFactory = session_factory if session_factory is not None else Session
        self._session: SessionLike = session
        self._surface_obj: Any = None
        self._surface_job: Any = None
        self._jobs: dict[int, Any] = {}
        self._follower = JobFollower(self._set_error, self._set_message, self._note_job, self._blocking)
        self._job_says: dict[int, str] = {}  # a started job's message, which says how it ended once it ends
        self._announcing: str | None = None  # the message of the job the next _follow starts
        self._trajectory: tuple[Any, dict | None] = (None, None)  # a surface and its projected trajectory
        self._unsubscribe: Callable[[], None] | None = None
        self._projections = ProjectionRequests(self._compute_projection, self._show_projection, self._projection_view,
                                               show_failed=self._show_no_projection)
        self._refresh_table = Coalescer(self._push_checkpoints, self._throttle, self._report)
        self._refresh_surface = Coalescer(self._push_surface, self._throttle, self._report)
        self._refresh_jobs = Coalescer(self._push_jobs, min(self._throttle, 0.1), self._report)
        # live: checkpoints another process writes into the project are shown too (lossviz.widget.live)
        self._live = StoreWatch(self._refresh_table, known=lambda: int(self.checkpoints.get("n", 0)))
        self.options = explorer_options()
        prewarm_optimizers()  # the first Train of a fresh kernel must not stall importing torch._dynamo
        self.on_msg(self._on_frontend_msg)
        self.observe(self._on_clicked, names="clicked")
        self.observe(self._on_projection_method, names="projection_method")
        self.observe(self._on_surface_metric, names="surface_metric")
        self.observe(self._on_selection, names="selection")
        self.observe(self._on_projection_options, names=["include_outliers", "hidden", "hidden_branches"])
        self.observe(self._on_show_critical, names="show_critical")
        if project_root is not None:
            self.project_root = str(project_root)
        self._attach(session)
        if surface is not None:
            self.show_surface(surface)

    def show_surface(self, surface: Any) -> None:
        """Show a Surface (e.g. ``session.surface(...)``'s result) in the contour, 3-D and 1-D views."""
        self._surface_obj = surface
        self._push_surface()

    # ------------------------------------------------------------------ validation of synced view options
    @t.validate("contour_mode")
    def _valid_mode(self, proposal: Any) -> str:
        return _trait_choice(proposal["value"], CONTOUR_MODES, "contour_mode")

    @t.validate("error")
    def _bounded_error(self, proposal: Any) -> str:
        return P.bounded_text(str(proposal["value"]))

    @t.validate("control_errors")
    def _bounded_control_errors(self, proposal: Any) -> dict[str, str]:
        return {str(k): P.bounded_text(str(v)) for k, v in dict(proposal["value"]).items()}

    @t.validate("levels")
    def _valid_levels(self, proposal: Any) -> int:
        return int(min(LIMITS["levels_max"], max(LIMITS["levels_min"], proposal["value"])))

    @t.validate("projection_method")
    def _valid_projection(self, proposal: Any) -> str:
        return _trait_choice(proposal["value"], PROJECTIONS, "projection")

    @t.validate("selection")
    def _valid_selection(self, proposal: Any) -> list[int]:
        return sorted({int(i) for i in proposal["value"]})

    # ------------------------------------------------------------------ session wiring
    @property
    def session(self) -> SessionLike:
        """The Session this widget shows."""
        return self._session

    def _attach(self, session: SessionLike) -> None:
        self._let_go()
        self._session = session
        self._surface_obj = None
        self._surface_job = None
        self._projections.forget()
        self._unsubscribe = session.subscribe(self._on_session_event)
        self._live.watch(session.path)
        path = session.path
        self.project = json_safe({"path": str(path) if path else "", "name": Path(str(path)).name if path else ""})
        if not self.project_root and path:
            self.project_root = str(Path(str(path)).parent)
        with self.hold_sync():
            self.selection = []
            self.clicked = None
            self.surface = {}
            self.curves = []
            self.distances = {}
            self.connection = {}
            self.spectrum = {}
            self._push_checkpoints()
        self.form = self._form_for(None)
        self._list_stored_surfaces(show_newest=True)

    def _list_stored_surfaces(self, show_newest: bool = False) -> None:
        """List the session's stored surfaces; ``show_newest``: show the newest complete one that can be
        read (a damaged file is named in ``error`` and the next one is tried)."""
        try:
            rows = list(self._session.surfaces())
        except Exception as exc:  # noqa: BLE001 - a damaged index must not stop the Explorer from opening
            self.stored_surfaces = []
            self.error = f"the project's stored surfaces cannot be listed: {exc}"
            return
        self.stored_surfaces = views.stored_surface_entries(rows, MAX_STORED_SURFACES)
        if not show_newest:
            return
        failed: list[str] = []
        for entry in self.stored_surfaces:
            if not entry["complete"]:
                continue
            try:
                self.show_surface(self._session.load_surface(entry["key"]))
            except Exception as exc:  # noqa: BLE001 - a damaged file is said, the next one shown
                failed.append(f"{entry['label']}: {exc}")
                continue
            break
        if failed:
            self.error = "stored surface(s) that cannot be read: " + "; ".join(failed)

    def _let_go(self) -> None:
        """Stop listening to the current session."""
        self._live.stop()
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()

    def close(self) -> None:
        """Unsubscribe from the session and close the widget (the session's jobs keep running; their
        results are no longer applied)."""
        self._let_go()
        self._follower.forget()
        super().close()

    def _report(self, exc: BaseException) -> None:
        self.error = f"{exc}" if isinstance(exc, PayloadError) else f"{type(exc).__name__}: {exc}"

    def _set_error(self, text: str) -> None:
        self.error = text

    def _set_message(self, text: str) -> None:
        self.message = text

    def _blocking(self) -> bool:
        """``background=False``: a command from the kernel's thread waits for its job (never one from a
        session worker, which may be the very thread that job needs)."""
        return not self._background and threading.current_thread() is threading.main_thread()

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Block until the jobs the Explorer follows (and pending refreshes) have ended and been applied."""
        deadline = time.monotonic() + timeout
        while True:
            if self._throttle > 0:
                time.sleep(self._throttle + 0.05)  # coalesced refreshes fire (and may start jobs)
            if not self._follower.pending():
                return
            if not self._follower.wait(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"still running after {timeout} s: {', '.join(self._follower.pending())}")

    # ------------------------------------------------------------------ session events (worker threads)
    def _on_session_event(self, event: Mapping[str, Any]) -> None:
        try:
            kind = event.get("type")
            if kind == "checkpoint":
                ck = event.get("checkpoint")
                if ck is not None and str(views.field_of(ck, "status", "ok")) not in ("ok", ""):
                    self.error = (f"checkpoint {views.field_of(ck, 'id')} {views.field_of(ck, 'status')}: its loss "
                                  "is not finite; lower the learning rate and train again")
                self._refresh_table()
            elif kind == "job":
                self._note_job(event.get("job"))
            elif kind == "deleted":
                self._refresh_table()
            elif kind == "surface":  # any surface the session computes is shown, also ones started from Python
                job = event.get("job")
                if job is not None:
                    self._surface_job = job
                self._surface_obj = event.get("surface")
                self._refresh_surface()
            elif kind == "error":
                self.error = str(event.get("message", "unknown error"))
        except Exception as exc:  # noqa: BLE001 - a subscriber's error must never reach the session's worker
            self._report(exc)

    def _announce(self, text: str) -> None:
        """Say what the job the next :meth:`_follow` starts does (the message says how it ended later)."""
        self.message = self._announcing = text

    def _announce_job(self, job: Any, text: str) -> None:
        """Say what ``job`` does; once it ends, while the message still says so, it adds ``": done"``
        (or cancelled; a failure is the error's to say)."""
        if job is None or job.id is None:
            self.message = text
        elif job.state in _FINISHED:  # found stored, or over already
            self.message = text if job.state == "failed" else f"{text}: {job.state}"
        else:
            self.message = text
            with self._lock:
                self._job_says[job.id] = text

    def _follow(self, what: str, start: Callable[[], Any], apply: Callable[[Any], None], **kw: Any) -> None:
        """:meth:`JobFollower.follow`; the job takes the words :meth:`_announce` gave it."""
        said, self._announcing = self._announcing, None

        def started() -> Any:
            job = start()
            if said is not None:
                self._announce_job(job, said)
            return job

        self._follower.follow(what, started, apply, **kw)

    def _note_job(self, job: Any) -> None:
        if job is None or job.id is None:
            return
        with self._lock:
            self._jobs[job.id] = job
            said = self._job_says.pop(job.id, None) if job.state in _FINISHED else None
        if said is not None and job.state != "failed" and self.message == said:
            self.message = f"{said}: {job.state}"
        if job.state == "failed" and not self._follower.follows(job.id):  # followed ones say it in their words
            self.error = f"{job.kind} job {job.id} failed: {job.error or 'unknown error'}"
        if job.kind == "surface" and job.state == "done":
            self._list_stored_surfaces()
        if job.kind == "surface" and job.state in _FINISHED and (
                self._surface_job is None or self._surface_job.id == job.id):
            self._surface_job = job
            if job.result is not None and job.state == "done":
                self._surface_obj = job.result
            self._refresh_surface()
        self._refresh_jobs()

    def _push_jobs(self) -> None:
        with self._lock:
            shown = views.jobs_shown(list(self._jobs.values()), LIMITS["max_jobs_shown"],
                                     hidden=lambda j: j.state == "done" and self._follower.transient(j.id))
            self._jobs = {j.id: j for j in shown}
        self.jobs = [views.job_info(j) for j in shown]

    def _push_checkpoints(self) -> None:
        table = views.checkpoint_table(list(self._session.checkpoints()))
        with self._lock:
            self.checkpoints = table
        self._request_projection(self.projection_method)

    def _request_projection(self, method: str, *, asked: bool = False) -> None:
        """Project the table's checkpoints (less the hidden ones) by ``method``: one computation at a time,
        the newest request wins, known results at once (:mod:`lossviz.widget.projections`). One the user
        ``asked`` for stays in the jobs panel and is stored in the project; a refresh after new
        checkpoints is listed only while it runs and stored nowhere."""
        table = self.checkpoints
        total = int(table.get("n", 0))
        if total == 0:
            self.projection = views.empty_projection(method)
            return
        if method == "surface" and self._surface_obj is None:
            raise PayloadError("the 'surface' projection needs a surface: compute one with the Surface button first")
        ids = views.visible_ids(table, self.hidden, self.hidden_branches)
        if not ids:
            self.projection = {**views.empty_projection(method), "total": total}
            return
        self._projections.request(ProjectionRequest(
            method, tuple(ids), total, self.include_outliers, self._surface_obj if method == "surface" else None,
            asked))

    def _projection_view(self) -> tuple:
        surf = self._surface_obj if self.projection_method == "surface" else None
        return (self.projection_method, self.include_outliers, None if surf is None else id(surf))

    def _compute_projection(self, req: ProjectionRequest, done: Callable[[Any], None]) -> None:
        kwargs: dict[str, Any] = {"surface": req.surface} if req.method == "surface" else {}
        result: list[Any] = [None]

        def start() -> Any:
            return self._session.project(ids=list(req.ids), method=req.method, wait=False, store=req.asked,
                                         outliers="include" if req.include_outliers else "exclude", **kwargs)

        self._follow(f"the {req.method} projection", start, lambda proj: result.__setitem__(0, proj),
                     transient=not req.asked, on_end=lambda: done(result[0]))

    def _show_no_projection(self, req: ProjectionRequest) -> None:
        """A projection of the selected method failed (its words are in ``error``): show none of it."""
        self.outliers = []
        self.projection = {**views.empty_projection(req.method), "outliers": [], "count": 0, "total": req.total,
                           "labels": [], "failed": True}

    def _show_projection(self, req: ProjectionRequest, proj: Any) -> None:
        payload = views.projection_view(req.method, proj, total=req.total)
        self.outliers = list(payload["outliers"])
        self.projection = payload

    def _push_surface(self) -> None:
        surf = self._surface_obj
        if surf is None:
            return
        payload = views.surface_view(surf, self.surface_metric, job=views.field_of(self._surface_job, "id"),
                                     critical=self.show_critical)
        if payload is None:
            return
        complete = payload["done"] == payload["total"]
        if complete:
            self._request_trajectory(surf)
        with self._lock:  # the trajectory as known now; one that arrives later pushes the surface again
            if complete:
                payload["trajectory"] = views.stored_trajectory(surf.meta or {}) or self._trajectory_of(surf)
            self.surface = payload

    def _trajectory_of(self, surf: Any) -> dict | None:
        known, traj = self._trajectory
        return traj if known is surf else None

    def _request_trajectory(self, surf: Any) -> None:
        """Project the checkpoints into a complete 2-D surface's plane, once, by a job, unless the surface
        carries its trajectory. A surface the session cannot project (e.g. one computed outside it) has none."""
        with self._lock:
            if surf.y is None or views.stored_trajectory(surf.meta or {}) is not None or self._trajectory[0] is surf:
                return
            self._trajectory = (surf, None)

        def apply(proj: Any) -> None:
            with self._lock:
                if self._trajectory[0] is not surf:
                    return
                self._trajectory = (surf, views.trajectory_view(proj.ids, proj.coords))
            self._refresh_surface()

        outliers = "include" if self.include_outliers else "exclude"
        self._follow("the surface's trajectory",
                     lambda: self._session.project(method="surface", surface=surf, wait=False, store=False,
                                                   outliers=outliers),
                     apply, slot="trajectory", quiet=True, transient=True)

    # ------------------------------------------------------------------ trait observers
    def _on_clicked(self, change: Mapping[str, Any]) -> None:
        try:
            self.form = self._form_for(change["new"])
        except Exception as exc:  # noqa: BLE001 - a trait observer must never raise into the kernel
            self.error = f"checkpoint {change['new']} cannot be opened: {exc}"

    def _form_for(self, ckpt_id: int | None) -> dict:
        hparams = {} if ckpt_id is None else dict(self._session.checkpoint(ckpt_id).hparams or {})
        return views.form_values(ckpt_id, hparams, dict(self._session.defaults or {}), self.form)

    def _on_projection_method(self, change: Mapping[str, Any]) -> None:
        try:
            self._request_projection(change["new"], asked=True)
        except PayloadError as exc:
            self.error = str(exc)

    def _on_surface_metric(self, change: Mapping[str, Any]) -> None:
        if change["old"] != change["new"]:  # another metric has another range: its own colour limits
            with self.hold_sync():
                self.vmin = None
                self.vmax = None
        self._refresh_surface()

    def _on_projection_options(self, change: Mapping[str, Any]) -> None:
        try:
            self._request_projection(self.projection_method)
        except PayloadError as exc:
            self.error = str(exc)
        if change["name"] == "include_outliers" and self._surface_obj is not None:
            with self._lock:
                self._trajectory = (None, None)  # the 3-D path is projected again with the new choice
            self._refresh_surface()

    def _on_show_critical(self, change: Mapping[str, Any]) -> None:
        self._refresh_surface()

    def _on_selection(self, change: Mapping[str, Any]) -> None:
        ids = list(change["new"])
        if 2 <= len(ids) <= LIMITS["auto_distances_max"]:
            self._request_distances(ids)
        elif self.distances:
            self.distances = {}

    def _request_distances(self, ids: list[int]) -> None:
        def apply(d: Any) -> None:
            self.distances = views.distances_view(ids, d)

        self._follow("distances", lambda: self._session.distances(ids, wait=False), apply, slot="distances")

    # ------------------------------------------------------------------ front-end commands
    def _on_frontend_msg(self, widget: Any, content: Any, buffers: Sequence[Any]) -> None:
        try:
            if not isinstance(content, Mapping):
                raise PayloadError(f"a message must be an object with a 'type', got {type(content).__name__}")
            kind = content.get("type")
            handler = COMMANDS.get(kind) if isinstance(kind, str) else None
            if handler is None:
                raise PayloadError(f"message type {kind!r} is unknown: use one of {sorted(COMMANDS)}")
            self.error = ""  # a new action replaces the last error (failures of this one set it again)
            handler(self, content)
        except PayloadError as exc:
            self.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a session call failed: report in words, keep the kernel alive
            self.error = f"{content.get('type') if isinstance(content, Mapping) else 'message'} failed: {exc}"

    def handle(self, content: Mapping[str, Any]) -> None:
        """Act on a front-end command as if it came from the browser (scripts, tests)."""
        self._on_frontend_msg(self, content, [])

    def _cmd_train(self, p: Mapping[str, Any]) -> None:
        hp = P.train_hparams(p.get("hparams", {}))
        epochs = P.form_number(p, "epochs", default=1)
        start = P.number(p, "from", int, allow_none=True)
        job = self._session.train(from_=start, epochs=epochs, **hp)
        self._announce_job(job, f"training {epochs} epoch(s) from checkpoint {start}" if start is not None
                           else f"training {epochs} epoch(s)")
        self._note_job(job)

    def _cmd_cancel(self, p: Mapping[str, Any]) -> None:
        jid = P.number(p, "job", int, allow_none=True)
        with self._lock:
            jobs = [*self._session.jobs, *self._jobs.values()]
        targets = {id(j): j for j in jobs if (jid is None or j.id == jid) and j.state in ("queued", "running")}
        if jid is not None and not targets:
            raise PayloadError(f"job {jid} is not running (nothing to cancel)")
        self.message = f"cancelling {len(targets)} job(s)"  # before: a followed job then says it is cancelled
        for j in targets.values():
            j.cancel()

    def _cmd_disturb(self, p: Mapping[str, Any]) -> None:
        start = P.number(p, "from", int)
        magnitude = P.form_number(p, "magnitude")
        seed = P.number(p, "seed", int, minimum=0, allow_none=True)
        self._announce(f"disturbing checkpoint {start} by {magnitude:g}")
        self._follow(f"disturbing checkpoint {start}",  # the new checkpoint's event refreshes the table
                     lambda: self._session.disturb(start, magnitude, seed=seed, wait=False), lambda made: None)

    def _two_checkpoints(self, p: Mapping[str, Any], what: str) -> tuple[int, int]:
        """The message's ``a`` and ``b``, else the two selected checkpoints (a PayloadError naming ``what``
        when the selection holds another number)."""
        if "a" in p or "b" in p:
            return P.number(p, "a", int), P.number(p, "b", int)
        if len(self.selection) != 2:
            raise PayloadError(f"{what} needs exactly two selected checkpoints, {len(self.selection)} are selected")
        a, b = self.selection
        return a, b

    def _cmd_interpolate(self, p: Mapping[str, Any]) -> None:
        a, b = self._two_checkpoints(p, "interpolation")
        n = P.form_number(p, "n", default=5)
        self._announce(f"interpolating {n} point(s) between {a} and {b}")

        def apply(made: Sequence[Any]) -> None:
            self.curves = [*self.curves[-7:], views.interpolation_curve(a, b, list(made))]

        self._follow(f"interpolating {a} -> {b}", lambda: self._session.interpolate(a, b, n, wait=False), apply)

    def _cmd_connect(self, p: Mapping[str, Any]) -> None:
        """``{"a", "b", "curve", "epochs"}`` (a and b default to the two selected checkpoints): fit the
        curve as a job (:meth:`lossviz.session.Session.connect`) and show its profile next to the line's."""
        a, b = self._two_checkpoints(p, "Connect")
        curve = P.choice(P.text(p, "curve", "bezier"), CONNECT_CURVES, "curve")
        epochs = P.number(p, "epochs", int, minimum=1, default=CONNECT_EPOCHS)
        self._announce(f"connecting checkpoints {a} and {b} by a {curve} ({epochs} epoch(s))")

        def apply(result: Mapping[str, Any]) -> None:
            self.connection = connection_view(result, epochs=epochs)

        self._follow(f"connecting {a} and {b}",
                     lambda: self._session.connect(a, b, curve, epochs=epochs, wait=False), apply, slot="connection")

    def _cmd_spectrum(self, p: Mapping[str, Any]) -> None:
        """``{"checkpoint", "k"}`` (default the opened checkpoint, 3): the Hessian's eigenvalue density by
        SLQ, top-k eigenvalues and trace as a job (:meth:`lossviz.session.Session.hessian`)."""
        ckpt = P.number(p, "checkpoint", int, allow_none=True)
        ckpt = self.clicked if ckpt is None else ckpt
        if ckpt is None:
            raise PayloadError("the spectrum needs a checkpoint: click one in the trajectory plot first")
        k = P.number(p, "k", int, minimum=1, default=SPECTRUM_K)
        self._announce(f"computing the Hessian spectrum of checkpoint {ckpt}")

        def apply(result: Mapping[str, Any]) -> None:
            self.spectrum = spectrum_view(result)

        self._follow(f"the spectrum of checkpoint {ckpt}",
                     lambda: self._session.hessian(ckpt, k=k, trace=True, density=True, wait=False), apply,
                     slot="spectrum")

    def _cmd_surface(self, p: Mapping[str, Any]) -> None:
        center = P.number(p, "center", int)
        directions = P.choice(P.text(p, "directions", "random"), DIRECTIONS, "directions")
        resolution = P.form_number(p, "resolution", default=21)
        both = P.text(p, "range", "auto")  # absent: auto; x_range / y_range left empty take this one
        x_spec = P.surface_axis_spec(P.text(p, "x_range") if p.get("x_range") not in (None, "") else both, resolution)
        y_spec = P.surface_axis_spec(P.text(p, "y_range") if p.get("y_range") not in (None, "") else both, resolution)
        spec = x_spec if x_spec == y_spec else f"x {x_spec}, y {y_spec}"
        adaptive = P.boolean(p, "adaptive")
        kwargs: dict[str, Any] = {"directions": directions, "x": x_spec, "y": y_spec, "wait": False}
        if adaptive:  # refine_surface's default options: a coarse lattice, then rounds where the surface bends
            kwargs["adaptive"] = True
        if directions == "pca":
            ids = P.ids(p, "checkpoints") if "checkpoints" in p else list(self.selection)
            if len(ids) < 3:
                raise PayloadError(f"a PCA plane needs at least 3 selected checkpoints, {len(ids)} are selected")
            kwargs["checkpoints"] = ids
        if self._surface_job is not None and self._surface_job.state in ("queued", "running"):
            self._surface_job.cancel()
        self._surface_obj = None
        self.surface = {}
        job = self._session.surface(center, **kwargs)
        self._surface_job = job
        what = "an adaptive" if adaptive else "a"
        self._announce_job(job, f"computing {what} {directions} surface around checkpoint {center} ({spec})")
        self._note_job(job)
        if job.result is not None:
            self._surface_obj = job.result
            self._refresh_surface()

    def _cmd_project(self, p: Mapping[str, Any]) -> None:
        method = P.choice(P.text(p, "method"), PROJECTIONS, "projection")
        if method == self.projection_method:
            self._request_projection(method, asked=True)
        else:
            self.projection_method = method

    def _cmd_select_all(self, p: Mapping[str, Any]) -> None:
        ids = self.checkpoints.get("ids")
        self.selection = [] if ids is None else [round(v) for v in np.asarray(ids).tolist()]

    def _cmd_select_none(self, p: Mapping[str, Any]) -> None:
        self.selection = []

    def _cmd_select(self, p: Mapping[str, Any]) -> None:
        self.selection = P.ids(p, "ids")

    def _cmd_distances(self, p: Mapping[str, Any]) -> None:
        ids = P.ids(p, "ids") if "ids" in p else list(self.selection)
        most = LIMITS["max_distances"]
        if not 2 <= len(ids) <= most:
            raise PayloadError(f"distances need 2 to {most} selected checkpoints, {len(ids)} are selected")
        self._request_distances(ids)

    def _cmd_delete(self, p: Mapping[str, Any]) -> None:
        """``{"ids": [...]}`` or ``{"branch": b}`` (the branch and all that grew from it): without
        ``"confirm": true`` it only asks (``confirm_delete``); with it, the session deletes them."""
        table = self.checkpoints
        ids = views.subtree_ids(table, branch=P.number(p, "branch", int)) if "branch" in p else P.ids(p, "ids")
        if not ids:
            raise PayloadError("there is nothing to delete: give checkpoint ids or a branch that has checkpoints")
        if not P.boolean(p, "confirm"):
            self.confirm_delete = {"ids": ids, "text": f"Delete {len(ids)} checkpoint(s) ({views.id_ranges(ids)}) "
                                   "and their files? This cannot be undone."}
            return
        if sorted(self.confirm_delete.get("ids", [])) != sorted(ids):
            raise PayloadError("confirm the delete you were asked about: send the same ids with confirm true")
        self.confirm_delete = {}
        gone = set(self._session.delete(ids, confirm=True))
        with self.hold_sync():
            self.selection = [i for i in self.selection if i not in gone]
            self.hidden = [i for i in self.hidden if i not in gone]
            if self.clicked in gone:
                self.clicked = None
        self._push_checkpoints()
        self.message = f"deleted {len(gone)} checkpoint(s)"

    def _cmd_cancel_delete(self, p: Mapping[str, Any]) -> None:
        self.confirm_delete = {}

    def _cmd_refresh(self, p: Mapping[str, Any]) -> None:
        self._push_checkpoints()

    def _cmd_clear_error(self, p: Mapping[str, Any]) -> None:
        self.error = ""

    def _control_error(self, control: str, text: str) -> None:
        """An error shown next to ``control`` (``control_errors``) and in the ``error`` banner."""
        self.control_errors = {**self.control_errors, control: text}
        self.error = text

    def _clear_control_error(self, control: str) -> None:
        if control in self.control_errors:
            self.control_errors = {k: v for k, v in self.control_errors.items() if k != control}

    def _cmd_list_projects(self, p: Mapping[str, Any]) -> None:
        self._clear_control_error("list_projects")
        root = P.text(p, "root", self.project_root or ".")
        if not Path(os.path.expanduser(root)).is_dir():
            self._control_error("list_projects", f"project folder {root!r} does not exist: enter an existing folder")
            return
        self.project_root = root
        self.projects = json_safe(list(self._session_factory.list_projects(os.path.expanduser(root))))

    def _open(self, path: Path, what: str, done: str, control: str, **kwargs: Any) -> None:
        """Open (or, with ``model``/``data``, create) the project at ``path`` as a job, then show it; a
        failure is shown next to ``control``."""

        def apply(session: SessionLike) -> None:
            self._attach(session)
            self.message = done

        def ended() -> None:  # a failure (of the start or the job) is in ``error`` by now: show it by the control
            if self.error.startswith(f"{what} failed"):
                self.control_errors = {**self.control_errors, control: self.error}

        self._follow(what, lambda: self._session_factory.opening(str(path), **kwargs), apply, on_end=ended)

    def _cmd_open_project(self, p: Mapping[str, Any]) -> None:
        self._clear_control_error("open_project")
        path = P.project_path(P.text(p, "path"), self.project_root, existing=True)
        if not path.exists():
            self._control_error("open_project", f"project {str(path)!r} does not exist: pick one from the list or "
                                "create it")
            return
        self._open(path, f"opening {path}", f"opened {path}", "open_project")

    def _cmd_create_project(self, p: Mapping[str, Any]) -> None:
        self._clear_control_error("create_project")
        try:
            path = P.project_path(P.text(p, "path"), self.project_root)
            if path.exists() and any(path.iterdir()):
                raise PayloadError(f"{str(path)!r} already exists: open it instead, or choose a new name")
            # named in the message (the form starts at options["create_defaults"]): a message that
            # leaves them out is refused, never filled in behind the user's back
            model = P.text(p, "model")
            data = P.text(p, "data")
            root = P.text(p, "data_root", "") if p.get("data_root") not in (None, "") else ""
            if root and not Path(os.path.expanduser(root)).is_dir():
                raise PayloadError(f"data root {root!r} is not a folder: enter the folder that holds the data set")
            hp = P.project_hparams(p.get("hparams"))
        except PayloadError as exc:
            self._control_error("create_project", str(exc))
            return
        kwargs: dict[str, Any] = {"model": model, "data": data, "hparams": hp or None}
        if root:
            kwargs["data_kwargs"] = {"root": os.path.expanduser(root)}
        self._open(path, f"creating {path}", f"created {path} ({model} on {data})", "create_project", **kwargs)

    def _cmd_export_surface(self, p: Mapping[str, Any]) -> None:
        surf = self._surface_obj
        if surf is None:
            raise PayloadError(NO_SURFACE)
        center = (surf.meta or {}).get("center", "surface")
        path = Path(os.path.expanduser(p["path"])) if p.get("path") else self._export_path(f"surface_{center}.h5")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_surface(path, surf)
        self._download(path, "application/x-hdf5", "surface written to {path} ({size} bytes)")

    def _cmd_show_stored_surface(self, p: Mapping[str, Any]) -> None:
        """``{"key"}``: show a stored surface (one of ``stored_surfaces``: a key not listed is refused)."""
        key = P.text(p, "key")
        listed = {e["key"]: e for e in self.stored_surfaces}
        if key not in listed:
            raise PayloadError(f"surface {key!r} is not one of the project's stored surfaces: pick one from the list")
        try:
            surf = self._session.load_surface(key)
        except Exception as exc:  # noqa: BLE001 - a damaged file is said next to the list, the view is kept
            raise PayloadError(f"the stored surface {listed[key]['label']} cannot be read: {exc}") from None
        self._surface_job = None
        self.show_surface(surf)
        self.message = f"showing the stored surface {listed[key]['label']}"

    def _cmd_export_file(self, p: Mapping[str, Any]) -> None:
        """``{"format": "vtp" | "ply" | "gif", "metric"?}``: the surface shown (its ``metric``, default the
        one on screen) written into the project's ``exports/`` folder and sent back as a download. The GIF
        (the trajectory per branch over the contour) is rendered by a job, the kernel stays free."""
        fmt = P.text(p, "format")
        surf = self._surface_obj
        metric = check_exportable(surf, fmt, P.text(p, "metric", self.surface_metric) or None)
        path = self._export_path(export_name(surf, fmt, metric))
        trajectory = None
        if fmt == "gif":
            traj = views.stored_trajectory(surf.meta or {}) or self._trajectory_of(surf)
            if traj is not None:
                branch_of = {int(c.id): int(c.branch) for c in self._session.checkpoints()}
                trajectory = branch_paths([int(i) for i in traj["ids"]], traj["coords"], branch_of)

        def send(written: Any) -> None:
            self._download(Path(written), EXPORT_FORMATS[fmt], fmt.upper() + " written to {path} ({size} bytes)")

        if fmt != "gif":
            send(write_export(path, surf, fmt, metric))
            return
        self._announce(f"rendering the GIF of {metric}")
        self._follow("the GIF export", lambda: start_in_thread(
            Job("export", lambda job: write_export(path, surf, fmt, metric, trajectory),
                description=f"GIF of {metric}")), send)

    # ------------------------------------------------------------------ front-end exports (js/snapshot.js)
    def _cmd_export_html(self, p: Mapping[str, Any]) -> None:
        """The views the front end drew, as one standalone HTML page (plotly.js inlined): written to the
        project's ``exports/`` folder and sent back as a download."""
        figures = checked_figures(p.get("figures"))
        page = standalone_html(figures, P.text(p, "title", "lossviz views"))
        path = self._export_path(f"views_{time.strftime('%Y%m%d-%H%M%S')}.html")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(page.encode())
        self._download(path, "text/html", "views written to {path} ({size} bytes, opens with no kernel)")

    def _export_path(self, name: str) -> Path:
        """``name`` in the project's ``exports/`` folder (the working folder's without a project path)."""
        return Path(str(self._session.path or ".")) / "exports" / name

    def _download(self, path: Path, mime: str, message: str) -> None:
        """Send the file at ``path`` to the front end as a download; ``message`` (``{path}``, ``{size}``)
        says where it was written."""
        data = path.read_bytes()
        self.send({"type": "download", "filename": path.name, "mime": mime}, [data])
        self.message = message.format(path=path, size=len(data))


COMMANDS: dict[str, Callable[[Explorer, Mapping[str, Any]], None]] = {
    "train": Explorer._cmd_train,
    "cancel": Explorer._cmd_cancel,
    "disturb": Explorer._cmd_disturb,
    "interpolate": Explorer._cmd_interpolate,
    "connect": Explorer._cmd_connect,
    "spectrum": Explorer._cmd_spectrum,
    "surface": Explorer._cmd_surface,
    "project": Explorer._cmd_project,
    "select_all": Explorer._cmd_select_all,
    "select_none": Explorer._cmd_select_none,
    "select": Explorer._cmd_select,
    "distances": Explorer._cmd_distances,
    "refresh": Explorer._cmd_refresh,
    "delete": Explorer._cmd_delete,
    "cancel_delete": Explorer._cmd_cancel_delete,
    "clear_error": Explorer._cmd_clear_error,
    "list_projects": Explorer._cmd_list_projects,
    "open_project": Explorer._cmd_open_project,
    "create_project": Explorer._cmd_create_project,
    "export_surface": Explorer._cmd_export_surface,
    "export_html": Explorer._cmd_export_html,
    "export_file": Explorer._cmd_export_file,
    "show_stored_surface": Explorer._cmd_show_stored_surface,
}
"""Front-end message types and their handlers."""
