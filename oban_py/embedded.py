"""Zero-setup PostgreSQL: an embedded server from the ``pgserver`` wheel (extra ``embedded``).

Used by the demo when no DSN is given and by the test suite when neither ``DATABASE_URL`` nor a
Docker engine is available. Data lives in a project-local directory and survives restarts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def start(data_dir: str | Path, *, keep_running: bool = False) -> str:
    """Start (or join) the embedded server in ``data_dir`` and return a DSN for it.

    With ``keep_running`` the server outlives this process; otherwise it stops when the last
    process using it exits.
    """
    try:
        import pgserver
    except ImportError as error:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "no DSN given and the embedded PostgreSQL is not installed: "
            "pip install 'oban-py[embedded]' or pass --dsn / set DATABASE_URL"
        ) from error
    path = Path(data_dir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    mode = None if keep_running else "stop"
    server: Any = pgserver.get_server(path, cleanup_mode=mode)  # type: ignore[attr-defined]
    return str(server.get_uri())
