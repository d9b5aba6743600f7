"""The Flask application: log-in, operator views, the tenant portal and the event stream.

`create_app(targets)` builds it; `nvo3/dashboard/server.py` serves it with waitress. Pages
are rendered on the server; `static/dashboard.js` keeps them live: it listens to
``/events`` (server-sent events) and re-fetches a page's ``data-refresh`` fragments when
something happened, and fills the timeline. Every POST carries the session's CSRF token.
"""

from __future__ import annotations

import hmac
import json
import logging
import queue
import secrets
from collections.abc import Callable, Iterator
from typing import Any

from flask import Flask, Response, abort, g, redirect, render_template, request, session, url_for

from nvo3.dashboard import model, svg
from nvo3.dashboard.access import LoginFailed, Refused, UserConnection
from nvo3.dashboard.portal import PortalError, portal_request
from nvo3.dashboard.sessions import SessionStore, UserSession
from nvo3.dashboard.targets import Targets

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0           # an idle event stream sends a comment this often (finds closed tabs)
POLL_S = 1.0                # how often a stream checks that its browser is still there
STREAM_LIMIT_S = 300.0      # a stream ends after this long; the browser reconnects by itself
PUBLIC = {"login", "static"}


def create_app(targets: Targets, store: SessionStore | None = None) -> Flask:
    """The dashboard for the servers named by `targets` (a fresh secret key each start)."""
    app = Flask(__name__)
    app.config.update(SECRET_KEY=secrets.token_bytes(32), SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Strict", TEMPLATES_AUTO_RELOAD=False)
    sessions = store or SessionStore()
    app.extensions["nvo3_sessions"] = sessions
    app.extensions["nvo3_targets"] = targets

    @app.before_request
    def _guard() -> Any:
        if "csrf" not in session:
            session["csrf"] = secrets.token_urlsafe(32)
        if request.method == "POST":
            sent = request.form.get("csrf", "")
            if not hmac.compare_digest(sent.encode(), str(session["csrf"]).encode()):
                abort(400, "missing or wrong CSRF token: reload the page")
        user = sessions.get(session.get("sid"))
        g.user = user
        if user is None and request.endpoint not in PUBLIC:
            if request.endpoint in ("events", "fragment"):
                abort(401)
            return redirect(url_for("login", next=request.path))
        return None

    @app.context_processor
    def _common() -> dict[str, Any]:
        user: UserSession | None = g.get("user")
        return {"user": user, "csrf": session.get("csrf", ""),
                "last_event": user.feed.last_id if user else 0,
                "unavailable": user.connection.unavailable if user else {}}

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; img-src 'self' data:; "
                                "style-src 'self'; script-src 'self'; frame-ancestors 'none'")
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        return resp

    # log-in ------------------------------------------------------------------------------
    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        error = ""
        if request.method == "POST":
            username = request.form.get("username", "").strip()
            password = request.form.get("password", "")
            if not username or not password:
                error = "give your NETCONF username and password"
            else:
                try:
                    conn = UserConnection.open(targets, username, password)
                except LoginFailed as exc:
                    error = str(exc)
                else:
                    old = session.pop("sid", None)
                    if old:
                        sessions.end(old)
                    user = sessions.create(conn)
                    session["sid"] = user.sid
                    session["csrf"] = secrets.token_urlsafe(32)   # a new token per login
                    nxt = request.args.get("next", "")
                    return redirect(nxt if nxt.startswith("/") and not nxt.startswith("//")
                                    else url_for("topology"))
        return render_template("login.html", error=error), (401 if error else 200)

    @app.post("/logout")
    def logout() -> Any:
        sid = session.pop("sid", None)
        if sid:
            sessions.end(sid)
        return redirect(url_for("login"))

    # operator views ----------------------------------------------------------------------
    @app.get("/")
    def index() -> Any:
        return redirect(url_for("topology"))

    @app.get("/topology")
    def topology() -> str:
        return render_template("topology.html", **_topology(g.user))

    @app.get("/mappings")
    def mappings() -> str:
        return render_template("mappings.html", **_mappings(g.user, request.args.get("q", "")))

    @app.get("/nves")
    def nves() -> str:
        return render_template("nves.html", **_nves(g.user))

    @app.get("/timeline")
    def timeline() -> str:
        _vcenter(g.user)                # learn the VMs' names for the events' MACs
        return render_template("timeline.html")

    @app.get("/vm/<tenant>/<name>")
    def vm(tenant: str, name: str) -> Any:
        user: UserSession = g.user
        vms = model.vm_rows(_vcenter(user))
        row = next((r for r in vms if (r["tenant"], r["name"]) == (tenant, name)), None)
        if row is None:
            return render_template("vm.html", vm=None, tenant=tenant, name=name,
                                   history=[]), 404
        if not row["vtep-address"] and row["vni"] is not None:      # the nDirector knows it
            row["vtep-address"] = next(
                (m.get("vtep-address") for m in model.mapping_rows(
                    user.connection.ndirector_states(), {})
                 if (m["vni"], m.get("mac")) == (row["vni"], row["mac-address"])), None)
        history = model.vm_history(user.feed.events(), tenant, name, row["mac-address"])
        return render_template("vm.html", vm=row, tenant=tenant, name=name, history=history)

    @app.get("/fragment/<which>")
    def fragment(which: str) -> Any:
        user: UserSession = g.user
        if which == "topology":
            return render_template("_topology.html", **_topology(user))
        if which == "mappings":
            return render_template("_mappings.html", **_mappings(user, request.args.get("q", "")))
        if which == "nves":
            return render_template("_nves.html", **_nves(user))
        if which == "vms":
            return render_template("_vms.html", vms=model.vm_rows(_vcenter(user)))
        abort(404)

    # tenant portal -----------------------------------------------------------------------
    @app.route("/portal", methods=["GET"])
    def portal() -> str:
        return render_template("portal.html", **_portal(g.user, request.args.get("done", ""), ""))

    @app.post("/portal/<action>")
    def portal_action(action: str) -> Any:
        user: UserSession = g.user
        try:
            operation, given = portal_request(action, request.form)
            out = user.connection.vcenter_rpc(operation, given)
        except PortalError as exc:
            return render_template("portal.html", **_portal(user, "", str(exc))), 400
        except Refused as exc:
            status = 403 if exc.tag == "access-denied" else 409
            return render_template("portal.html", **_portal(user, "", str(exc))), status
        event = _portal_event(action, given, out)
        user.feed.add(event)
        sessions.nudge_all()
        return redirect(url_for("portal", done=event["text"]))

    # the event stream --------------------------------------------------------------------
    @app.get("/events")
    def events() -> Response:
        user: UserSession = g.user
        since = request.headers.get("Last-Event-ID") or request.args.get("since") or "0"
        try:
            start = int(since)
        except ValueError:
            start = 0
        gone = request.environ.get("waitress.client_disconnected") or (lambda: False)
        return Response(_stream(user, sessions, start, gone), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.errorhandler(Refused)
    def _refused(exc: Refused) -> Any:
        return render_template("error.html", error=str(exc)), 403

    return app


# -- data for the pages ----------------------------------------------------------------------

def _vcenter(user: UserSession) -> dict[str, Any]:
    """/vcenter as `user` may read it; remembers the names of the VMs' MACs for the
    timeline (the nDirector's events name MACs only)."""
    vc = user.connection.vcenter_state()
    user.vm_names.update({r["mac-address"]: f"{r['tenant']}/{r['name']}"
                          for r in model.vm_rows(vc) if r["mac-address"]})
    return vc


def _topology(user: UserSession) -> dict[str, Any]:
    vc, nds = _vcenter(user), user.connection.ndirector_states()
    targets: Targets = _targets()
    topo = model.topology(targets.hosts, vc, nds)
    return {"svg": svg.render(topo), "topo": topo, "vms": model.vm_rows(vc)}


def _mappings(user: UserSession, q: str) -> dict[str, Any]:
    rows = model.mapping_rows(user.connection.ndirector_states(), _vcenter(user))
    found = model.search(rows, q)
    by_vni: dict[int, list[dict[str, Any]]] = {}
    for r in found:
        by_vni.setdefault(r["vni"], []).append(r)
    return {"by_vni": sorted(by_vni.items()), "q": q, "total": len(rows), "shown": len(found)}


def _nves(user: UserSession) -> dict[str, Any]:
    return {"nves": model.nve_rows(user.connection.ndirector_states())}


def _portal(user: UserSession, done: str, error: str) -> dict[str, Any]:
    vc = _vcenter(user)
    vms = model.vm_rows(vc)
    vservers = sorted({h.vserver for h in _targets().hosts} |
                      {r["vserver"] for r in vms if r["vserver"]})
    return {"vms": vms, "tenants": model.groups_of(vc), "vservers": vservers,
            "done": done, "error": error}


def _targets() -> Targets:
    from flask import current_app
    targets: Targets = current_app.extensions["nvo3_targets"]
    return targets


def _portal_event(action: str, given: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    vm = f"{given['tenant']}/{given['name']}"
    event: dict[str, Any] = {"source": "portal", "tenant": given["tenant"],
                             "name": given["name"], "state": out.get("state")}
    if action == "create":
        event.update(kind="created", vserver=out.get("vserver"), nve=out.get("nve"),
                     mac=out.get("mac-address"), vni=out.get("vnid"),
                     text=f"{vm} created on {out.get('vserver')}")
    elif action == "relocate":
        event.update(kind="relocated", **{"previous-vserver": out.get("source-vserver"),
                                          "vserver": out.get("destination-vserver"),
                                          "nve": out.get("nve"),
                                          "duration-ms": out.get("duration")})
        event["text"] = (f"{vm} moved {out.get('source-vserver')} -> "
                         f"{out.get('destination-vserver')} in {out.get('duration', '?')} ms")
    elif action == "replicate":
        event.update(kind="replicated", vserver=out.get("destination-vserver"),
                     replica=out.get("replica-name"),
                     text=f"{vm} replicated to {out.get('destination-vserver')} as "
                          f"{out.get('replica-name')}")
    elif action == "delete":
        event.update(kind="deleted", text=f"{vm} deleted")
    else:
        res = ", ".join(f"{k} {v}" for k, v in (out.get("resources") or {}).items())
        event.update(kind="modified", resources=out.get("resources"),
                     text=f"{vm} modified ({out.get('state')}{'; ' + res if res else ''})")
    return event


def _stream(user: UserSession, sessions: SessionStore, start: int,
            gone: Callable[[], bool]) -> Iterator[str]:
    """Server-sent events: the backlog after `start`, then live events until the session
    ends, the browser goes away (`gone`, or a heartbeat write fails) or STREAM_LIMIT_S
    passes."""
    import time
    q = user.feed.listen()
    try:
        yield "retry: 1000\n\n"
        last = start
        for e in user.feed.events(start):
            last = e["id"]
            yield _sse(_named(user, e))
        yield "event: ready\ndata: {}\n\n"          # the backlog is over: live from here
        deadline = time.monotonic() + STREAM_LIMIT_S
        beat = time.monotonic() + HEARTBEAT_S
        while time.monotonic() < deadline and not gone():
            try:
                e = q.get(timeout=POLL_S)
            except queue.Empty:
                if time.monotonic() >= beat:
                    if sessions.get(user.sid) is None:
                        return
                    beat = time.monotonic() + HEARTBEAT_S
                    yield ": ping\n\n"
                continue
            if e.get("kind") == "closed":
                return
            if "id" in e and e["id"] <= last:
                continue
            last = e.get("id", last)
            yield _sse(_named(user, e))
    finally:
        user.feed.unlisten(q)


def _named(user: UserSession, e: dict[str, Any]) -> dict[str, Any]:
    """`e` with the VM's name when the event names only its MAC and the name is known."""
    if e.get("mac") and not e.get("name") and e["mac"] in user.vm_names:
        return {**e, "vm": user.vm_names[e["mac"]]}
    return e


def _sse(e: dict[str, Any]) -> str:
    ident = f"id: {e['id']}\n" if "id" in e else ""
    return f"{ident}data: {json.dumps(e, default=str)}\n\n"
