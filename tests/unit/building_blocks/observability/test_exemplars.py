"""Exemplars beside prometheus_client's multiprocess files: the newest per bucket, over workers."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.openmetrics.exposition import generate_latest

from app.building_blocks.observability.exemplars import (
    ExemplarCollector,
    ExemplarFile,
    read_exemplars,
    remove_exemplar_files,
)

BUCKETS = (0.1, 1.0)


def test_each_bucket_keeps_its_newest_exemplar_across_files(tmp_path: Path) -> None:
    first = ExemplarFile(str(tmp_path), "latency", BUCKETS, flush_interval=0)
    first.record({"handler": "/a"}, 0.05, "a" * 32)
    first.record({"handler": "/a"}, 0.5, "b" * 32)
    second = ExemplarFile(str(tmp_path), "latency", BUCKETS, flush_interval=0)
    second.path = str(tmp_path / "exemplars_latency_2.json")  # another worker's file
    second.record({"handler": "/a"}, 0.07, "c" * 32)
    second.record({"handler": "/a"}, 7.0, "d" * 32)
    found = read_exemplars(str(tmp_path), "latency")
    assert found[("handler=/a", "0.1")][0] == "c" * 32  # newer than the first worker's
    assert found[("handler=/a", "1.0")][0] == "b" * 32
    assert found[("handler=/a", "+Inf")][0] == "d" * 32


def test_files_are_written_at_most_once_per_interval(tmp_path: Path) -> None:
    store = ExemplarFile(str(tmp_path), "latency", BUCKETS, flush_interval=3600)
    store.record({"handler": "/a"}, 0.05, "a" * 32)  # the first one is written at once
    store.record({"handler": "/a"}, 0.06, "b" * 32)
    assert json.loads(Path(store.path).read_text())["exemplars"][0][1] == "a" * 32
    store.flush()
    assert json.loads(Path(store.path).read_text())["exemplars"][0][1] == "b" * 32


def test_a_torn_file_is_skipped_and_a_dead_workers_files_go(tmp_path: Path) -> None:
    (tmp_path / "exemplars_latency_9.json").write_text("{not json")
    assert read_exemplars(str(tmp_path), "latency") == {}
    remove_exemplar_files(str(tmp_path), 9)
    assert not list(tmp_path.iterdir())


def test_the_collector_attaches_exemplars_to_the_summed_buckets(tmp_path: Path) -> None:
    source = CollectorRegistry()
    histogram = Histogram("latency", "x", ["handler"], buckets=BUCKETS, registry=source)
    histogram.labels("/a").observe(0.05)
    store = ExemplarFile(str(tmp_path), "latency", BUCKETS, flush_interval=0)
    store.record({"handler": "/a"}, 0.05, "e" * 32)
    registry = CollectorRegistry()
    registry.register(ExemplarCollector(source, str(tmp_path), "latency"))
    text = generate_latest(registry).decode()  # type: ignore[no-untyped-call]
    assert 'latency_bucket{handler="/a",le="0.1"} 1.0 # {trace_id="' + "e" * 32 + '"} 0.05' in text
    assert 'le="1.0"} 1.0\n' in text  # no exemplar recorded for that bucket
