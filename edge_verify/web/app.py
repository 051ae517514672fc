"""The console's Starlette application: sessions, the login gate in front of every route, CSRF checks,
templates and static files. The pages themselves are in :mod:`.routes`.

Without a session, every path except ``/login`` and ``/static/`` answers 303 to ``/login`` (``/api/``
paths: 401), before any route runs, so nothing of the gallery shows. Every POST needs the session's
CSRF token (:func:`checked_form`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from .auth import RateLimit, Session, Sessions, same
from .console import Console

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
COOKIE = "ev_session"
LOGIN_COOKIE = "ev_login"  # the login form's CSRF token, before there is a session
MAX_FORM_BYTES = 16 * 1024 * 1024  # multipart uploads: 10 photos of up to 15 MB are refused by size first


@dataclass
class WebState:
    console: Console
    password_hash: str
    sessions: Sessions
    limiter: RateLimit
    secure_cookies: bool
    templates: Environment


def state(request: Request) -> WebState:
    st: WebState = request.app.state.web
    return st


def session_of(request: Request) -> Session:
    s: Session = request.scope["ev_session"]
    return s


class LoginGate:
    """ASGI middleware: a request without a valid session reaches only ``/login`` (exactly) and ``/static/``."""

    def __init__(self, app: ASGIApp, sessions: Sessions) -> None:
        self.app, self.sessions = app, sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        path = scope["path"]
        session = self.sessions.get(request.cookies.get(COOKIE))
        if session is None and not (path == "/login" or path.startswith("/static/")):
            response: Response
            if path.startswith("/api/"):
                response = JSONResponse({"error": "login required"}, status_code=401)
            else:
                response = RedirectResponse("/login", status_code=303)
            await response(scope, receive, send)
            return
        scope["ev_session"] = session
        await self.app(scope, receive, send)


async def checked_form(request: Request) -> FormData:
    """The POSTed form, after its CSRF token is checked against the session's (403 otherwise)."""
    from starlette.formparsers import MultiPartException

    if int(request.headers.get("content-length") or 0) > MAX_FORM_BYTES:
        raise HTTPException(413, "upload too large: at most 16 MB at a time")
    try:
        form = await request.form(max_files=12, max_fields=20, max_part_size=MAX_FORM_BYTES)
    except MultiPartException as e:
        raise HTTPException(400, f"bad form: {e}") from None
    if not same(str(form.get("csrf") or ""), session_of(request).csrf):
        raise HTTPException(403, "the form has expired or did not come from this console: reload the page")
    return form


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    st = state(request)
    session = request.scope.get("ev_session")
    flash = []
    if session is not None:
        flash, session.flash = session.flash, []
    html = st.templates.get_template(template).render(
        request=request, csrf=session.csrf if session else "", logged_in=session is not None, flash=flash,
        live_view=st.console.cfg.web.live_view, **context)
    response = HTMLResponse(html, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    return response


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
    return render(request, "error.html", status=exc.status_code, message=exc.detail)


SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class Headers:
    """ASGI middleware: security headers on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with if scope["type"] == "http" else send)


def create_app(console: Console, password_hash: str, *, secure_cookies: bool = False) -> Starlette:
    from starlette.middleware import Middleware

    from .routes import routes

    sessions = Sessions(console.cfg.web.session_hours * 3600)
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
    app = Starlette(
        routes=[*routes(), Mount("/static", StaticFiles(directory=HERE / "static"), name="static")],
        middleware=[Middleware(Headers), Middleware(LoginGate, sessions=sessions)],
        exception_handlers={HTTPException: http_error},
    )
    app.state.web = WebState(console, password_hash, sessions, RateLimit(), secure_cookies, env)
    return app


def set_session_cookie(request: Request, response: Response, session: Session) -> None:
    st = state(request)
    response.set_cookie(COOKIE, session.token, max_age=int(st.sessions.lifetime_s), httponly=True,
                        samesite="strict", secure=st.secure_cookies, path="/")


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)
