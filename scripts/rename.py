"""Rename the service: ``make rename NAME=billing-service`` (or ``python3 scripts/rename.py NAME``).

The current name is read from one place, ``[project] name`` in ``pyproject.toml``; every form of
it listed in ``FORMS`` is rewritten, as a whole word, in every text file of the repository: the
package metadata, the ``SERVICE_NAME`` default in ``app/settings.py`` (from which client ids,
consumer groups, topic prefixes and the OpenAPI title derive), ``.env.example``, the docs, the
bench, the locks' ``# via`` comments, ``kafka/pom.xml``. Files are those git lists (tracked, plus
untracked ones not ignored), or, outside git, the tree minus ``SKIP_DIRS``. ``pyproject.toml`` is
rewritten last, so an interrupted run can simply be run again; a run for the current name
changes nothing.

Deliberately kept:
- the ``users`` bounded context (``app/users``, the ``users`` part of ``<service>.users.v1``,
  ``/api/v1/users``): the service is renamed, not what it contains;
- ignored and local files (``.env``, ``var/``, ``.venv``): yours, not the template's; a ``.env``
  that still names the old service is pointed out. ``make install`` installs the renamed
  distribution; the old one stays in ``.venv`` until ``pip uninstall``-ed (harmless);
- ``SKIP_FILES`` (this script), and the occurrences in ``KEPT`` (none today), each with its reason.

Later issues extend it here: a new form in ``FORMS``, a file to leave alone in ``SKIP_FILES``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = "pyproject.toml"

# A service name becomes a package name, a Kafka topic prefix and consumer group, and a PostgreSQL
# application_name (at most 63 bytes): lowercase, DNS-label-like kebab case.
VALID_NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
MAX_LENGTH = 63


@dataclass(frozen=True)
class Form:
    """One spelling of the name: how to derive it from the kebab-case name, and where it is used."""

    label: str
    derive: Callable[[str], str]
    used_for: str


# pattern (the current name in this form, as a whole word) -> replacement (the new name, same form)
FORMS: tuple[Form, ...] = (
    Form(
        "kebab",
        lambda name: name,
        "package name, SERVICE_NAME, topic prefixes, consumer groups, docs",
    ),
    Form(
        "title",
        lambda name: " ".join(word.capitalize() for word in name.split("-")),
        "README heading",
    ),
)

# Never rewritten: (path relative to the root, why).
SKIP_FILES: dict[str, str] = {
    "scripts/rename.py": "this script: it names no service, and its examples must stay as written",
}
# Not walked outside git (inside git, .gitignore decides).
SKIP_DIRS = {".git", ".venv", "venv", "var", "build", "dist", "node_modules", "__pycache__"}
SKIP_DIR_SUFFIXES = ("_cache", ".egg-info")


@dataclass(frozen=True)
class Kept:
    """An occurrence of the old name left on purpose: ``git grep`` may still find ``text`` in ``path``."""

    path: str
    text: str
    reason: str


# What a rename leaves behind on purpose (the rename test reads this list): nothing today.
KEPT: tuple[Kept, ...] = ()


def check_name(name: str) -> str | None:
    """Why ``name`` is not a valid service name, or None."""
    if not name:
        return "the name is empty"
    if len(name) > MAX_LENGTH:
        return f"{name!r} is longer than {MAX_LENGTH} characters"
    if not VALID_NAME.fullmatch(name):
        return (
            f"{name!r} is not lowercase kebab case (a letter, then letters and digits, words joined "
            "by single hyphens, e.g. billing-service)"
        )
    return None


def current_name(root: Path = ROOT) -> str:
    """``[project] name`` of ``pyproject.toml``: the one place the current name is read from."""
    import tomllib

    with (root / PYPROJECT).open("rb") as file:
        name = tomllib.load(file)["project"]["name"]
    if not isinstance(name, str) or check_name(name):
        raise SystemExit(f"rename: pyproject.toml's [project] name {name!r} is not a valid service name")
    return name


def word(text: str) -> re.Pattern[str]:
    """``text`` as a whole word, not part of a longer name (for ``shop``: not ``my-shop``, ``shops``)."""
    return re.compile(rf"(?<![\w-]){re.escape(text)}(?!\w)")


def candidate_files(root: Path) -> Iterator[Path]:
    """The files to look at: git's (tracked, and untracked but not ignored), else a tree walk."""
    git = shutil.which("git")
    if git is not None:
        listed = subprocess.run(  # noqa: S603 (a fixed git command line)
            [git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            check=False,
        )
        if listed.returncode == 0:
            names = sorted({name for name in listed.stdout.decode().split("\0") if name})
            yield from (root / name for name in names)
            return
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts[:-1]
        if any(part in SKIP_DIRS or part.endswith(SKIP_DIR_SUFFIXES) for part in parts):
            continue
        yield path


def rewrite(text: str, replacements: list[tuple[re.Pattern[str], str]]) -> tuple[str, list[int]]:
    counts = []
    for pattern, new in replacements:
        text, count = pattern.subn(new, text)
        counts.append(count)
    return text, counts


def rename(new: str, root: Path = ROOT, dry_run: bool = False) -> int:
    """Rewrite the current name into ``new``; return the number of files changed."""
    old = current_name(root)
    if old == new:
        print(f"rename: the service is already named {new}; nothing to do")
        return 0
    replacements = [(word(form.derive(old)), form.derive(new)) for form in FORMS]
    changes: list[tuple[Path, str]] = []
    for path in candidate_files(root):
        relative = path.relative_to(root).as_posix()
        if relative in SKIP_FILES or path.is_symlink() or not path.is_file():
            continue
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            continue  # not text
        rewritten, counts = rewrite(text, replacements)
        if rewritten != text:
            changes.append((path, rewritten))
            summary = ", ".join(
                f"{count} x {form.derive(old)!r}" for form, count in zip(FORMS, counts, strict=True) if count
            )
            print(f"  {relative}: {summary}")
    # pyproject.toml last: until it is written, a rerun still sees the old name and finishes the job.
    changes.sort(key=lambda change: change[0] == root / PYPROJECT)
    if not dry_run:
        for path, rewritten in changes:
            path.write_bytes(rewritten.encode("utf-8"))
    verb = "would rename" if dry_run else "renamed"
    print(f"rename: {verb} {old} -> {new} in {len(changes)} files")
    local_env = root / ".env"
    if local_env.is_file() and any(p.search(local_env.read_text(errors="replace")) for p, _ in replacements):
        print(f"rename: note: your .env (not tracked) still names {old}; edit it yourself")
    return len(changes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("name", help="the new service name, e.g. billing-service")
    parser.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    args = parser.parse_args(argv)
    problem = check_name(args.name)
    if problem:
        print(f"rename: refused: {problem}", file=sys.stderr)
        return 2
    rename(args.name, dry_run=args.dry_run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
