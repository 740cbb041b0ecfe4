#!/usr/bin/env python3
"""Project tasks that need nothing but python3: each creates .venv and installs what it needs.

python3 dev.py demo    # embedded PostgreSQL (or DATABASE_URL / --dsn), a real node, real jobs
python3 dev.py test    # the whole test suite
python3 dev.py lint    # ruff check, ruff format --check, mypy
python3 dev.py bench   # benchmarks (see bench/README.md)
python3 dev.py docs    # the documentation site, built strictly into site/
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
EXTRAS = "dev,embedded,docs,fastapi,django,sqlalchemy,otel,prometheus,web"


def ensure_venv() -> None:
    # Reinstall only when pyproject.toml changed, so repeated runs start fast.
    stamp = VENV / ".installed"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest and PY.exists():
        return
    if sys.version_info < (3, 11):  # noqa: UP036 - this file runs under any python3
        sys.exit(f"oban-py needs Python 3.11 or newer, this is {sys.version.split()[0]}")
    if not PY.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [str(PY), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
    print(f"installing oban-py[{EXTRAS}] into {VENV}", flush=True)
    subprocess.run([*pip, "install", "-e", f".[{EXTRAS}]"], check=True, cwd=ROOT)
    stamp.write_text(digest)


def run(*argv: str) -> int:
    return subprocess.call(list(argv), cwd=ROOT)


def main() -> int:
    task, *rest = sys.argv[1:] or ["help"]
    if task in ("help", "-h", "--help"):
        print(__doc__)
        return 0
    ensure_venv()
    if task == "test":
        return run(str(PY), "-m", "pytest", *rest)
    if task == "demo":
        return run(str(BIN / "oban-py"), "demo", *rest)
    if task == "lint":
        checks = [
            [str(PY), "-m", "ruff", "check", "."],
            [str(PY), "-m", "ruff", "format", "--check", "."],
            [str(PY), "-m", "mypy"],
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
