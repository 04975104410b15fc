"""The observability stack's configuration: prometheus/, grafana/, tempo/, loki/, otel-collector/.

Prometheus is checked for real: promtool checks the configuration and the rules and runs the rules'
unit tests, and a Prometheus started with scripts/prometheus.sh (Debian's package: 2.42) executes
every PromQL expression of the dashboards, the rules and the data source links. It scrapes itself and
two fake targets that serve every series of the contract (tests/observability_contract.py) with the
production scrape jobs of prometheus/prometheus.yml, so the run also proves that exemplars arrive
through OpenMetrics and that every dashboard query finds data when the service emits what the contract
says. Grafana, Tempo, Loki and the collector are not run (their licences keep them out of CI): their
files are checked statically (they parse, have the keys the stack needs, and refer to each other and
to the compose services consistently).

Without promtool / prometheus the tests that need them are skipped, naming the missing tool;
REQUIRE_SERVICES=1 makes that a failure (scripts/prometheus.sh install installs both).
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from scripts.dashboards import render_all
from tests.observability_contract import (
    API,
    COMPOSE_SERVICES,
    DATASOURCE_UIDS,
    GRAFANA_DASHBOARDS_PATH,
    HTTP_BUCKETS,
    LOKI_INDEX_LABEL_ATTRIBUTES,
    SCRAPE_TARGETS,
    SERIES,
    WORKER,
    Series,
    metric_names,
)
from tests.observability_promql import (
    Expression,
    datasource_expressions,
    panel_expressions,
    rule_expressions,
    run_all,
    selectors,
    variable_expressions,
)
from tests.services import require_services

ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS_YML = ROOT / "prometheus" / "prometheus.yml"
RULES_DIR = ROOT / "prometheus" / "rules"
RULE_TESTS_DIR = ROOT / "prometheus" / "tests"
DASHBOARDS_DIR = ROOT / "grafana" / "dashboards"
DATASOURCES_FILE = ROOT / "grafana" / "provisioning" / "datasources" / "datasources.yaml"
PROVIDERS_FILE = ROOT / "grafana" / "provisioning" / "dashboards" / "dashboards.yaml"
TEMPO_FILE = ROOT / "tempo" / "tempo.yaml"
LOKI_FILE = ROOT / "loki" / "loki.yaml"
COLLECTOR_FILE = ROOT / "otel-collector" / "config.yaml"
PROMETHEUS_SH = ROOT / "scripts" / "prometheus.sh"
OBSERVABILITY_DOC = ROOT / "docs" / "OBSERVABILITY.md"

PORT = 19090  # never 9090: the compose stack's, or a developer's, Prometheus may be there
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SEVERITIES = {"critical", "warning"}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def dashboards() -> dict[str, dict[str, Any]]:
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(DASHBOARDS_DIR.glob("*.json"))
    }


def panels_of(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    stack = list(dashboard.get("panels", []))
    while stack:
        panel = stack.pop(0)
        yield panel
        stack.extend(panel.get("panels", []))


def datasources() -> dict[str, dict[str, Any]]:
    """uid -> data source of the provisioning file."""
    return {source["uid"]: source for source in load_yaml(DATASOURCES_FILE)["datasources"]}


def alerts() -> list[dict[str, Any]]:
    document = load_yaml(RULES_DIR / "alerts.yml")
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


def recorded_names() -> set[str]:
    return {
        rule["record"]
        for path in sorted(RULES_DIR.glob("*.yml"))
        for group in load_yaml(path)["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


def host_port(endpoint: str) -> tuple[str, int | None]:
    """``tempo:4317`` or ``http://loki:3100/otlp`` -> (host, port)."""
    parts = urlsplit(endpoint if "://" in endpoint else f"//{endpoint}")
    return parts.hostname or "", parts.port


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (scripts/prometheus.sh install: Debian's prometheus package)"
        if require_services():
            pytest.fail(f"REQUIRE_SERVICES=1: {message}", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_tool("promtool")


def run(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(arg) for arg in args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


# --- Prometheus: promtool --------------------------------------------------------------------------


def test_promtool_accepts_the_configuration(promtool: str) -> None:
    result = run(promtool, "check", "config", PROMETHEUS_YML)
    assert result.returncode == 0, result.stdout + result.stderr
    # the configuration names the rule files; an empty glob would pass silently
    assert "SUCCESS: 2 rule files found" in result.stdout, result.stdout


def test_promtool_accepts_the_rules(promtool: str) -> None:
    result = run(promtool, "check", "rules", *sorted(RULES_DIR.glob("*.yml")))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_unit_tests_pass(promtool: str) -> None:
    result = run(promtool, "test", "rules", *sorted(RULE_TESTS_DIR.glob("*.yml")))
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_sh_check_runs_all_three(promtool: str) -> None:
    result = run(PROMETHEUS_SH, "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is valid prometheus config file syntax" in result.stdout
    assert "Unit Testing" in result.stdout


# --- Prometheus: the files ---------------------------------------------------------------------------


def test_prometheus_scrapes_the_contracts_targets_with_their_service_label() -> None:
    config = load_yaml(PROMETHEUS_YML)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for target in SCRAPE_TARGETS:
        static = jobs[target.job]["static_configs"]
        assert [entry["targets"] for entry in static] == [[target.address]], target
        assert [entry["labels"] for entry in static] == [{"service": target.service}], target
        # the target's labels win over the series' own (app_info's service becomes exported_service)
        assert not jobs[target.job].get("honor_labels", False)
    assert config["global"]["scrape_interval"] == "5s"
    assert config["rule_files"] == ["rules/*.yml"]
    # Prometheus < 2.49 refuses the whole file with this key; the default asks for OpenMetrics anyway
    assert "scrape_protocols" not in json.dumps(config)


def test_the_rule_tests_cover_every_rule_file() -> None:
    for path in sorted(RULE_TESTS_DIR.glob("*.yml")):
        listed = {(path.parent / name).resolve() for name in load_yaml(path)["rule_files"]}
        assert listed == {rules.resolve() for rules in RULES_DIR.glob("*.yml")}, path


def test_every_alert_has_for_severity_summary_description_and_runbook() -> None:
    found = alerts()
    assert {rule["alert"] for rule in found} >= {
        "HttpErrorRatioHigh",
        "HttpLatencyP99High",
        "OutboxStalled",
        "OutboxRowsParked",
        "MessagesDeadLettered",
        "ConsumerLagHigh",
    }
    for rule in found:
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), rule["alert"]
        assert rule.get("labels", {}).get("severity") in SEVERITIES, rule["alert"]
        annotations = rule.get("annotations", {})
        assert annotations.get("summary"), rule["alert"]
        assert annotations.get("description"), rule["alert"]
        assert re.fullmatch(r"docs/OBSERVABILITY\.md#[a-z0-9-]+", annotations.get("runbook", "")), rule[
            "alert"
        ]


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in sorted(RULE_TESTS_DIR.glob("*.yml")):
        for case in load_yaml(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names - firing == set(), "alerts without a test that makes them fire"
    assert names - quiet == set(), "alerts without a test that keeps them quiet"


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings (and explicit <a id=...>) of a Markdown text."""
    anchors = set(re.findall(r"""<a\s+(?:id|name)=["']([^"']+)["']""", markdown))
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", markdown, re.M):
        text = heading.replace("`", "").replace("*", "").strip().lower()
        anchors.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text)))
    return anchors


def test_runbook_anchors_exist_in_the_observability_doc() -> None:
    if not OBSERVABILITY_DOC.exists():
        pytest.skip(
            f"{OBSERVABILITY_DOC.relative_to(ROOT)} is not written yet: its runbook anchors are unchecked"
        )
    anchors = github_anchors(OBSERVABILITY_DOC.read_text(encoding="utf-8"))
    missing = {
        rule["alert"]: rule["annotations"]["runbook"]
        for rule in alerts()
        if rule["annotations"]["runbook"].split("#", 1)[1] not in anchors
    }
    assert missing == {}, "runbook links without a section in docs/OBSERVABILITY.md"


def test_rules_use_only_contract_series_and_recorded_ones() -> None:
    allowed = metric_names() | recorded_names()
    unknown = {
        str(expression): metric_names_of(expression) - allowed for expression in rule_expressions(RULES_DIR)
    }
    assert {key: names for key, names in unknown.items() if names} == {}


def metric_names_of(expression: Expression) -> set[str]:
    return {selector.name for selector in selectors(expression.expr) if selector.name}


# --- Grafana: dashboards -----------------------------------------------------------------------------


def test_dashboards_are_what_the_generator_writes() -> None:
    expected = render_all()
    committed = {path.name: path.read_text(encoding="utf-8") for path in DASHBOARDS_DIR.glob("*.json")}
    assert sorted(committed) == sorted(expected), "run python3 scripts/dashboards.py"
    stale = [name for name in expected if committed[name] != expected[name]]
    assert stale == [], (
        "grafana/dashboards differs from scripts/dashboards.py: run python3 scripts/dashboards.py"
    )


def test_dashboards_have_stable_unique_uids_and_the_two_variables() -> None:
    found = dashboards()
    assert len(found) >= 5
    uids = [dashboard["uid"] for dashboard in found.values()]
    assert len(set(uids)) == len(uids)
    for name, dashboard in found.items():
        assert re.fullmatch(r"[a-z0-9-]{1,40}", dashboard["uid"]), name
        assert dashboard.get("id") is None, f"{name}: a provisioned dashboard has no id"
        variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
        assert variables["service"]["definition"] == "label_values(app_info, service)", name
        assert (
            variables["instance"]["definition"] == 'label_values(app_info{service=~"$service"}, instance)'
        ), name
        for variable in variables.values():
            assert variable["datasource"]["uid"] == DATASOURCE_UIDS["prometheus"], name
        ids = [panel["id"] for panel in panels_of(dashboard)]
        assert len(set(ids)) == len(ids), f"{name}: panel ids repeat"


def test_every_panel_uses_a_provisioned_data_source() -> None:
    provisioned = datasources()
    for name, dashboard in dashboards().items():
        for panel in panels_of(dashboard):
            if panel["type"] == "row":
                continue
            uids = {panel["datasource"]["uid"]} | {target["datasource"]["uid"] for target in panel["targets"]}
            assert uids <= set(provisioned), f"{name} / {panel['title']}: {uids}"
            assert all(provisioned[uid]["type"] == "prometheus" for uid in uids), f"{name} / {panel['title']}"


def test_dashboard_queries_use_only_contract_series() -> None:
    allowed = metric_names()
    unknown = {}
    for expression in [*panel_expressions(DASHBOARDS_DIR), *variable_expressions(DASHBOARDS_DIR)]:
        names = metric_names_of(expression)
        assert names, f"no metric in {expression}"
        if names - allowed:
            unknown[str(expression)] = names - allowed
    assert unknown == {}


def test_every_contract_series_is_on_a_dashboard() -> None:
    used = {
        name
        for expression in [*panel_expressions(DASHBOARDS_DIR), *variable_expressions(DASHBOARDS_DIR)]
        for name in metric_names_of(expression)
    }
    missing = [series.name for series in SERIES if not set(series.names) & used]
    assert missing == []


def test_every_selector_filters_on_service_and_instance() -> None:
    scope = {"service": ("=~", "$service"), "instance": ("=~", "$instance")}
    unfiltered = [
        f"{expression.source} / {expression.title} / {expression.ref_id}: {selector}"
        for expression in panel_expressions(DASHBOARDS_DIR, variables=IDENTITY)
        for selector in selectors(expression.expr)
        if any(selector.matcher(label) != matcher for label, matcher in scope.items())
    ]
    assert unfiltered == []


class _Identity(dict[str, str]):
    """Leaves every variable as written (``$name``)."""

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> str:
        return f"${key}"


IDENTITY = _Identity()


def test_the_latency_panels_show_exemplars() -> None:
    overview = dashboards()["service-overview.json"]
    latency = [panel for panel in panels_of(overview) if panel["title"].startswith("Latency by handler")]
    assert len(latency) == 1
    exprs = [target["expr"] for target in latency[0]["targets"]]
    assert [q for q in ("0.5", "0.95", "0.99") if any(f"histogram_quantile({q}," in e for e in exprs)] == [
        "0.5",
        "0.95",
        "0.99",
    ]
    assert all("by (le, handler)" in expr for expr in exprs)
    assert any(target["exemplar"] for target in latency[0]["targets"])
    exemplar_metrics = {
        name
        for panel in panels_of(overview)
        for target in panel.get("targets", [])
        if target.get("exemplar")
        for name in {selector.name for selector in selectors(target["expr"])}
    }
    assert exemplar_metrics == {"app_http_request_duration_seconds_bucket"}  # the one with exemplars


def test_the_dashboard_provider_reads_the_mounted_directory() -> None:
    providers = load_yaml(PROVIDERS_FILE)["providers"]
    assert [provider["type"] for provider in providers] == ["file"]
    assert providers[0]["options"]["path"] == GRAFANA_DASHBOARDS_PATH
    assert providers[0]["allowUiUpdates"] is False


# --- Grafana: data sources ---------------------------------------------------------------------------


def test_datasources_have_the_fixed_uids_and_compose_urls() -> None:
    provisioned = datasources()
    assert set(provisioned) == set(DATASOURCE_UIDS.values())
    for kind, uid in DATASOURCE_UIDS.items():
        assert provisioned[uid]["type"] == kind
        host, port = host_port(provisioned[uid]["url"])
        assert host in COMPOSE_SERVICES, provisioned[uid]["url"]
        assert port in COMPOSE_SERVICES[host], provisioned[uid]["url"]
    assert (
        provisioned["prometheus"]["jsonData"]["timeInterval"]
        == load_yaml(PROMETHEUS_YML)["global"]["scrape_interval"]
    ), "$__rate_interval must know the scrape interval"


def test_datasources_link_metrics_traces_and_logs() -> None:
    provisioned = datasources()
    prometheus, tempo, loki = (
        provisioned[DATASOURCE_UIDS[kind]]["jsonData"] for kind in ("prometheus", "tempo", "loki")
    )
    # metrics -> traces: the exemplar label the HTTP histogram carries
    assert prometheus["exemplarTraceIdDestinations"] == [
        {"name": "trace_id", "datasourceUid": "tempo", "urlDisplayLabel": "View trace"}
    ]
    # traces -> logs: by service and trace id, trace_id as structured metadata (a label filter)
    logs = tempo["tracesToLogsV2"]
    assert logs["datasourceUid"] == "loki"
    assert {"key": "service.name", "value": "service_name"} in logs["tags"]
    assert logs["customQuery"] is True
    assert logs["query"] == '{$${__tags}} | trace_id="$${__span.traceId}"'
    # traces -> metrics and the service map: Prometheus; span service.name = the target label service
    assert tempo["tracesToMetrics"]["datasourceUid"] == "prometheus"
    assert tempo["tracesToMetrics"]["tags"] == [{"key": "service.name", "value": "service"}]
    assert tempo["serviceMap"]["datasourceUid"] == "prometheus"
    assert tempo["lokiSearch"]["datasourceUid"] == "loki"
    # logs -> traces: trace_id is structured metadata in Loki's OTLP ingestion, matched by name
    assert loki["derivedFields"] == [
        {
            "name": "trace_id",
            "matcherType": "label",
            "matcherRegex": "trace_id",
            "datasourceUid": "tempo",
            "url": "$${__value.raw}",
            "urlDisplayLabel": "View trace",
        }
    ]


def test_trace_to_metrics_links_query_contract_series() -> None:
    links = datasource_expressions(DATASOURCES_FILE)
    assert len(links) >= 2
    for expression in links:
        assert metric_names_of(expression) <= metric_names(), expression
        assert all(selector.matcher("service") for selector in selectors(expression.expr)), expression


# --- Tempo, Loki, the collector ----------------------------------------------------------------------


def test_tempo_receives_otlp_and_serves_grafana() -> None:
    tempo = load_yaml(TEMPO_FILE)
    protocols = tempo["distributor"]["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert protocols["http"]["endpoint"] == "0.0.0.0:4318"
    assert tempo["server"]["http_listen_port"] in COMPOSE_SERVICES["tempo"]
    assert host_port(datasources()["tempo"]["url"])[1] == tempo["server"]["http_listen_port"]
    trace = tempo["storage"]["trace"]
    assert trace["backend"] == "local"
    assert trace["local"]["path"]
    assert trace["wal"]["path"]
    # the service map needs the service graph, written into Prometheus
    assert "service-graphs" in tempo["overrides"]["defaults"]["metrics_generator"]["processors"]
    [remote_write] = tempo["metrics_generator"]["storage"]["remote_write"]
    host, port = host_port(remote_write["url"])
    assert (host, port) == ("prometheus", 9090)
    assert remote_write["url"].endswith("/api/v1/write")
    # ... which takes it only with this flag, named where the compose command line is written
    assert "--web.enable-remote-write-receiver" in PROMETHEUS_YML.read_text(encoding="utf-8")


TRACE_LIKE = re.compile(r"trace|span", re.I)


def test_loki_takes_otlp_and_keeps_trace_ids_out_of_labels() -> None:
    loki = load_yaml(LOKI_FILE)
    assert loki["auth_enabled"] is False
    assert loki["server"]["http_listen_port"] in COMPOSE_SERVICES["loki"]
    [schema] = loki["schema_config"]["configs"]
    assert (schema["store"], schema["schema"], schema["object_store"]) == ("tsdb", "v13", "filesystem")
    assert loki["common"]["storage"]["filesystem"]["chunks_directory"]
    limits = loki["limits_config"]
    assert limits["allow_structured_metadata"] is True
    otlp = limits["otlp_config"]
    assert otlp["resource_attributes"]["ignore_defaults"] is True, (
        "the defaults make service.instance.id a label"
    )
    assert not otlp.get("severity_text_as_label", False)
    configs = [
        *otlp["resource_attributes"].get("attributes_config", []),
        *otlp.get("scope_attributes", []),
        *otlp.get("log_attributes", []),
    ]
    labelled = [config for config in configs if config["action"] == "index_label"]
    assert labelled, "service.name must stay a label"
    for config in labelled:
        assert "regex" not in config, "a regex may make any attribute a label"
        assert set(config["attributes"]) <= LOKI_INDEX_LABEL_ATTRIBUTES, config
        assert not any(TRACE_LIKE.search(name) for name in config["attributes"]), config
    assert "service.name" in {name for config in labelled for name in config["attributes"]}
    # the Tempo data source's logs query selects on what Loki makes of service.name
    assert datasources()["tempo"]["jsonData"]["tracesToLogsV2"]["tags"] == [
        {"key": "service.name", "value": "service_name"}
    ]


def test_the_collector_sends_traces_to_tempo_and_logs_to_loki() -> None:
    collector = load_yaml(COLLECTOR_FILE)
    protocols = collector["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert protocols["http"]["endpoint"] == "0.0.0.0:4318"
    exporters = collector["exporters"]
    for name, exporter in exporters.items():
        host, port = host_port(exporter["endpoint"])
        assert host in COMPOSE_SERVICES, f"exporter {name}: {host} is not a compose service"
        assert port in COMPOSE_SERVICES[host], f"exporter {name}: {host} does not serve port {port}"
    pipelines = collector["service"]["pipelines"]
    assert set(pipelines) == {"traces", "logs"}
    for pipeline in pipelines.values():
        assert set(pipeline["receivers"]) <= set(collector["receivers"])
        assert set(pipeline["processors"]) <= set(collector["processors"])
        assert set(pipeline["exporters"]) <= set(exporters)
    [traces] = pipelines["traces"]["exporters"]
    assert traces.split("/")[0] in {"otlp_grpc", "otlp"}  # otlp: its name before collector 0.144
    assert host_port(exporters[traces]["endpoint"]) == ("tempo", 4317)
    assert exporters[traces]["tls"]["insecure"] is True
    [logs] = pipelines["logs"]["exporters"]
    assert logs.split("/")[0] in {"otlp_http", "otlphttp"}  # Loki takes OTLP over HTTP only
    assert exporters[logs]["endpoint"] == "http://loki:3100/otlp"  # the exporter appends /v1/logs
    assert set(collector["service"]["extensions"]) <= set(collector["extensions"])


# --- the PromQL helper -------------------------------------------------------------------------------


def test_the_promql_lexer_finds_every_selector() -> None:
    expr = (
        'sum by (service, le) (rate(a_bucket{service=~"$service", le!="+Inf"}[5m:1m])) '
        "/ ignoring (le) group_left sum without () (b offset 10m) or on (service) vector(0) "
        "and count({__name__='c', x=`y`} @ end()) > bool 0 # a comment naming d_total"
    )
    found = selectors(expr)
    assert [selector.name for selector in found] == ["a_bucket", "b", "c"]
    assert found[0].matchers == (("service", "=~", "$service"), ("le", "!=", "+Inf"))
    assert found[2].matcher("x") == ("=", "y")


# --- a live Prometheus: every expression runs -----------------------------------------------------


def _label_sets(series: Series, job: str) -> list[dict[str, str]]:
    names = list(series.labels)
    sets = [dict(zip(names, values, strict=True)) for values in itertools.product(*series.labels.values())]
    if series.per_process and job == API:
        sets = [{**labels, "pid": pid} for labels in sets for pid in ("101", "102")]
    if series.own_service:
        service = next(target.service for target in SCRAPE_TARGETS if target.job == job)
        sets = [{**labels, "service": service} for labels in sets]
    return sets


def _labels_text(labels: dict[str, str]) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{name}="{escape(value)}"' for name, value in labels.items()) + "}"


def exposition(job: str, elapsed: float) -> str:
    """OpenMetrics text with every contract series of ``job``; counters grow with ``elapsed``."""
    lines = []
    for series in SERIES:
        if job not in series.jobs:
            continue
        family = series.name.removesuffix("_total") if series.kind == "counter" else series.name
        lines.append(f"# TYPE {family} {series.kind}")
        for index, labels in enumerate(_label_sets(series, job), start=1):
            growing = (10 + elapsed) * index
            if series.kind == "counter":
                lines.append(f"{series.name}{_labels_text(labels)} {growing:.3f}")
            elif series.kind == "gauge":
                lines.append(f"{series.name}{_labels_text(labels)} {index:.3f}")
            else:
                for position, bound in enumerate([*HTTP_BUCKETS, float("inf")], start=1):
                    count = growing * min(1.0, position / len(HTTP_BUCKETS))
                    le = "+Inf" if bound == float("inf") else repr(bound)
                    line = f"{series.name}_bucket{_labels_text({**labels, 'le': le})} {count:.3f}"
                    if series.exemplars and position == 4:
                        line += f' # {{trace_id="{TRACE_ID}"}} 0.042'
                    lines.append(line)
                lines.append(f"{series.name}_count{_labels_text(labels)} {growing:.3f}")
                lines.append(f"{series.name}_sum{_labels_text(labels)} {growing * 0.05:.3f}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


class FakeTarget:
    """An HTTP server with /metrics serving ``exposition(job, ...)`` as OpenMetrics."""

    def __init__(self, job: str) -> None:
        started = time.monotonic()
        self.accept_headers: list[str] = []
        accepted = self.accept_headers

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                accepted.append(self.headers.get("Accept", ""))
                body = exposition(job, time.monotonic() - started).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/openmetrics-text; version=1.0.0; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def scrape_config_for(targets: dict[str, FakeTarget]) -> dict[str, Any]:
    """prometheus/prometheus.yml with the api and worker jobs pointed at the fake targets, the
    self-scrape at our port, the repository's rules, and 1 s intervals."""
    config: dict[str, Any] = copy.deepcopy(load_yaml(PROMETHEUS_YML))
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(RULES_DIR / "*.yml")]
    for job in config["scrape_configs"]:
        address = targets[job["job_name"]].address if job["job_name"] in targets else f"127.0.0.1:{PORT}"
        for static in job["static_configs"]:
            static["targets"] = [address]
    return config


class LivePrometheus:
    def __init__(self, url: str, targets: dict[str, FakeTarget]) -> None:
        self.url = url
        self.targets = targets
        self.http = httpx.Client(timeout=10, trust_env=False)

    def query(self, expr: str) -> list[dict[str, Any]]:
        body = self.http.post(f"{self.url}/api/v1/query", data={"query": expr}).json()
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def get(self, path: str, **params: str) -> Any:
        body = self.http.get(f"{self.url}{path}", params=params).json()
        assert body["status"] == "success", body
        return body["data"]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePrometheus]:
    require_tool("prometheus")
    require_tool("promtool")
    directory = tmp_path_factory.mktemp("prometheus")
    targets = {API: FakeTarget(API), WORKER: FakeTarget(WORKER)}
    config = directory / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config_for(targets)), encoding="utf-8")
    data = directory / "data"
    live = LivePrometheus(f"http://127.0.0.1:{PORT}", targets)
    try:
        started = run(PROMETHEUS_SH, "up", config, str(PORT), data, timeout=90)
        assert started.returncode == 0, started.stdout + started.stderr
        wait_for_samples(live)
        yield live
    finally:
        live.http.close()
        stopped = run(PROMETHEUS_SH, "down", data, timeout=60)
        for target in targets.values():
            target.stop()
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def wait_for_samples(live: LivePrometheus, timeout: float = 60) -> None:
    """Until each fake target was scraped 5 times (rate() over 1m has points), then two more rule
    evaluations (1 s apart) so the rules have seen those samples."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = live.query('count_over_time(app_info{job=~"api|worker", version="0.1.0"}[1m])')
        if len(counts) == 2 and all(float(sample["value"][1]) >= 5 for sample in counts):
            time.sleep(2.5)
            return
        time.sleep(0.5)
    raise AssertionError(f"no samples within {timeout}s (see the Prometheus log)")


def every_expression() -> list[Expression]:
    return [
        *panel_expressions(DASHBOARDS_DIR),
        *variable_expressions(DASHBOARDS_DIR),
        *rule_expressions(RULES_DIR),
        *datasource_expressions(DATASOURCES_FILE),
    ]


def test_every_expression_runs_in_prometheus(prometheus: LivePrometheus) -> None:
    expressions = every_expression()
    report = run_all(prometheus.url, expressions, client=prometheus.http)
    print(f"\n{len(expressions)} expressions: {report.summary()}")
    assert report.parse_errors == [], report.summary()
    assert report.errors == [], report.summary()


def test_every_dashboard_query_finds_the_contracts_series(prometheus: LivePrometheus) -> None:
    """The fake targets serve every contract series with its label values: a dashboard query that
    stays empty selects a label or a value the service does not emit."""
    expressions = [
        *panel_expressions(DASHBOARDS_DIR),
        *variable_expressions(DASHBOARDS_DIR),
        *datasource_expressions(DATASOURCES_FILE),
    ]
    report = run_all(prometheus.url, expressions, client=prometheus.http)
    assert report.empty == [], report.summary()
    assert report.passed, report.summary()


def test_exemplars_arrive_through_openmetrics(prometheus: LivePrometheus) -> None:
    for target in prometheus.targets.values():
        assert target.accept_headers, "never scraped"
        assert target.accept_headers[-1].startswith("application/openmetrics-text"), target.accept_headers[-1]
    found = prometheus.get(
        "/api/v1/query_exemplars",
        query='app_http_request_duration_seconds_bucket{job="api"}',
        start=str(time.time() - 300),
        end=str(time.time() + 60),
    )
    assert found, "no exemplar stored: is --enable-feature=exemplar-storage on?"
    trace_ids = {exemplar["labels"].get("trace_id") for series in found for exemplar in series["exemplars"]}
    assert trace_ids == {TRACE_ID}


def test_targets_carry_the_service_label_the_dashboards_select(prometheus: LivePrometheus) -> None:
    info = prometheus.query("app_info")
    by_job = {sample["metric"]["job"]: sample["metric"] for sample in info}
    services = {target.job: target.service for target in SCRAPE_TARGETS}
    assert {job: labels["service"] for job, labels in by_job.items()} == services
    # the series' own `service` label (the same value) is kept as exported_service; the target's wins
    assert {job: labels.get("exported_service") for job, labels in by_job.items()} == services


def test_the_rules_load_and_evaluate_without_errors(prometheus: LivePrometheus) -> None:
    groups = prometheus.get("/api/v1/rules")["groups"]
    rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
    expected = {expression.title for expression in rule_expressions(RULES_DIR)}
    assert set(rules) == expected
    unhealthy = {name: rule.get("lastError") for name, rule in rules.items() if rule["health"] != "ok"}
    assert unhealthy == {}
    # the fake worker reports dead letters new to this Prometheus: pending (for: 1m) or firing
    active = {alert["labels"]["alertname"] for alert in prometheus.get("/api/v1/alerts")["alerts"]}
    assert "MessagesDeadLettered" in active
