"""``make rename NAME=...`` on a copy of the repository: the renamed tree lints and passes its unit and
docs tests, ``git grep`` finds the old name only where ``scripts/rename.py`` says it is kept, a second
run changes nothing, and an invalid name is refused without a change.

The copy gets a virtualenv of its own that sees this environment's packages through a ``.pth`` line
(no ``.pth`` file of ours is processed, so our editable ``app`` stays invisible); ``make lint`` in the
copy then installs the renamed project into that venv, never into ours. Building it fetches
``setuptools`` for pip's isolated build (network or pip's cache).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from scripts.rename import KEPT, check_name, current_name, rename
from tests.conftest import ROOT
from tests.repo_copy import copy_environment, copy_venv, copy_worktree

OLD = current_name(ROOT)
NEW = "billing-service" if OLD != "billing-service" else "ledger-service"
# Every spelling of the old name: kebab, snake, spaced (Title Case), joined (CamelCase); git grep -i.
OLD_ANY_FORM = re.escape(OLD).replace(r"\-", "[-_ ]?")
TIMEOUT = 900


@dataclass
class Copy:
    root: Path
    env: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def python(self) -> Path:
        return self.root / ".venv" / "bin" / "python"

    def run(self, *args: str | Path, timed: str | None = None) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        result = subprocess.run(
            [str(arg) for arg in args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        if timed:
            self.timings[timed] = time.monotonic() - started
        return result

    def ok(self, *args: str | Path, timed: str | None = None) -> str:
        result = self.run(*args, timed=timed)
        assert result.returncode == 0, f"{' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def status(self) -> str:
        return self.ok("git", "status", "--porcelain")

    def commit(self, message: str) -> None:
        self.ok("git", "add", "-A")
        self.ok(
            *("git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"),
            *("-c", "commit.gpgsign=false", "commit", "-q", "--allow-empty", "-m", message),
        )


def import_app_from(python: str | Path, cwd: Path) -> str:
    """Where ``import app`` resolves for ``python`` outside any checkout (or why it cannot)."""
    result = subprocess.run(
        [str(python), "-c", "import app; print(app.__file__)"],
        cwd=cwd,
        env=copy_environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else f"(fails: {result.stderr.strip()[-200:]})"


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Copy:
    """The working tree as git sees it (tracked, and untracked but not ignored), committed."""
    root = copy_worktree(ROOT, tmp_path_factory.mktemp("rename") / "repo")
    env = copy_environment()
    env["PATH"] = f"{root / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    copied = Copy(root, env)
    copied.ok("git", "init", "-q")
    copied.commit("copy")
    copy_venv(root, console_scripts=True)  # make lint installs the renamed project into it
    return copied


@pytest.fixture(scope="module")
def renamed(copy: Copy) -> Copy:
    first = copy.ok("make", "rename", f"NAME={NEW}", timed="make rename")
    assert f"{OLD} -> {NEW}" in first, first
    assert current_name(copy.root) == NEW
    copy.commit("rename")
    return copy


def test_rename_leaves_a_tree_that_lints_and_passes_its_tests(renamed: Copy, tmp_path: Path) -> None:
    ours_before = import_app_from(sys.executable, tmp_path)

    again = renamed.ok("make", "rename", f"NAME={NEW}", timed="make rename (again)")
    assert "nothing to do" in again
    assert renamed.status() == "", "a second rename changed files"

    renamed.ok("make", "lint", timed="make lint (with install)")
    assert import_app_from(renamed.python, tmp_path) == str(renamed.root / "app" / "__init__.py")
    assert import_app_from(sys.executable, tmp_path) == ours_before, "the copy's install touched our venv"

    result = renamed.run(
        renamed.python,
        *("-m", "pytest", "tests/unit", "tests/docs", "-q", "-p", "no:cacheprovider"),
        timed="unit + docs tests",
    )
    assert result.returncode == 0, (
        f"tests failed in the renamed copy:\n{result.stdout[-8000:]}\n{result.stderr}"
    )

    found = renamed.run("git", "grep", "-n", "-i", "-E", OLD_ANY_FORM)
    assert found.returncode in (0, 1), found.stderr
    lines = found.stdout.splitlines()
    unexpected = [line for line in lines if not any(kept_covers(kept.path, kept.text, line) for kept in KEPT)]
    assert unexpected == [], "the old name is left where scripts/rename.py does not keep it"
    stale = [kept for kept in KEPT if not any(kept_covers(kept.path, kept.text, line) for line in lines)]
    assert stale == [], "scripts/rename.py documents leftovers that are not there"

    timings = ", ".join(f"{step}: {seconds:.1f} s" for step, seconds in renamed.timings.items())
    print(f"\nrename timings: {timings}; total {sum(renamed.timings.values()):.1f} s", file=sys.stderr)


def kept_covers(path: str, text: str, grep_line: str) -> bool:
    found_path, _line, content = grep_line.split(":", 2)
    return found_path == path and text in content


@pytest.mark.parametrize("name", ["Billing_Service", "-x", "", "billing--service", "b" * 64])
def test_rename_refuses_an_invalid_name_and_changes_nothing(copy: Copy, name: str) -> None:
    result = copy.run("make", "rename", f"NAME={name}")
    assert result.returncode != 0
    assert ("refused" if name else "usage: make rename NAME=") in result.stderr
    assert copy.status() == ""


def test_rename_without_name_prints_the_usage(copy: Copy) -> None:
    result = copy.run("make", "rename")
    assert result.returncode != 0
    assert "usage: make rename NAME=" in result.stderr


def test_names_are_dns_label_like_kebab_case() -> None:
    assert check_name("billing-service") is None
    assert check_name("b2b-api") is None
    assert check_name("a" * 63) is None
    for invalid in ("", "a" * 64, "Billing", "billing_service", "-x", "x-", "2fa", "a--b", "a.b"):
        assert check_name(invalid) is not None, invalid


def test_rename_outside_git_rewrites_whole_words_of_text_files(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "alpha-service"\n')
    (tmp_path / "README.md").write_text(
        "# Alpha Service\ntopic alpha-service.users.v1, group alpha-service-db;\n"
        "not my-alpha-service, alpha-services or Alpha Services\n"
    )
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "notes.txt").write_text("alpha-service\n")
    (tmp_path / "image.bin").write_bytes(b"\0alpha-service\xff")

    assert rename("beta-service", root=tmp_path) == 2
    assert (tmp_path / "pyproject.toml").read_text() == '[project]\nname = "beta-service"\n'
    assert (tmp_path / "README.md").read_text() == (
        "# Beta Service\ntopic beta-service.users.v1, group beta-service-db;\n"
        "not my-alpha-service, alpha-services or Alpha Services\n"
    )
    assert (tmp_path / ".venv" / "notes.txt").read_text() == "alpha-service\n"
    assert (tmp_path / "image.bin").read_bytes() == b"\0alpha-service\xff"
    assert rename("beta-service", root=tmp_path) == 0
