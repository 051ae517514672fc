"""The web console: people (add from photos or the camera, forget), events, the live view, health.

Starlette + uvicorn, server-rendered HTML (Jinja2), no build step, nothing fetched from elsewhere. The
console never loads the face model: face work (enrolment) is done by the daemon over its control socket
or by an ``edge-verify enroll`` child process, so that the console itself stays small (see
docs/CONSOLE.md). Importing this package imports nothing heavy: :mod:`.auth` is stdlib only.
"""
