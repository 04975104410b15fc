"""The dependency rule of ARCHITECTURE.md, checked on every import statement."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "app"
STDLIB = set(sys.stdlib_module_names)


def imports(path: Path) -> list[str]:
    """Absolute module names imported by a file; a relative import is reported as ``.relative``
    (the project uses none, so the rule below cannot be dodged with one)."""
    modules: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules.append(node.module if node.level == 0 and node.module else ".relative")
    return modules


def within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == package or module.startswith(package + ".") for package in packages)


def files(folder: str) -> list[Path]:
    found = sorted((APP / folder).rglob("*.py"))
    assert found, folder
    return found


def violations(folder: str, allowed: tuple[str, ...]) -> list[str]:
    bad = []
    for path in files(folder):
        for module in imports(path):
            top = module.split(".")[0]
            if top in STDLIB or within(module, allowed):
                continue
            bad.append(f"{path.relative_to(APP.parent)} imports {module}")
    return bad


@pytest.mark.parametrize(
    ("folder", "allowed"),
    [
        ("building_blocks/domain", ("pydantic", "pydantic_core", "app.building_blocks.domain")),
        (
            "building_blocks/application",
            ("pydantic", "app.building_blocks.domain", "app.building_blocks.application"),
        ),
        ("users/domain", ("pydantic", "pydantic_core", "app.building_blocks.domain", "app.users.domain")),
        (
            "users/application",
            (
                "pydantic",
                "app.building_blocks.domain",
                "app.building_blocks.application",
                "app.users.domain",
                "app.users.application",
            ),
        ),
    ],
)
def test_inner_layers_import_only_what_the_rule_allows(folder: str, allowed: tuple[str, ...]) -> None:
    assert violations(folder, allowed) == []


def test_the_kit_never_imports_a_bounded_context() -> None:
    offenders = [
        f"{path.relative_to(APP.parent)} imports {module}"
        for path in files("building_blocks")
        for module in imports(path)
        if not within(module, ("app.building_blocks",))
        and (within(module, ("app",)) or module == ".relative")
    ]
    assert offenders == []


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    sample = tmp_path / "bad.py"
    sample.write_text("import sqlalchemy\nfrom app.users.domain import User\nfrom ..x import y\n")
    assert imports(sample) == ["sqlalchemy", "app.users.domain", ".relative"]
    assert not within("pydantic_settings", ("pydantic",))
    assert within("pydantic.networks", ("pydantic",))


def contexts() -> list[str]:
    """Every bounded context: a package of app/ that declares itself in a module.py."""
    return sorted(path.parent.name for path in APP.glob("*/module.py"))


@pytest.mark.parametrize("context", contexts())
def test_a_context_imports_the_kit_itself_and_other_contexts_published_events_only(context: str) -> None:
    """Contexts meet through their published integration events, never through each other's
    internals or the composition roots (app.main, app.settings, ...), which import them."""
    others = [f"app.{other}.integration_events" for other in contexts() if other != context]
    allowed = ("app.building_blocks", f"app.{context}", *others)
    offenders = [
        f"{path.relative_to(APP.parent)} imports {module}"
        for path in files(context)
        for module in imports(path)
        if (within(module, ("app",)) or module == ".relative") and not within(module, allowed)
    ]
    assert offenders == []


def test_the_users_context_is_found() -> None:
    assert "users" in contexts()
