"""Every PromQL expression the stack runs, with where it comes from, and a runner for a live Prometheus.

- ``panel_expressions(dashboard_dir)``: each target of each dashboard panel (grafana/dashboards);
- ``variable_expressions(dashboard_dir)``: the selector of each ``label_values(...)`` template variable;
- ``rule_expressions(rules_dir)``: each recording and alerting rule (prometheus/rules);
- ``datasource_expressions(datasources_file)``: the trace-to-metrics queries of the Tempo data source;
- ``run_all(prometheus_url, expressions)``: executes each through ``/api/v1/query`` and reports parse
  errors, other errors and empty results apart.

Grafana's variables are substituted (``$service``, ``${service}``, ``[[service]]``): by default
``$service`` and ``$instance`` match every value (``.+``), ``$__rate_interval`` is ``1m``,
``$__interval`` ``15s``, ``$__range`` ``5m``. An unknown variable is an error, never left in place.

Also a small PromQL lexer, enough to list the metric names and the label matchers of each selector
of an expression (``selectors``), which the configuration tests use; it reads Grafana variables left
in place (``$__rate_interval`` in a range) too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

DEFAULT_VARIABLES: Mapping[str, str] = {
    "service": ".+",
    "instance": ".+",
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
}

# What Grafana puts into the Tempo data source's trace-to-metrics queries: the span's tags mapped to
# labels (service.name -> service) and the span's name (a mediator span is named after its request).
DATASOURCE_VARIABLES: Mapping[str, str] = {
    "__tags": 'service=~".+"',
    "__span.name": "RegisterUser",
}

_VARIABLE = re.compile(r"\$\{([\w.]+)(?::[^}]*)?\}|\[\[([\w.]+)(?::[^\]]*)?\]\]|\$([A-Za-z_]\w*)")


@dataclass(frozen=True)
class Expression:
    """A PromQL expression (variables substituted) and where it comes from."""

    expr: str
    source: str  # file, relative to the repository when possible
    title: str  # panel title, variable name, rule name, link name
    ref_id: str  # panel target refId, "var", "record"/"alert", "link"
    raw: str  # as written, before substitution

    def __str__(self) -> str:
        return f"{self.source} / {self.title} / {self.ref_id}: {self.expr}"


def substitute(text: str, variables: Mapping[str, str]) -> str:
    """Replace Grafana variables; raise ``KeyError`` naming an unknown one."""

    def replace(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group is not None)
        if name not in variables:
            raise KeyError(f"unknown variable ${name} in {text!r}")
        return variables[name]

    return _VARIABLE.sub(replace, text)


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path(__file__).resolve().parent.parent))
    except ValueError:
        return str(path)


def _panels(panels: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    """Every panel, the ones inside collapsed rows included."""
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _dashboards(dashboard_dir: Path) -> Iterator[tuple[Path, Mapping[str, Any]]]:
    for path in sorted(Path(dashboard_dir).glob("*.json")):
        yield path, json.loads(path.read_text(encoding="utf-8"))


def panel_expressions(
    dashboard_dir: Path, variables: Mapping[str, str] = DEFAULT_VARIABLES
) -> list[Expression]:
    """Every PromQL target of every panel of the dashboards in ``dashboard_dir``."""
    found = []
    for path, dashboard in _dashboards(dashboard_dir):
        for panel in _panels(dashboard.get("panels", [])):
            for target in panel.get("targets", []):
                raw = target.get("expr")
                if raw:
                    found.append(
                        Expression(
                            substitute(raw, variables),
                            _relative(path),
                            str(panel.get("title", "")),
                            str(target.get("refId", "")),
                            raw,
                        )
                    )
    return found


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?P<selector>.*?)\s*,\s*(?P<label>\w+)\s*\)\s*$", re.S)


def variable_expressions(
    dashboard_dir: Path, variables: Mapping[str, str] = DEFAULT_VARIABLES
) -> list[Expression]:
    """The series selector of every ``label_values(selector, label)`` query variable."""
    found = []
    for path, dashboard in _dashboards(dashboard_dir):
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("type") != "query":
                continue
            query = variable.get("query")
            raw = query.get("query", "") if isinstance(query, dict) else str(query or "")
            match = _LABEL_VALUES.match(raw)
            if match is None:
                raise ValueError(f"{path}: variable {variable.get('name')}: not label_values(...): {raw!r}")
            selector = match["selector"]
            found.append(
                Expression(
                    substitute(selector, variables),
                    _relative(path),
                    f"${variable.get('name')}",
                    "var",
                    raw,
                )
            )
    return found


def rule_expressions(rules_dir: Path) -> list[Expression]:
    """Every recording and alerting rule of the rule files (``*.yml``, ``*.yaml``) in ``rules_dir``."""
    found = []
    paths = sorted([*Path(rules_dir).glob("*.yml"), *Path(rules_dir).glob("*.yaml")])
    for path in paths:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for group in document.get("groups", []):
            for rule in group.get("rules", []):
                kind = "alert" if "alert" in rule else "record"
                raw = str(rule["expr"])
                found.append(Expression(raw.strip(), _relative(path), str(rule[kind]), kind, raw))
    return found


def datasource_expressions(
    datasources_file: Path, variables: Mapping[str, str] = DATASOURCE_VARIABLES
) -> list[Expression]:
    """The trace-to-metrics queries of the Tempo data sources in a Grafana provisioning file."""
    document = yaml.safe_load(Path(datasources_file).read_text(encoding="utf-8")) or {}
    found = []
    for datasource in document.get("datasources", []):
        links = (datasource.get("jsonData") or {}).get("tracesToMetrics") or {}
        for query in links.get("queries", []):
            raw = str(query["query"])
            # `$$` is how a provisioning file writes a literal `$` (Grafana expands $VAR from the env)
            text = raw.replace("$$", "$")
            found.append(
                Expression(
                    substitute(text, variables),
                    _relative(Path(datasources_file)),
                    f"{datasource.get('name')}: {query.get('name', '')}",
                    "link",
                    raw,
                )
            )
    return found


# --- a small PromQL lexer ---------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<duration>(?:\d+(?:ms|[smhdwy]))+)
  | (?P<number>0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<variable>\$\{[^}]*\}|\$\w+)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=(){}\[\],@:])
    """,
    re.X,
)

_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
# aggregation operators may be followed by `by (...)` rather than by their parenthesis
_AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}  # fmt: skip
_KEYWORDS = _GROUPING | _AGGREGATIONS | {"bool", "and", "or", "unless", "offset", "atan2", "inf", "nan"}


@dataclass(frozen=True)
class Selector:
    """A vector selector: the metric name (None for ``{__name__=...}``) and its label matchers."""

    name: str | None
    matchers: tuple[tuple[str, str, str], ...] = field(default=())  # (label, operator, value)

    def matcher(self, label: str) -> tuple[str, str] | None:
        for name, operator, value in self.matchers:
            if name == label:
                return operator, value
        return None


def _tokens(expr: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(expr):
        match = _TOKEN.match(expr, position)
        if match is None:
            raise ValueError(f"cannot read {expr[position : position + 20]!r} in {expr!r}")
        position = match.end()
        kind = match.lastgroup or ""
        if kind not in {"space", "comment"}:
            tokens.append((kind, match.group()))
    return tokens


def _unquote(literal: str) -> str:
    if literal.startswith("`"):
        return literal[1:-1]
    body = literal[1:-1]
    if literal.startswith("'"):
        body = body.replace("\\'", "'").replace('"', '\\"')
    return str(json.loads(f'"{body}"'))


def selectors(expr: str) -> list[Selector]:
    """The vector selectors of ``expr``, in order of appearance."""
    tokens = _tokens(expr)
    found: list[Selector] = []
    index = 0
    while index < len(tokens):
        kind, text = tokens[index]
        following = tokens[index + 1][1] if index + 1 < len(tokens) else ""
        if kind == "ident" and text in _GROUPING and following == "(":
            index = tokens.index(("op", ")"), index)  # a list of label names
        elif kind == "op" and text == "[":
            index = tokens.index(("op", "]"), index)  # a range or a subquery's range and step
        elif kind == "ident" and text not in _KEYWORDS and following != "(":
            if following == "{":
                matchers, index = _matchers(tokens, index + 1)
                found.append(Selector(text, matchers))
            else:
                found.append(Selector(text))
        elif kind == "op" and text == "{":
            matchers, index = _matchers(tokens, index)
            name = next((value for label, _, value in matchers if label == "__name__"), None)
            found.append(Selector(name, matchers))
        index += 1
    return found


def _matchers(tokens: list[tuple[str, str]], start: int) -> tuple[tuple[tuple[str, str, str], ...], int]:
    """Read ``{label op "value", ...}`` from the ``{`` at ``start``; return them and the ``}`` index."""
    matchers = []
    index = start + 1
    while tokens[index] != ("op", "}"):
        if tokens[index] == ("op", ","):
            index += 1
            continue
        (_, label), (_, operator), (kind, value) = tokens[index : index + 3]
        if kind != "string":
            raise ValueError(f"expected a quoted value after {label}{operator}, got {value!r}")
        matchers.append((label, operator, _unquote(value)))
        index += 3
    return tuple(matchers), index


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects."""
    return {selector.name for selector in selectors(expr) if selector.name is not None}


# --- running them against a live Prometheus ---------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    expression: Expression
    error_type: str  # Prometheus' errorType: bad_data (parse), execution, timeout, ...
    error: str

    def __str__(self) -> str:
        return f"{self.expression}\n    {self.error_type}: {self.error}"


@dataclass
class Report:
    ok: list[Expression] = field(default_factory=list)
    empty: list[Expression] = field(default_factory=list)
    parse_errors: list[Failure] = field(default_factory=list)
    errors: list[Failure] = field(default_factory=list)  # any other error the API answered

    @property
    def passed(self) -> bool:
        """No expression was refused (empty results are not failures)."""
        return not self.parse_errors and not self.errors

    def summary(self) -> str:
        lines = [
            f"{len(self.ok)} with data, {len(self.empty)} empty, {len(self.parse_errors)} parse errors, "
            f"{len(self.errors)} other errors"
        ]
        lines += [f"parse error: {failure}" for failure in self.parse_errors]
        lines += [f"error: {failure}" for failure in self.errors]
        lines += [f"empty: {expression}" for expression in self.empty]
        return "\n".join(lines)


def run_all(
    prometheus_url: str,
    expressions: Iterable[Expression],
    *,
    timeout: float = 10.0,
    client: httpx.Client | None = None,
) -> Report:
    """Execute each expression as an instant query; classify the answers.

    A parse error is Prometheus' ``bad_data`` answer; any other refusal (``execution``, ``timeout``,
    ...) is an error; a vector or matrix without series is empty. A Prometheus that cannot be reached
    raises (``httpx.HTTPError``): that is not a verdict on the expressions.
    """
    report = Report()
    owned = client is None
    http = client or httpx.Client(timeout=timeout)
    try:
        for expression in expressions:
            response = http.post(
                f"{prometheus_url.rstrip('/')}/api/v1/query", data={"query": expression.expr}
            )
            try:
                body = response.json()
            except ValueError:
                response.raise_for_status()
                raise
            if body.get("status") != "success":
                failure = Failure(expression, str(body.get("errorType", "")), str(body.get("error", "")))
                (report.parse_errors if failure.error_type == "bad_data" else report.errors).append(failure)
            elif body["data"]["resultType"] in {"vector", "matrix"} and not body["data"]["result"]:
                report.empty.append(expression)
            else:
                report.ok.append(expression)
    finally:
        if owned:
            http.close()
    return report
