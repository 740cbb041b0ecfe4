#!/usr/bin/env python3
"""Project tasks that need nothing but python3: each creates .venv and installs what it needs.

python3 dev.py demo    # embedded PostgreSQL (or DATABASE_URL / --dsn), a real node, real jobs
                       # (installs only the core and the embedded server)
python3 dev.py test    # the whole test suite (installs every extra)
python3 dev.py lint    # ruff check, ruff format --check, mypy, import-linter (layers, no cycles)
python3 dev.py bench   # benchmarks (see bench/README.md)
python3 dev.py docs    # the documentation site, built strictly into site/
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
EXTRAS = "dev,embedded,docs,fastapi,django,flask,sqlalchemy,otel,prometheus,web"
#: The demo needs the package and the embedded PostgreSQL only: a few wheels, not the toolchain.
DEMO_EXTRAS = "embedded"


def _installed(digest: str) -> set[str]:
    """The extras already installed for this pyproject.toml (none when it changed since)."""
    stamp = VENV / ".installed"
    if not stamp.exists() or not PY.exists():
        return set()
    text = stamp.read_text()
    if text == digest:  # the stamp of a full install, before extras were recorded
        return set(EXTRAS.split(","))
    try:
        recorded = json.loads(text)
    except ValueError:
        return set()
    if not isinstance(recorded, dict) or recorded.get("digest") != digest:
        return set()
    return set(recorded.get("extras", []))


def ensure_venv(extras: str = EXTRAS) -> None:
    # Reinstall only when pyproject.toml changed or an extra is missing, so repeated runs
    # start fast; a demo venv grows into a full one on the first `dev.py test`.
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    have = _installed(digest)
    wanted = set(extras.split(","))
    if wanted <= have:
        return
    if sys.version_info < (3, 11):  # noqa: UP036 - this file runs under any python3
        sys.exit(f"oban-py needs Python 3.11 or newer, this is {sys.version.split()[0]}")
    if not PY.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [str(PY), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
    extras_now = sorted(wanted | have)
    print(f"installing oban-py[{','.join(extras_now)}] into {VENV}", flush=True)
    subprocess.run([*pip, "install", "-e", f".[{','.join(extras_now)}]"], check=True, cwd=ROOT)
    (VENV / ".installed").write_text(json.dumps({"digest": digest, "extras": extras_now}))


def run(*argv: str) -> int:
    return subprocess.call(list(argv), cwd=ROOT)


def main() -> int:
    task, *rest = sys.argv[1:] or ["help"]
    if task in ("help", "-h", "--help"):
        print(__doc__)
        return 0
    ensure_venv(DEMO_EXTRAS if task == "demo" else EXTRAS)
    if task == "test":
        return run(str(PY), "-m", "pytest", *rest)
    if task == "demo":
        return run(str(BIN / "oban-py"), "demo", *rest)
    if task == "lint":
        checks = [
            [str(PY), "-m", "ruff", "check", "."],
            [str(PY), "-m", "ruff", "format", "--check", "."],
            [str(PY), "-m", "mypy"],
            # The layers and the no-cycles rule of pyproject.toml's [tool.importlinter].
            [str(BIN / "lint-imports")],
        ]
        return max(run(*c) for c in checks)
    if task == "docs":
        return run(str(BIN / "mkdocs"), "build", "--strict", "--site-dir", "site", *rest)
    if task == "bench":
        return run(str(PY), "-m", "bench", *rest)
    print(f"unknown task {task!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
