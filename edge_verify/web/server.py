"""Serving the console with uvicorn: in the foreground (``edge-verify web``) or from a thread of the
daemon (``[web] enabled = true``). Beyond localhost only with TLS or ``insecure_listen`` (checked by
the config); cookies are marked Secure under TLS."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from ..config import Config, parse_listen
from ..errors import ConfigError
from .auth import password_path, read_password_hash

log = logging.getLogger(__name__)


def _imports() -> Any:
    try:
        import jinja2  # noqa: F401
        import multipart  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn
    except ImportError as e:
        raise ConfigError(f"the web console needs the 'web' extra ({e.name} is missing): "
                          "pip install 'edge-verify[web]'") from None
    return uvicorn


def build(cfg: Config, config_path: Path | None) -> tuple[Any, Any]:
    """(the app, uvicorn's config) for ``cfg``."""
    uvicorn = _imports()
    from .app import create_app
    from .console import Console

    w = cfg.web
    pw = read_password_hash(password_path(cfg.state_path, w.password_file))
    host, port = parse_listen(w.listen)
    app = create_app(Console(cfg, config_path), pw, secure_cookies=bool(w.tls_cert))
    uv = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off",
                        ssl_certfile=w.tls_cert or None, ssl_keyfile=w.tls_key or None, server_header=False,
                        proxy_headers=False)
    return app, uv


def url(cfg: Config) -> str:
    host, port = parse_listen(cfg.web.listen)
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if cfg.web.tls_cert else 'http'}://{host}:{port}/"


def serve(cfg: Config, config_path: Path | None) -> int:
    """``edge-verify web``: serve until SIGINT/SIGTERM, then exit 0."""
    import signal

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before the socket listens: a stop from then on is clean
        signal.signal(sig, lambda *_: stop.set())
    web = WebServer(cfg, config_path).start()
    log.warning("console on %s (state %s)", web.url, cfg.state_path)
    while not stop.wait(0.5) and web.alive:
        pass
    web.stop()
    return 0


class WebServer:
    """The console in a thread of the daemon."""

    def __init__(self, cfg: Config, config_path: Path | None) -> None:
        uvicorn = _imports()
        self.app, uv = build(cfg, config_path)
        self.server = uvicorn.Server(uv)
        self.server.install_signal_handlers = lambda: None  # older uvicorn; newer ones skip non-main threads
        self.url = url(cfg)
        self._thread = threading.Thread(target=self.server.run, name="web", daemon=True)

    def start(self, timeout: float = 15.0) -> WebServer:
        """Start serving; returns once the socket listens (ConfigError when it cannot)."""
        import time

        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.server.should_exit = True
                raise ConfigError(f"web.listen: cannot serve the console on {self.url} (address in use?)")
            time.sleep(0.05)
        log.info("web console on %s", self.url)
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(10)
        self.app.state.web.console.close()
