"""The Flask application without a login: every view needs one, POSTs need the CSRF token,
and a vCenter that cannot be reached is said so. (Logged-in behaviour runs against a real
lab in tests/browser/.)"""

from __future__ import annotations

import re
import socket

from nvo3.dashboard.app import create_app
from nvo3.dashboard.targets import Endpoint, Targets

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample"


def _free_port() -> int:
    with socket.socket() as s:          # bound then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _app() -> object:
    port = _free_port()
    return create_app(Targets(Endpoint("vcenter-root", "127.0.0.1", port, KEY),
                              (Endpoint("ndirector", "127.0.0.1", port, KEY),)))


def test_views_need_a_login() -> None:
    client = _app().test_client()  # type: ignore[attr-defined]
    for path in ("/", "/topology", "/mappings", "/nves", "/timeline", "/portal",
                 "/vm/alice/vm1"):
        resp = client.get(path)
        assert resp.status_code == 302, path
        assert "/login" in resp.headers["Location"] or path == "/"
    assert client.get("/events").status_code == 401
    assert client.get("/fragment/topology").status_code == 401
    page = client.get("/login")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]


def test_posts_need_the_csrf_token() -> None:
    client = _app().test_client()  # type: ignore[attr-defined]
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    assert client.post("/login", data={"username": "operator", "password": "x"}
                       ).status_code == 400
    assert client.post("/login", data={"username": "operator", "password": "x",
                                       "csrf": "forged"}).status_code == 400
    assert client.post("/portal/create", data={"csrf": token}).status_code == 302  # no login
    resp = client.post("/login", data={"username": "", "password": "", "csrf": token})
    assert resp.status_code == 401 and "username and password" in resp.get_data(as_text=True)
    resp = client.post("/login", data={"username": "operator", "password": "pw", "csrf": token})
    assert resp.status_code == 401
    assert "cannot reach the vCenter vcenter-root" in resp.get_data(as_text=True)
