"""Importing the service does nothing: no app, engine, file or logging configuration until a
server, the worker or a test asks for one (the composition roots are factories)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

IMPORT_EVERYTHING = """
import importlib, logging, pkgutil, sys
import app
names = [m.name for m in pkgutil.walk_packages(app.__path__, "app.") if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
configured = [h for h in logging.getLogger().handlers] + [h for h in logging.getLogger("uvicorn").handlers]
sys.exit(f"logging configured at import: {configured}" if configured else 0)
"""


def test_importing_every_module_prints_nothing_creates_nothing_and_configures_no_logging(
    tmp_path: Path,
) -> None:
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DATABASE_", "KAFKA_", "OUTBOX_", "LOG_"))
    }
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERYTHING],
        cwd=tmp_path,  # relative paths (./var/app.db) would land here
        env={**environment, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")
    assert list(tmp_path.iterdir()) == []


def test_the_project_is_importable_from_any_directory(tmp_path: Path) -> None:
    """``make install`` installs the project (editable): ``python -m app.worker`` works anywhere."""
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", "import app; print(app.__file__)"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"not installed: run `make install` ({done.stderr.strip()})"
    assert Path(done.stdout.strip()) == ROOT / "app" / "__init__.py"


def test_the_worker_does_not_build_or_import_the_api() -> None:
    """The worker shares the composition (app.composition), not the API's app factory."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys, app.worker; print('app.main' in sys.modules)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
