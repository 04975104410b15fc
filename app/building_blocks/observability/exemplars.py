"""Exemplars that survive prometheus_client's multiprocess mode.

That mode stores each worker's values in memory-mapped files and drops exemplars. Here each
worker keeps the latest trace id per histogram bucket in memory and writes them to
``exemplars_<pid>.json`` beside those files, at most once per ``flush_interval`` (a file write a
second, not a request); ``/metrics`` attaches the newest exemplar of each bucket to the summed
series. The counts stay exact; an exemplar is a sample of a trace by definition, and one up to a
second old is still one.
"""

from __future__ import annotations

import bisect
import contextlib
import glob
import json
import os
import time
from collections.abc import Iterable, Sequence

from prometheus_client import Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Exemplar, Sample
from prometheus_client.utils import floatToGoString

FILE_PREFIX = "exemplars_"

Key = tuple[str, ...]  # the histogram's ``name=value`` labels (sorted), then the bucket's ``le``


def _label_key(labels: dict[str, str]) -> tuple[str, ...]:
    return tuple(f"{name}={value}" for name, value in sorted(labels.items()))


class ExemplarFile:
    """This process's newest exemplar per bucket of one histogram, flushed to a shared file."""

    def __init__(self, directory: str, metric: str, buckets: Sequence[float], *, flush_interval: float = 1.0):
        self.path = os.path.join(directory, f"{FILE_PREFIX}{metric}_{os.getpid()}.json")
        self.metric = metric
        self.bounds = list(buckets)
        if not self.bounds or self.bounds[-1] != float("inf"):
            self.bounds.append(float("inf"))
        self.flush_interval = flush_interval
        self._latest: dict[Key, tuple[str, float, float]] = {}
        self._flushed_at = 0.0
        self._dirty = False

    def record(self, labels: dict[str, str], value: float, trace_id: str) -> None:
        bound = self.bounds[bisect.bisect_left(self.bounds, value)]
        now = time.time()
        le: str = floatToGoString(bound)  # type: ignore[no-untyped-call]
        self._latest[(*_label_key(labels), le)] = (trace_id, value, now)
        self._dirty = True
        if now - self._flushed_at >= self.flush_interval:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        if not self._dirty:
            return
        payload = [[list(key), *sample] for key, sample in self._latest.items()]
        temporary = f"{self.path}.tmp"
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump({"metric": self.metric, "exemplars": payload}, file)
        os.replace(temporary, self.path)
        self._flushed_at = now if now is not None else time.time()
        self._dirty = False


def read_exemplars(directory: str, metric: str) -> dict[Key, tuple[str, float, float]]:
    """The newest exemplar per bucket over every worker's file (a torn or vanished file is skipped)."""
    newest: dict[Key, tuple[str, float, float]] = {}
    for path in glob.glob(os.path.join(directory, f"{FILE_PREFIX}{metric}_*.json")):
        try:
            with open(path, encoding="utf-8") as file:
                entries = json.load(file)["exemplars"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        for labels, trace_id, value, stamp in entries:
            key = tuple(labels)
            if key not in newest or newest[key][2] < stamp:
                newest[key] = (trace_id, value, stamp)
    return newest


def remove_exemplar_files(directory: str, pid: int) -> None:
    """For gunicorn's ``child_exit``: a dead worker's exemplars go with it."""
    for path in glob.glob(os.path.join(directory, f"{FILE_PREFIX}*_{pid}.json")):
        with contextlib.suppress(OSError):
            os.remove(path)


class ExemplarCollector(Collector):
    """Re-emits another collector's series with the shared exemplars attached to ``histogram``'s buckets."""

    def __init__(self, source: Collector, directory: str, histogram: str) -> None:
        self.source = source
        self.directory = directory
        self.histogram = histogram

    def collect(self) -> Iterable[Metric]:
        exemplars = read_exemplars(self.directory, self.histogram)
        for metric in self.source.collect():
            if metric.name == self.histogram and exemplars:
                metric.samples = [self._with_exemplar(sample, exemplars) for sample in metric.samples]
            yield metric

    def _with_exemplar(self, sample: Sample, exemplars: dict[Key, tuple[str, float, float]]) -> Sample:
        if not sample.name.endswith("_bucket"):
            return sample
        labels = dict(sample.labels)
        bound = labels.pop("le", None)
        key = (*_label_key(labels), bound or "")
        found = exemplars.get(key)
        if found is None:
            return sample
        trace_id, value, stamp = found
        return sample._replace(exemplar=Exemplar({"trace_id": trace_id}, value, stamp))


def multiprocess_registry_with_exemplars(directory: str, histogram: Histogram) -> CollectorRegistry:
    from prometheus_client import multiprocess

    inner = CollectorRegistry()
    multiprocess.MultiProcessCollector(inner, path=directory)  # type: ignore[no-untyped-call]
    registry = CollectorRegistry()
    registry.register(ExemplarCollector(inner, directory, histogram._name))
    return registry
