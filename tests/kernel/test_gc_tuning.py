"""`homeroom.gc_tuning.young_threshold`: the collector's young generation raised while any
holder is in its block, never lowered, and put back when the last leaves, unless something
else changed it meanwhile."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from homeroom.gc_tuning import young_threshold


@pytest.fixture(autouse=True)
def _thresholds_kept() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


def test_the_young_threshold_is_raised_inside_and_restored_after() -> None:
    with young_threshold(50_000):
        assert gc.get_threshold() == (50_000, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


def test_a_lower_or_zero_threshold_leaves_the_collector_as_it_was() -> None:
    for asked in (0, 100):
        with young_threshold(asked):
            assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)
    gc.set_threshold(80_000, 10, 10)
    with young_threshold(50_000):  # never lowered
        assert gc.get_threshold()[0] == 80_000
    assert gc.get_threshold() == (80_000, 10, 10)


def test_holders_stopping_out_of_order_keep_the_highest_until_the_last_leaves() -> None:
    first, second, third = young_threshold(50_000), young_threshold(80_000), young_threshold(10_000)
    first.__enter__()
    second.__enter__()
    third.__enter__()
    assert gc.get_threshold()[0] == 80_000
    second.__exit__(None, None, None)  # the highest leaves: the next highest still running
    assert gc.get_threshold()[0] == 50_000
    first.__exit__(None, None, None)
    assert gc.get_threshold()[0] == 10_000
    third.__exit__(None, None, None)  # the last: what was there before the first came
    assert gc.get_threshold() == (700, 10, 10)


def test_a_threshold_someone_else_set_meanwhile_is_kept() -> None:
    with young_threshold(50_000):
        gc.set_threshold(2_000, 20, 20)  # an operator's or a library's own choice
    assert gc.get_threshold() == (2_000, 20, 20)


def test_the_thresholds_come_back_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError), young_threshold(50_000):
        raise RuntimeError("a service failing to start")
    assert gc.get_threshold() == (700, 10, 10)
