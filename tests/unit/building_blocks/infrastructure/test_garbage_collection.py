from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from app.building_blocks.infrastructure.garbage_collection import tune_garbage_collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_tuning_freezes_the_heap_and_raises_the_young_threshold() -> None:
    _, middle, oldest = gc.get_threshold()
    survivor = [object()]  # built "at startup": frozen with the rest

    tune_garbage_collector(12_345)

    assert gc.get_threshold() == (12_345, middle, oldest)
    assert gc.get_freeze_count() > 0
    assert not any(tracked is survivor for tracked in gc.get_objects())  # frozen: never scanned


@pytest.mark.usefixtures("restored_collector")
def test_garbage_made_after_the_freeze_is_still_collected() -> None:
    tune_garbage_collector(12_345)

    cycle: list[object] = []
    cycle.append(cycle)
    del cycle

    assert gc.collect() >= 1


@pytest.mark.usefixtures("restored_collector")
def test_zero_leaves_the_collector_alone() -> None:
    before = gc.get_threshold()

    tune_garbage_collector(0)

    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
