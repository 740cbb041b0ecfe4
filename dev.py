#!/usr/bin/env python3
"""Project tasks that need nothing but python3: each creates .venv and installs what it needs.

python3 dev.py demo    # embedded PostgreSQL (or DATABASE_URL / --dsn), a real node, real jobs
                       # (installs only the core and the embedded server)
python3 dev.py test    # the whole test suite (installs every extra), then the Django 6 tests
                       # (tests/ext/django6) and the node's hot path (eager tasks) in
                       # .venv312, a Python 3.12+ venv of their own
python3 dev.py lint    # ruff check, ruff format --check, mypy, import-linter (layers, no cycles)
python3 dev.py bench   # benchmarks (see bench/README.md)
python3 dev.py docs    # the documentation site, built strictly into site/
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
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
#: Django 6 (``django.tasks``, the Oban task backend) needs Python 3.12+, the rest 3.11: its tests
#: run in a venv of their own, after the main suite.
VENV6 = ROOT / ".venv312"
PY6 = VENV6 / ("Scripts" if os.name == "nt" else "bin") / "python"
DJANGO6_TESTS = "tests/ext/django6"
DJANGO6_REQUIREMENT = "django>=6.0"
#: The node's hot path again under Python 3.12+, where a claimed job's task starts eagerly
#: (``oban_py.aio.start_task``): the main suite on 3.11 never takes that path.
EAGER_TESTS = (
    "tests/test_fast_paths.py",
    "tests/test_node.py",
    "tests/test_attempt_lifecycle.py",
    "tests/test_attempt_property.py",
    "tests/test_state_machine.py",
    "tests/test_shutdown.py",
    "tests/test_execution.py",
)
#: The whole main suite runs on two pytest-xdist workers: most of its time is spent waiting on
#: PostgreSQL, node processes and timers, not on the two cores. The fault tests (grouped by
#: tests/conftest.py) run one after another on one worker. ``-n 0`` after ``dev.py test`` runs
#: it in one process.
PARALLEL = ("-n", "2", "--dist", "loadgroup")


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


def _python312() -> str | None:
    """A Python 3.12+ interpreter that runs: ``OBAN_PYTHON312``, ``python3.12``/``python3.13`` on
    PATH, then pyenv's versions (a pyenv shim on PATH may name a version that is not selected)."""
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = [os.environ.get("OBAN_PYTHON312", "")]
    candidates += [shutil.which(name) or "" for name in ("python3.12", "python3.13")]
    for pattern in ("3.12*", "3.13*"):
        candidates += sorted(glob.glob(os.path.join(root, "versions", pattern, "bin", "python3")))
    for candidate in filter(None, candidates):
        probe = [candidate, "-c", "import sys, venv; sys.exit(sys.version_info < (3, 12))"]
        if subprocess.run(probe, capture_output=True).returncode == 0:
            return candidate
    return None


#: The extras of ``.venv312``.
EXTRAS6 = "dev,django,embedded"


def ensure_venv312() -> Path:
    """``.venv312`` with ``EXTRAS6`` and Django 6; exits loudly without a 3.12 interpreter
    rather than skip the Django 6 tests."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    digest = f"{digest}:{EXTRAS6}"
    stamp = VENV6 / ".installed"
    if PY6.exists() and stamp.exists() and stamp.read_text() == digest:
        return PY6
    interpreter = _python312()
    if interpreter is None:
        sys.exit(
            "dev.py test: the Django 6 tests (tests/ext/django6) need Python 3.12 or newer and"
            " none was found (python3.12 on PATH, ~/.pyenv/versions/3.12*, or OBAN_PYTHON312)."
            " Install one (e.g. `pyenv install 3.12`, `apt-get install python3.12`,"
            " `uv python install 3.12`) and run again."
        )
    if not PY6.exists():
        print(f"creating {VENV6} with {interpreter}", flush=True)
        subprocess.run([interpreter, "-m", "venv", str(VENV6)], check=True)
    pip = [str(PY6), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
    # embedded: without DATABASE_URL these tests run on the embedded server too.
    print(f"installing oban-py[{EXTRAS6}] and {DJANGO6_REQUIREMENT} into {VENV6}", flush=True)
    subprocess.run(
        [*pip, "install", "-e", f".[{EXTRAS6}]", DJANGO6_REQUIREMENT], check=True, cwd=ROOT
    )
    stamp.write_text(digest)
    return PY6


def test(rest: list[str]) -> int:
    """The main suite in .venv, then the Django 6 tests and the node's hot path (``EAGER_TESTS``)
    in .venv312; failure if any fails.
    Given paths, those under tests/ext/django6 run in .venv312, the others in .venv."""

    def is_path(arg: str) -> bool:
        return not arg.startswith("-") and (ROOT / arg.split("::")[0]).exists()

    paths = [a for a in rest if is_path(a)]
    options = [a for a in rest if not is_path(a)]
    if not paths:
        # Before the main suite: a machine without Python 3.12 fails at once, not after it.
        py6 = ensure_venv312()
        main = run(str(PY), "-m", "pytest", *PARALLEL, *options)
        print(f"\nthe Django 6 tests ({DJANGO6_TESTS}) under Python 3.12+", flush=True)
        django6 = run(str(py6), "-m", "pytest", *options, DJANGO6_TESTS)
        print("\nthe node's hot path under Python 3.12+ (eager task start)", flush=True)
        eager = run(str(py6), "-m", "pytest", *PARALLEL, *options, *EAGER_TESTS)
        return main or django6 or eager
    django6 = [a for a in paths if a.startswith(DJANGO6_TESTS)]
    others = [a for a in paths if a not in django6]
    codes = []
    if others:
        codes.append(run(str(PY), "-m", "pytest", *options, *others))
    if django6:
        codes.append(run(str(ensure_venv312()), "-m", "pytest", *options, *django6))
    return max(codes)


def run(*argv: str) -> int:
    return subprocess.call(list(argv), cwd=ROOT)


def main() -> int:
    task, *rest = sys.argv[1:] or ["help"]
    if task in ("help", "-h", "--help"):
        print(__doc__)
        return 0
    ensure_venv(DEMO_EXTRAS if task == "demo" else EXTRAS)
    if task == "test":
        return test(rest)
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
