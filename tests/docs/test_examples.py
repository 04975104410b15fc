"""Executable documentation: every code example in README.md and docs/**/*.md is checked.

One test per Markdown file walks its fenced blocks in order:

- ```python: executed, unless its info string names a file (```python file=app/x.py: a file for
  the reader to create, only compiled here; tests/integration/test_add_a_context.py applies such
  blocks to a copy of the repository). All blocks of one file share ONE namespace (a module
  registered in ``sys.modules`` while the file runs, so ``__name__`` and pydantic forward
  references work) and top-level ``await`` is allowed. A failure names ``file:line`` of the
  block, and the traceback points at the Markdown lines themselves.
- ```json: must parse.
- ```bash / ```sh / ```shell / ```console (in console blocks only ``$ `` lines are commands):
  every ``make`` command must name targets of the Makefile; every ``curl`` must use ``-f``/``--fail``
  (or print ``%{http_code}`` for the block to compare) and target ``http://127.0.0.1:8000`` or
  ``http://localhost:8000``. A block containing ``curl`` is run as ONE bash script under
  ``set -euo pipefail`` against a live server started for this module (the URL is rewritten to it;
  ``make`` is a no-op there since the server is already up).

Also: every Markdown file under docs/ is linked from README.md, and relative links resolve.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
import traceback
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.docs.conftest import DocsServer
from tests.redis_service import require_redis

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAKEFILE = ROOT / "Makefile"

DOC_URLS = ("http://127.0.0.1:8000", "http://localhost:8000")
DOCS_REDIS = "redis://127.0.0.1:6379/0"
PYTHON = {"python", "py", "python3"}
JSON = {"json"}
SHELL = {"bash", "sh", "shell", "console"}
SCRIPT_TIMEOUT = 60


class ExampleError(AssertionError):
    """A documentation example is wrong; the message names the file and line."""


@dataclass(frozen=True)
class Block:
    lang: str
    line: int  # 1-based line of the opening fence
    text: str
    info: str = ""  # the whole info string, e.g. "python file=app/teams/domain.py"

    @property
    def file(self) -> str | None:
        """The file a block shows (``file=PATH`` in its info string): a file for the reader to
        create or, as a ```diff, to edit; compiled here, never executed (tests/integration/
        test_add_a_context.py applies them to a copy of the repository)."""
        match = re.search(r"(?:^|\s)file=(\S+)", self.info)
        return match[1] if match else None


# --- discovery --------------------------------------------------------------------------------


def markdown_files() -> list[Path]:
    files = [README] if README.is_file() else []
    return files + (sorted(DOCS.rglob("*.md")) if DOCS.is_dir() else [])


def doc_files() -> list[Path]:
    return sorted(DOCS.rglob("*.md")) if DOCS.is_dir() else []


def rel(path: Path) -> str:
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


def parse_blocks(text: str, where: str = "<markdown>") -> list[Block]:
    """Fenced code blocks (``` or ~~~, possibly indented) with their language and fence line."""
    lines = text.splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None or (opening["fence"][0] == "`" and "`" in opening["info"]):
            index += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        info = opening["info"].strip()
        body: list[str] = []
        end = index + 1
        while end < len(lines) and not closing.match(lines[end]):
            line = lines[end]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            end += 1
        if end == len(lines):
            raise ExampleError(f"{where}:{index + 1}: code fence {fence!r} is never closed")
        lang = info.split()[0].lower() if info else ""
        blocks.append(Block(lang=lang, line=index + 1, text="\n".join(body) + "\n", info=info))
        index = end + 1
    return blocks


def make_targets(makefile: Path = MAKEFILE) -> set[str]:
    targets: set[str] = set()
    for line in makefile.read_text().splitlines():
        match = re.match(
            r"^([A-Za-z0-9][A-Za-z0-9_.%/-]*(?:[ \t]+[A-Za-z0-9][A-Za-z0-9_.%/-]*)*)[ \t]*:(?!=)", line
        )
        if match:
            targets.update(match[1].split())
    return targets


# --- python -----------------------------------------------------------------------------------


def compile_block(block: Block, path: Path) -> types.CodeType:
    # Leading newlines keep the block's lines at their Markdown line numbers in tracebacks.
    source = "\n" * block.line + block.text
    try:
        return compile(source, str(path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    except SyntaxError as error:
        raise ExampleError(
            f"{rel(path)}:{block.line}: ```python block has a syntax error at line {error.lineno}: "
            f"{error.msg}\n    {(error.text or '').strip()}"
        ) from None


async def run_python(block: Block, path: Path, namespace: dict[str, object]) -> None:
    code = compile_block(block, path)
    try:
        result = eval(code, namespace)  # the example runs as module code in the file's namespace
        if inspect.iscoroutine(result):
            await result
    except Exception as error:
        frames = [
            line
            for line in traceback.format_exception(error)
            if not line.lstrip().startswith(f'File "{__file__}"')
        ]
        raise ExampleError(
            f"{rel(path)}:{block.line}: ```python block raised {type(error).__name__}: {error}\n"
            + "".join(frames)
        ) from None


class _FileNamespace:
    """A throwaway module holding one Markdown file's examples, importable by its name.

    The name is new for every run, so classes left over from an earlier run of the same file
    (still alive until garbage collection) are never mistaken for this run's, e.g. by ``verify``.
    """

    _runs = itertools.count(1)

    def __init__(self, path: Path) -> None:
        slug = re.sub(r"\W+", "_", rel(path)).strip("_").lower()
        self.module = types.ModuleType(f"docs_example_{next(self._runs)}_{slug}")
        self.module.__file__ = str(path)

    def __enter__(self) -> dict[str, object]:
        sys.modules[self.module.__name__] = self.module
        return self.module.__dict__

    def __exit__(self, *_exc: object) -> None:
        sys.modules.pop(self.module.__name__, None)


# --- shell ------------------------------------------------------------------------------------

_SEPARATORS = set(";|&()\n")


def shell_source(block: Block) -> str:
    """The commands of a shell block: all of it, or only the ``$ `` lines of a console session."""
    if block.lang != "console":
        return block.text
    commands: list[str] = []
    continuing = False
    for line in block.text.splitlines():
        if continuing or line.startswith("$ "):
            commands.append(line[2:] if line.startswith("$ ") and not continuing else line)
            continuing = line.rstrip().endswith("\\")
    return "\n".join(commands) + "\n"


def logical_lines(source: str, where: str) -> Iterator[tuple[int, str]]:
    """Lines joined across ``\\`` continuations and open quotes, each with its first line's offset."""
    pending: list[str] = []
    start = 0
    for offset, line in enumerate(source.splitlines()):
        if not pending:
            start = offset
        pending.append(line[:-1] if line.endswith("\\") else line)
        if line.endswith("\\"):
            continue
        joined = "\n".join(pending) if len(pending) > 1 else pending[0]
        try:
            shlex.split(joined, comments=True)
        except ValueError:
            continue  # an open quote: the command goes on on the next line
        pending = []
        yield start, joined
    if pending:
        raise ExampleError(f"{where}: unterminated shell command: {' '.join(pending)!r}")


def commands(line: str) -> Iterator[list[str]]:
    """Simple commands of one logical line, split at ``; | & && || ( ) $(``, assignments dropped;
    commands inside a quoted ``"$(...)"`` are found too."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    current: list[str] = []
    for token in lexer:
        for inner in _substitutions(token):
            yield from commands(inner)
        if token and set(token) <= set(lexer.punctuation_chars) and set(token) & _SEPARATORS:
            if current:
                yield current
            current = []
        elif current or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", token):
            current.append(token)
    if current:
        yield current


def _substitutions(word: str) -> Iterator[str]:
    """The bodies of ``$(...)`` and backquotes left inside one word (quoted substitutions)."""
    yield from re.findall(r"`([^`]*)`", word)
    start = word.find("$(")
    while start != -1:
        depth, index = 1, start + 2
        while index < len(word) and depth:
            depth += {"(": 1, ")": -1}.get(word[index], 0)
            index += 1
        yield word[start + 2 : index - 1] if depth == 0 else word[start + 2 :]
        start = word.find("$(", index)


_MAKE_OPTIONS_WITH_VALUE = {"-C", "-f", "-j", "-o", "-W", "-I", "--directory", "--file"}


def check_make(words: list[str], where: str, targets: set[str]) -> None:
    named: list[str] = []
    skip = False
    for word in words[1:]:
        if skip:
            skip = False
        elif word in _MAKE_OPTIONS_WITH_VALUE:
            skip = True
        elif not word.startswith("-") and "=" not in word and word not in {">", ">>", "<"}:
            named.append(word)
    unknown = [target for target in named if target not in targets]
    if unknown:
        raise ExampleError(
            f"{where}: `{' '.join(words)}` names no Makefile target {', '.join(unknown)} "
            f"(targets: {', '.join(sorted(targets))})"
        )


def check_curl(words: list[str], where: str) -> None:
    options = words[1:]
    fails = any(
        option in {"--fail", "--fail-with-body"} or re.fullmatch(r"-[A-Za-z]*f[A-Za-z]*", option)
        for option in options
    )
    writes_status = any(
        option in {"-w", "--write-out"} and "http_code" in value
        for option, value in zip(options, [*options[1:], ""], strict=True)
    )
    if not (fails or writes_status):
        raise ExampleError(
            f"{where}: `{' '.join(words)}` would pass on an error status; "
            "use -f/--fail (e.g. -sf) or -w '%{http_code}' and compare it"
        )
    for option in options:
        if re.match(r"^[a-z]+://", option) and not option.startswith(DOC_URLS):
            raise ExampleError(f"{where}: curl examples must call the service at {DOC_URLS[0]}, not {option}")


def check_shell(block: Block, path: Path, targets: set[str]) -> bool:
    """Check ``make``/``curl`` commands; tell whether the block calls curl (and so must run)."""
    uses_curl = False
    for offset, line in logical_lines(shell_source(block), f"{rel(path)}:{block.line}"):
        where = f"{rel(path)}:{block.line + 1 + offset}"
        for words in commands(line):
            program = Path(words[0]).name
            if program == "make":
                check_make(words, where, targets)
            elif program == "curl":
                check_curl(words, where)
                uses_curl = True
    return uses_curl


def run_shell(block: Block, path: Path, server: DocsServer) -> None:
    script = shell_source(block)
    for url in DOC_URLS:
        script = script.replace(url, server.url)
    prelude = "set -euo pipefail\nmake() { :; }  # the server is already running\n"
    completed = subprocess.run(
        ["bash", "-c", prelude + script],
        cwd=ROOT,
        # `python3` in an example is the project's interpreter, as in an activated virtualenv.
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"},
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
        check=False,
    )
    if completed.returncode != 0:
        raise ExampleError(
            f"{rel(path)}:{block.line}: ```{block.lang} block exited with {completed.returncode} "
            f"against {server.url}\n--- script ---\n{script}--- stdout ---\n{completed.stdout}"
            f"--- stderr ---\n{completed.stderr}--- server log (tail) ---\n{server.log_tail()}"
        )


# --- one file ---------------------------------------------------------------------------------


async def check_markdown(path: Path, text: str, server: Callable[[], DocsServer]) -> None:
    blocks = parse_blocks(text, rel(path))
    targets = make_targets()
    for block in blocks:  # syntax first, so a typo late in the file is reported even if run fails
        if block.lang in PYTHON:
            compile_block(block, path)
    with _FileNamespace(path) as namespace:
        for block in blocks:
            if block.lang in PYTHON and block.file is None:
                await run_python(block, path, namespace)
            elif block.lang in JSON:
                try:
                    json.loads(block.text)
                except json.JSONDecodeError as error:
                    raise ExampleError(
                        f"{rel(path)}:{block.line}: ```json block is not valid JSON: {error}"
                    ) from None
            elif block.lang in SHELL and check_shell(block, path, targets):
                run_shell(block, path, server())


@pytest.mark.parametrize("path", markdown_files(), ids=rel)
async def test_markdown_examples(path: Path, request: pytest.FixtureRequest) -> None:
    text = await asyncio.to_thread(path.read_text)
    if DOCS_REDIS in text:  # its examples talk to the real Redis: missing, a skip (or a failure in CI)
        await require_redis(DOCS_REDIS)
    try:
        await check_markdown(path, text, lambda: request.getfixturevalue("docs_server"))
    except ExampleError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.mark.parametrize("path", markdown_files(), ids=rel)
def test_python_blocks_compile(path: Path) -> None:
    """Every ```python block is valid Python (top-level ``await`` allowed)."""
    try:
        for block in parse_blocks(path.read_text(), rel(path)):
            if block.lang in PYTHON:
                compile_block(block, path)
    except ExampleError as error:
        pytest.fail(str(error), pytrace=False)


# --- links ------------------------------------------------------------------------------------

_LINK = re.compile(
    r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|^\s*\[[^\]]+\]:\s*<?(\S+?)>?\s*$", re.M
)


def relative_links(path: Path, text: str) -> Iterator[tuple[str, Path]]:
    """Links to files of the repository (no scheme, no pure anchors), resolved from ``path``."""
    outside_code = re.sub(r"(?ms)^[ \t]*(`{3,}|~{3,}).*?^[ \t]*\1[ \t]*$", "", text)
    outside_code = re.sub(r"`[^`\n]*`", "", outside_code)
    for match in _LINK.finditer(outside_code):
        target = match[1] or match[2]
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("#"):
            continue
        target = target.split("#", 1)[0].split("?", 1)[0]
        yield target, (path.parent / target).resolve()


@pytest.mark.parametrize("doc", doc_files(), ids=rel)
def test_doc_is_linked_from_readme(doc: Path) -> None:
    assert README.is_file(), f"README.md does not exist, so it cannot link {rel(doc)}"
    linked = {resolved for _target, resolved in relative_links(README, README.read_text())}
    assert doc.resolve() in linked, f"README.md does not link {rel(doc)}"


@pytest.mark.parametrize("path", markdown_files(), ids=rel)
def test_relative_links_resolve(path: Path) -> None:
    broken = [target for target, resolved in relative_links(path, path.read_text()) if not resolved.exists()]
    assert not broken, f"{rel(path)} links to missing files: {', '.join(broken)}"


# --- the harness itself: a wrong example must fail ---------------------------------------------


def _no_server() -> DocsServer:
    raise AssertionError("this example should not need the server")


async def _check(text: str, server: Callable[[], DocsServer] = _no_server) -> None:
    await check_markdown(ROOT / "EXAMPLE.md", textwrap.dedent(text).lstrip("\n"), server)


def test_parse_blocks_finds_languages_lines_and_indented_fences() -> None:
    text = '# T\n\n```python\nx = 1\n```\n\n- item\n\n  ~~~json\n  {"a": 1}\n  ~~~\n\n````bash\n```\n````\n'
    blocks = parse_blocks(text)
    assert [(b.lang, b.line, b.text) for b in blocks] == [
        ("python", 3, "x = 1\n"),
        ("json", 9, '{"a": 1}\n'),
        ("bash", 13, "```\n"),
    ]
    with pytest.raises(ExampleError, match="never closed"):
        parse_blocks("```python\nx = 1\n")


async def test_python_blocks_share_a_namespace_and_may_await() -> None:
    await _check(
        """
        ```python
        import asyncio
        value = 20
        ```
        ```python
        await asyncio.sleep(0)
        assert value + 22 == 42
        assert __name__ in __import__("sys").modules
        ```
        """
    )


async def test_failing_python_block_names_file_and_line() -> None:
    with pytest.raises(ExampleError, match=r"EXAMPLE\.md:7: ```python block raised AssertionError"):
        await _check("text\n\n```python\nx = 1\n```\n\n```python\nassert x == 2\n```\n")


async def test_syntax_error_fails_before_anything_runs() -> None:
    with pytest.raises(ExampleError, match=r"EXAMPLE\.md:4: ```python block has a syntax error at line 5"):
        await _check("```python\nraise SystemExit('ran')\n```\n```python\ndef broken(:\n```\n")


async def test_file_blocks_are_compiled_but_not_executed() -> None:
    text = "```python file=app/example.py\nraise SystemExit('ran')\n```\n```diff file=app/x.py\n-a\n+b\n```\n"
    assert [block.file for block in parse_blocks(text)] == ["app/example.py", "app/x.py"]
    assert parse_blocks("```python\nx = 1\n```\n")[0].file is None
    await _check(text)
    with pytest.raises(ExampleError, match=r"EXAMPLE\.md:1: ```python block has a syntax error"):
        await _check("```python file=app/broken.py\ndef broken(:\n```\n")


async def test_invalid_json_fails() -> None:
    with pytest.raises(ExampleError, match=r"EXAMPLE\.md:1: ```json block is not valid JSON"):
        await _check('```json\n{"a": 1,}\n```\n')


async def test_make_lines_must_name_real_targets() -> None:
    await _check("```bash\nmake run PORT=8001   # serve\nmake -C . test lint\n```\n")
    await _check("```console\n$ make run\nINFO: started\n```\n")
    with pytest.raises(
        ExampleError, match=r"EXAMPLE\.md:3: `make deploy-everything` names no Makefile target"
    ):
        await _check("```sh\nmake install\nmake deploy-everything\n```\n")


async def test_curl_must_fail_on_error_status_and_stay_local() -> None:
    with pytest.raises(ExampleError, match="would pass on an error status"):
        await _check("```bash\ncurl -s http://127.0.0.1:8000/health/live\n```\n")
    with pytest.raises(ExampleError, match="must call the service"):
        await _check("```bash\ncurl -sf https://example.com/\n```\n")


async def test_curl_blocks_run_as_one_script_against_the_server(request: pytest.FixtureRequest) -> None:
    def server() -> DocsServer:
        return request.getfixturevalue("docs_server")

    await _check(
        """
        ```bash
        STATUS=$(curl -sf http://localhost:8000/health/live \\
          | python3 -c 'import json, sys; print(json.load(sys.stdin)["status"])')
        test -n "$STATUS"
        test "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8000/nope)" = 404
        ```
        """,
        server,
    )
    with pytest.raises(ExampleError, match=r"EXAMPLE\.md:1: ```bash block exited with 22"):
        await _check("```bash\ncurl -sf http://127.0.0.1:8000/no-such-page\n```\n", server)
    wrong_status = "test \"$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8000/nope)\" = 200"
    with pytest.raises(ExampleError, match="exited with 1"):
        await _check(f"```bash\n{wrong_status}\n```\n", server)
    with pytest.raises(ExampleError, match="would pass on an error status"):
        await _check('```bash\necho "$(curl -s http://127.0.0.1:8000/nope)"\n```\n')
