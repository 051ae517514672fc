"""The console's pages and actions. Every one runs behind the login gate of :mod:`.app`; every POST
checks the CSRF token; every bad input gets a message on the page it came from."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..errors import EdgeVerifyError, UnknownPersonError
from ..events import EVENT_TYPES
from .app import (
    COOKIE,
    LOGIN_COOKIE,
    checked_form,
    redirect,
    render,
    session_of,
    set_session_cookie,
    state,
)
from .auth import check_password, same

log = logging.getLogger(__name__)

LIVE_MAX_S = 600.0  # one live stream lasts at most this long (the page reconnects)


# -- login ----------------------------------------------------------------------------------------------
def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _login_form(request: Request, token: str, error: str | None, status: int = 200) -> Response:
    """The login page with its form token, and the token's cookie (only for /login, an hour)."""
    response = render(request, "login.html", status=status, login_csrf=token, error=error)
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=state(request).secure_cookies,
                        path="/login", max_age=3600)
    return response


async def login_page(request: Request) -> Response:
    import secrets

    if request.scope.get("ev_session") is not None:
        return redirect("/people")
    # one token per browser until it logs in: a page loaded twice (or in two tabs) still logs in
    return _login_form(request, request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32), None)


async def login(request: Request) -> Response:
    import secrets

    st = state(request)
    client = _client(request)
    form = await request.form(max_files=0, max_fields=5)
    retry = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)

    def again(error: str, status: int) -> Response:
        return _login_form(request, retry, error, status)

    if not same(str(form.get("csrf") or ""), request.cookies.get(LOGIN_COOKIE)):
        return again("the login form expired: try again", 403)
    wait = st.limiter.wait_s(client)
    if wait > 0:
        return again(f"too many failed logins: try again in {int(wait) + 1} s", 429)
    password = str(form.get("password") or "")
    if not await run_in_threadpool(check_password, password, st.password_hash):
        st.limiter.failed(client)
        log.warning("console: failed login from %s", client)
        return again("wrong password", 401)
    st.limiter.succeeded(client)
    session = st.sessions.new()
    response = redirect("/people")
    set_session_cookie(request, response, session)
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    log.info("console: login from %s", client)
    return response


async def logout(request: Request) -> Response:
    await checked_form(request)
    state(request).sessions.end(request.cookies.get(COOKIE))
    response = redirect("/login")
    response.delete_cookie(COOKIE, path="/")
    return response


async def home(request: Request) -> Response:
    return redirect("/people")


# -- people ---------------------------------------------------------------------------------------------
def _people_page(request: Request, status: int = 200, **context: Any) -> Response:
    console = state(request).console
    rules = console.schedules()
    people = [{"name": p.name, "templates": p.templates, "created": p.created, "access": rules.get(p.name, "any time")}
              for p in console.people()]
    context.setdefault("error", None)
    context.setdefault("form", "")
    context.setdefault("name", "")
    return render(request, "people.html", status=status, people=people, **context)


async def people(request: Request) -> Response:
    return _people_page(request)


async def add_photos(request: Request) -> Response:
    form = await checked_form(request)
    name = str(form.get("name") or "")
    uploads = [f for f in form.getlist("photos") if isinstance(f, UploadFile) and (f.filename or f.size)]
    photos = [(f.filename or "photo", await f.read()) for f in uploads]
    try:
        n = await run_in_threadpool(state(request).console.enrol_photos, name, photos)
    except EdgeVerifyError as e:
        return _people_page(request, 400, error=str(e), form="photos", name=name)
    session_of(request).flash.append(f"enrolled {name.strip()!r} from {len(photos)} photo"
                                     f"{'s' * (len(photos) != 1)} ({n} template{'s' * (n != 1)})")
    return redirect("/people")


async def add_camera(request: Request) -> Response:
    form = await checked_form(request)
    name = str(form.get("name") or "")
    try:
        job = state(request).console.start_camera_enrolment(name)
    except EdgeVerifyError as e:
        return _people_page(request, 400, error=str(e), form="camera", name=name)
    return redirect(f"/people/enrol/{job.id}")


async def enrol_job(request: Request) -> Response:
    job = state(request).console.job(int(request.path_params["job"]))
    if job is None:
        raise HTTPException(404, "no such enrolment")
    last = job.progress[-1] if job.progress else {"kept": 0, "k": 5, "message": "starting the camera"}
    return render(request, "enrol.html", job=job, last=last)


async def forget_page(request: Request) -> Response:
    name = request.query_params.get("name", "")
    enrolled = state(request).console.gallery.resolve(name) if name.strip() else None
    if enrolled is None:
        raise HTTPException(404, f"{name[:64]!r} is not enrolled")
    return render(request, "forget.html", name=enrolled)


async def forget(request: Request) -> Response:
    form = await checked_form(request)
    name = str(form.get("name") or "")
    if form.get("confirm") != "yes":
        return render(request, "forget.html", status=400, name=name, error="tick the box to confirm")
    try:
        templates, snaps = await run_in_threadpool(state(request).console.forget, name)
    except UnknownPersonError as e:
        return _people_page(request, 404, error=str(e))
    except EdgeVerifyError as e:
        return _people_page(request, 400, error=str(e))
    session_of(request).flash.append(f"forgot {name.strip()!r}: {templates} templates and {snaps} snapshots deleted")
    return redirect("/people")


def _schedule_page(request: Request, name: str, status: int = 200, error: str | None = None,
                   form: dict[str, str] | None = None) -> Response:
    console = state(request).console
    enrolled = console.gallery.resolve(name) if name.strip() else None
    if enrolled is None:
        raise HTTPException(404, f"{name[:64]!r} is not enrolled")
    rule = console.access(enrolled)
    windows, valid_from, valid_until = rule.texts()
    current = {"windows": windows or "", "valid_from": valid_from or "", "valid_until": valid_until or ""}
    return render(request, "schedule.html", status=status, name=enrolled, rule=rule.describe(), error=error,
                  form=form or current)


async def schedule_page(request: Request) -> Response:
    return _schedule_page(request, request.query_params.get("name", ""))


async def set_schedule(request: Request) -> Response:
    form = await checked_form(request)
    name = str(form.get("name") or "")
    fields = {k: str(form.get(k) or "")[:200] for k in ("windows", "valid_from", "valid_until")}
    try:
        rule = await run_in_threadpool(state(request).console.set_schedule, name, fields["windows"],
                                       fields["valid_from"], fields["valid_until"])
    except UnknownPersonError as e:
        raise HTTPException(404, str(e)) from None
    except EdgeVerifyError as e:
        return _schedule_page(request, name, 400, str(e), fields)
    session_of(request).flash.append(f"{name.strip()!r} may enter: {rule.describe()}")
    return redirect("/people")


# -- events ---------------------------------------------------------------------------------------------
def _time_filter(text: str, key: str) -> float | None:
    """A date (YYYY-MM-DD) or date and time (YYYY-MM-DDTHH:MM[:SS]) in UTC, as Unix seconds."""
    text = text.strip()
    if not text:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    raise ValueError(f"{key}: expected a date such as 2025-01-31 or 2025-01-31T08:00, got {text[:40]!r}")


def _event_filters(request: Request) -> dict[str, Any]:
    q = request.query_params
    types = [t for t in q.getlist("type") if t]
    bad = [t for t in types if t not in EVENT_TYPES]
    if bad:
        raise ValueError(f"type: unknown event type {bad[0][:40]!r} (one of {', '.join(EVENT_TYPES)})")
    try:
        limit = int(q.get("limit") or 100)
    except ValueError:
        raise ValueError(f"limit: not a number: {q.get('limit', '')[:20]!r}") from None
    if not 1 <= limit <= 1000:
        raise ValueError("limit: between 1 and 1000")
    return {"types": types, "person": q.get("person", "").strip() or None,
            "since": _time_filter(q.get("since", ""), "since"), "until": _time_filter(q.get("until", ""), "until"),
            "limit": limit}


async def events_page(request: Request) -> Response:
    q = request.query_params
    try:
        rows = state(request).console.events(**_event_filters(request))
        error = None
    except ValueError as e:
        rows, error = [], str(e)
    return render(request, "events.html", status=400 if error else 200, rows=rows, error=error, types=EVENT_TYPES,
                  chosen=q.getlist("type"), person=q.get("person", ""), since=q.get("since", ""),
                  until=q.get("until", ""))


async def events_api(request: Request) -> Response:
    try:
        rows = state(request).console.events(**_event_filters(request))
    except ValueError as e:
        return JSONResponse({"error": str(e)}, status_code=400)
    return JSONResponse([{**r.event, "snapshot": bool(r.snapshot)} for r in rows])


async def snapshot(request: Request) -> Response:
    path = state(request).console.snapshot(request.path_params["event_id"])
    if path is None:
        raise HTTPException(404, "no snapshot for this event")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})


# -- live view and health -------------------------------------------------------------------------------
async def live_page(request: Request) -> Response:
    console = state(request).console
    reason = None
    if not console.cfg.web.live_view:
        reason = "The live view is off: set live_view = true in the [web] section of the configuration."
    elif not await run_in_threadpool(console.daemon.available):
        reason = "The daemon is not running: the live view shows its camera."
    return render(request, "live.html", reason=reason)


async def live_stream(request: Request) -> Response:
    console = state(request).console
    if not console.cfg.web.live_view:
        raise HTTPException(404, "the live view is off")
    period = 1.0 / console.cfg.web.live_fps

    async def frames() -> AsyncIterator[bytes]:
        end = time.monotonic() + LIVE_MAX_S
        while time.monotonic() < end and not await request.is_disconnected():
            jpeg = await run_in_threadpool(console.frame)
            if jpeg:
                yield (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(jpeg)).encode()
                       + b"\r\n\r\n" + jpeg + b"\r\n")
            await asyncio.sleep(period if jpeg else 1.0)

    return StreamingResponse(frames(), media_type="multipart/x-mixed-replace; boundary=frame",
                             headers={"Cache-Control": "no-store"})


async def health_page(request: Request) -> Response:
    return render(request, "health.html", h=await run_in_threadpool(state(request).console.health))


async def health_api(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(state(request).console.health))


async def people_api(request: Request) -> Response:
    return JSONResponse([{"name": p.name, "templates": p.templates, "created": p.created}
                         for p in state(request).console.people()])


def routes() -> list[Route]:
    return [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", home, methods=["GET"]),
        Route("/people", people, methods=["GET"]),
        Route("/people/photos", add_photos, methods=["POST"]),
        Route("/people/camera", add_camera, methods=["POST"]),
        Route("/people/enrol/{job:int}", enrol_job, methods=["GET"]),
        Route("/people/forget", forget_page, methods=["GET"]),
        Route("/people/forget", forget, methods=["POST"]),
        Route("/people/schedule", schedule_page, methods=["GET"]),
        Route("/people/schedule", set_schedule, methods=["POST"]),
        Route("/events", events_page, methods=["GET"]),
        Route("/snapshots/{event_id}.jpg", snapshot, methods=["GET"]),
        Route("/live", live_page, methods=["GET"]),
        Route("/live.mjpeg", live_stream, methods=["GET"]),
        Route("/health", health_page, methods=["GET"]),
        Route("/api/health", health_api, methods=["GET"]),
        Route("/api/events", events_api, methods=["GET"]),
        Route("/api/people", people_api, methods=["GET"]),
    ]
