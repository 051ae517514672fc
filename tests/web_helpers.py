"""The console under test: a state directory with a password, the app, and a logged-in client."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from edge_verify import config
from edge_verify.web.auth import password_path, write_password

PASSWORD = "correct horse battery"


def console_config(state: Path, **web: Any) -> config.Config:
    extra = "".join(f"{k} = {v!r}\n".replace("'", '"').replace("True", "true").replace("False", "false")
                    for k, v in web.items())
    path = state.parent / "console.toml"
    path.write_text(f'[device]\nstate_dir = "{state}"\n[web]\n{extra}')
    cfg = config.load(path)
    write_password(password_path(cfg.state_path, ""), PASSWORD)
    return cfg


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html[:500]
    return m.group(1)


def messages(html: str, kind: str = "error") -> list[str]:
    import html as h

    return [h.unescape(m) for m in re.findall(rf'class="{kind}"[^>]*>([^<]*)<', html)]


def login(client: Any, password: str = PASSWORD) -> Any:
    token = csrf_of(client.get("/login").text)
    return client.post("/login", data={"csrf": token, "password": password})
