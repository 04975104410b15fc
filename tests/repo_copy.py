"""A copy of this repository to change and test in isolation (the tests that run a documented
procedure on a fresh tree: adding a bounded context, renaming the service).

- :func:`copy_worktree`: the working tree as git sees it (tracked files, and untracked ones that
  are not ignored), so the copy is what a clone plus the current edits would be.
- :func:`copy_venv`: a virtualenv for the copy that reuses this environment's packages and sees
  the copy's project as installed (editable): ``import app`` resolves to the copy from any
  directory, while our own venv, and its editable install of this tree, are never touched.
- :func:`copy_environment`: our environment minus what would make the copy's tools differ from
  a fresh checkout (an activated venv, ``PYTHONPATH``, pytest options, make's state, coverage).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

NOT_INHERITED = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST"}
NOT_INHERITED |= {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "BASE_URL"}
NOT_INHERITED |= {"SERVICE_NAME", "TOPIC_OVERRIDES"}  # the copy's own defaults name its service
NOT_INHERITED_PREFIXES = ("COVERAGE_",)  # `make test` measures our tree, not the copy


def copy_worktree(source: Path, target: Path) -> Path:
    """Copy ``git ls-files --cached --others --exclude-standard`` of ``source`` into ``target``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=source,
        capture_output=True,
        check=True,
    )
    for name in sorted(set(listed.stdout.decode().split("\0")) - {""}):
        original, copied = source / name, target / name
        if original.is_symlink() or original.is_file():  # a tracked file deleted in the tree is skipped
            copied.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(original, copied, follow_symlinks=False)
    return target


def copy_venv(root: Path, *, console_scripts: bool = False) -> Path:
    """``root/.venv``: our packages through a ``.pth`` line (their own ``.pth`` files, our editable
    install among them, are not processed) and ``root`` itself, as an editable install puts it.
    With ``console_scripts`` it also gets our tools (ruff, mypy, ...) running its own python, for
    ``make`` targets that call ``.venv/bin/<tool>``. Returns its ``python``."""
    venv = root / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    ours = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    site_packages = venv / "lib" / version / "site-packages"
    (site_packages / "_inherited.pth").write_text("\n".join(ours) + "\n")
    (site_packages / "_project.pth").write_text(f"{root}\n")
    if console_scripts:
        _copy_console_scripts(Path(sys.executable).parent, venv / "bin")
    return venv / "bin" / "python"


def _copy_console_scripts(ours: Path, theirs: Path) -> None:
    """Python entry points are rewritten to the copy's interpreter; anything else is linked."""
    for script in sorted(ours.iterdir()):
        target = theirs / script.name
        if target.exists() or script.name.startswith(("python", "activate", "Activate", "pip", ".")):
            continue
        head = script.read_bytes()[:200]
        if head.startswith(b"#!") and b"python" in head.split(b"\n", 1)[0]:
            body = script.read_text().split("\n", 1)[1]
            target.write_text(f"#!{theirs / 'python'}\n{body}")
            target.chmod(0o755)
        else:
            target.symlink_to(script)


def copy_environment() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if name not in NOT_INHERITED and not name.startswith(NOT_INHERITED_PREFIXES)
    }
