"""homeroom.gc_tuning: the young generation's threshold is raised for a while, never lowered,
and what was there before comes back."""

from __future__ import annotations

import gc

import pytest

from homeroom.gc_tuning import young_generation_threshold


def test_the_threshold_is_raised_for_the_duration_and_restored() -> None:
    found = gc.get_threshold()
    try:
        gc.set_threshold(700, found[1], found[2])
        with young_generation_threshold(50_000):
            assert gc.get_threshold() == (50_000, found[1], found[2])
        assert gc.get_threshold() == (700, found[1], found[2])
        gc.set_threshold(80_000, found[1], found[2])
        with young_generation_threshold(50_000):  # never lowered
            assert gc.get_threshold()[0] == 80_000
        with young_generation_threshold(0):  # 0 leaves it
            assert gc.get_threshold()[0] == 80_000
        with pytest.raises(RuntimeError), young_generation_threshold(50_000):
            raise RuntimeError("the service failed to start")
        assert gc.get_threshold()[0] == 80_000  # restored on the way out of a failure too
    finally:
        gc.set_threshold(*found)
