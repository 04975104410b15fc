"""docs/ADD_A_BOUNDED_CONTEXT.md, followed as written on a copy of the repository, gives a second
bounded context that passes ``make lint`` and its own tests, the repository's unit tests, the
migration drift test and the API fuzzing: the walk-through cannot rot.

Every block whose info string names a file (```python file=app/teams/domain.py) is written to
the copy; a ```diff file=... block is an edit, applied to the file it names. The copy's tools run
in a virtualenv of its own (tests/repo_copy.py), so our venv and its editable install stay as they
are; the copy's tests create their own databases on the PostgreSQL this run uses.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.docs.test_examples import parse_blocks
from tests.repo_copy import copy_environment, copy_venv, copy_worktree
from tests.services import create_postgres_database, drop_postgres_database

DOC = ROOT / "docs" / "ADD_A_BOUNDED_CONTEXT.md"
TIMEOUT = 900
# Besides the new context's own tests: what adding a context can break elsewhere.
ALSO_RUN = ["tests/unit", "tests/integration/test_migrations.py", "tests/e2e/test_api_fuzz.py"]
NOT_PASSED = {"failure", "error", "skipped"}  # what a junit <testcase> holds when it did not pass
# The walk-through's tests that show what the issue asks for, on SQLite and PostgreSQL: the
# endpoints answer over HTTP; the consumer reacts to a registration; the teams' events reach the outbox.
PROOFS = [
    f"tests.integration.teams.test_service.{test}[{backend}]"
    for test in ("test_teams_over_http", "test_a_registered_user_gets_a_personal_team")
    for backend in ("sqlite", "postgres")
]


def apply_edit(original: str, diff: str, where: str) -> str:
    """Apply a ```diff block: in each hunk (hunks are separated by ``@@`` lines) the context
    (`` ``) and removed (``-``) lines, which must occur exactly once in the file, become the
    context and added (``+``) lines. A blank line is blank context."""
    for number, hunk in enumerate(re.split(r"^@@.*\n", diff, flags=re.M), start=1):
        old: list[str] = []
        new: list[str] = []
        for line in hunk.splitlines():
            mark, rest = line[:1], line[1:]
            if mark not in {" ", "", "-", "+"}:
                raise AssertionError(f"{where}: hunk {number}: a diff line starts with {mark!r}: {line!r}")
            if mark != "+":
                old.append(rest)
            if mark != "-":
                new.append(rest)
        if old == new:
            continue
        before, after = "\n".join(old) + "\n", "\n".join(new) + "\n"
        found = original.count(before)
        assert found == 1, f"{where}: hunk {number} matches {found} places, not one:\n{before}"
        original = original.replace(before, after)
    return original


def apply_document(text: str, root: Path) -> list[str]:
    """Write the document's ``file=`` blocks into ``root`` and apply its edits; the paths."""
    touched: list[str] = []
    for block in parse_blocks(text, DOC.name):
        if block.file is None:
            continue
        where = f"{DOC.name}:{block.line} ({block.file})"
        assert block.file not in touched, f"{where}: the document names this file twice"
        touched.append(block.file)
        target = root / block.file
        if block.lang == "diff":
            assert target.is_file(), f"{where}: an edit of a file the repository does not have"
            target.write_text(apply_edit(target.read_text(), block.text, where))
        else:
            assert not target.exists(), f"{where}: overwrites a file; show a change as ```diff file=..."
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.text)
    return touched


def lint_commands(makefile: Path) -> list[list[str]]:
    """The recipe of ``make lint``, each ``$(BIN)/tool args`` as ``tool args`` (run as ``-m``)."""
    recipe = re.search(r"^lint:.*\n((?:\t.*\n)+)", makefile.read_text(), flags=re.M)
    assert recipe, "the Makefile has no lint target"
    commands = [shlex.split(line.strip().removeprefix("$(BIN)/")) for line in recipe[1].splitlines()]
    assert commands, "make lint runs nothing"
    return commands


def test_the_hunks_of_an_edit_must_match_once() -> None:
    original = "a\nb\nc\n"
    assert apply_edit(original, " a\n-b\n+B\n c\n", "x") == "a\nB\nc\n"
    assert apply_edit(original, "-a\n+A\n@@ second hunk @@\n c\n+d\n", "x") == "A\nb\nc\nd\n"
    with pytest.raises(AssertionError, match="matches 0 places"):
        apply_edit(original, "-z\n+y\n", "x")
    with pytest.raises(AssertionError, match="starts with"):
        apply_edit(original, "*a\n", "x")


@pytest.fixture(scope="module")
async def postgres_available() -> None:
    """The copy's integration tests need PostgreSQL: skip here (or fail with REQUIRE_SERVICES=1)
    when it is missing, rather than letting the copy's run skip them quietly."""
    await drop_postgres_database(await create_postgres_database())


def test_the_walkthrough_gives_a_context_that_lints_and_passes_its_tests(
    postgres_available: None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    timings: dict[str, float] = {}
    started = time.monotonic()
    root = copy_worktree(ROOT, tmp_path_factory.mktemp("add-a-context") / "repo")
    touched = apply_document(DOC.read_text(), root)
    python = copy_venv(root)
    timings["copy, apply, venv"] = time.monotonic() - started
    environment = {**copy_environment(), "REQUIRE_SERVICES": "1"}

    def run(*args: str | Path, cwd: Path = root, step: str | None = None) -> str:
        begun = time.monotonic()
        command = " ".join(map(str, args))
        with subprocess.Popen(
            [str(arg) for arg in args],
            cwd=cwd,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # on a timeout, the servers its tests started go too
        ) as process:
            try:
                stdout, stderr = process.communicate(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
                raise AssertionError(f"{command} did not finish within {TIMEOUT} s") from None
        if step:
            timings[step] = timings.get(step, 0.0) + time.monotonic() - begun
        assert process.returncode == 0, f"{command} failed:\n{stdout[-8000:]}\n{stderr[-4000:]}"
        return stdout

    imported = run(python, "-c", "import app; print(app.__file__)", cwd=tmp_path_factory.mktemp("elsewhere"))
    print(f"\nthe copy's python imports {imported.strip()}", file=sys.stderr)
    assert Path(imported.strip()) == root / "app" / "__init__.py"

    for command in lint_commands(root / "Makefile"):
        run(python, "-m", *command, step="make lint")

    created = [path for path in touched if not (ROOT / path).exists()]
    new_tests = sorted(path for path in created if re.match(r"tests/.*/test_\w+\.py$", path))
    assert any(path.startswith("tests/unit/") for path in new_tests), "the walk-through adds no unit test"
    assert any(path.startswith("tests/integration/") for path in new_tests), "...and no integration test"
    report = root / "var" / "add-a-context.xml"
    run(
        *(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}"),
        *sorted(set(new_tests) | set(ALSO_RUN)),
        step="tests",
    )
    cases = ET.parse(report).getroot().iter("testcase")
    outcomes = {
        f"{case.get('classname')}.{case.get('name')}": {child.tag for child in case} & NOT_PASSED
        for case in cases
    }
    ran = [name for name in outcomes if name.startswith(tuple(p[:-3].replace("/", ".") for p in new_tests))]
    assert ran, "the walk-through's tests were not collected"
    assert set(PROOFS) <= set(ran), sorted(set(PROOFS) - set(ran))
    assert not any(outcomes[name] for name in ran), {name: outcomes[name] for name in ran}

    total = time.monotonic() - started
    steps = ", ".join(f"{step}: {seconds:.1f} s" for step, seconds in timings.items())
    print(
        f"add a context ({len(created)} files created and {len(touched) - len(created)} edited by the "
        f"document, {len(ran)} tests of the new context): "
        f"{steps}; total {total:.1f} s",
        file=sys.stderr,
    )
