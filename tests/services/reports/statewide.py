"""Generated statewide tallies: schools' counts by group, as the streaming tally would sum them.

Counts are drawn per school, consistently: in every dimension the groups add up to the
school's total, and each measure is drawn from its parent measure's students group by
group (multivariate hypergeometric), so chronic <= counted <= enrolled and suspended <=
enrolled hold in every cell, as they do for real students. Schools come in every size from
one student up, with lopsided groups (a school of nearly all girls, or nearly all students
with an IEP) and districts with a single school. Used by the attacker tests and by
bench/reports.py (700 districts, 4,500 schools, 2.5 million students).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.reports.suppression import ALL
from services.reports.tallies import GRADES, LAYOUT, SchoolTally

DIMENSIONS = [d for d in LAYOUT.dimensions]


@dataclass(frozen=True, slots=True)
class Shape:
    districts: int
    schools: tuple[int, int]  # per district: fewest, most
    students: int  # in the state, roughly
    tiny: float = 0.1  # share of schools with fewer than ten students
    lopsided: float = 0.2  # share of schools whose groups are far from the state's


def _shares(rng: np.random.Generator, k: int, lopsided: bool) -> np.ndarray:
    p = rng.dirichlet(np.full(k, 0.3 if lopsided else 8.0))
    return np.asarray(p / p.sum())


def _split(rng: np.random.Generator, total: int, shares: np.ndarray) -> np.ndarray:
    return np.asarray(rng.multinomial(total, shares))


def _thin(rng: np.random.Generator, parent: np.ndarray, total: int) -> np.ndarray:
    """``total`` of the parent's students, drawn group by group."""
    total = min(total, int(parent.sum()))
    if total == 0:
        return np.zeros_like(parent)
    return np.asarray(rng.multivariate_hypergeometric(parent, total, method="marginals"))


def school(rng: np.random.Generator, size: int, lopsided: bool) -> SchoolTally:
    tally = SchoolTally(students=size)
    enrolled_total = size
    counted_total = int(rng.binomial(size, rng.uniform(0.75, 1.0))) if size else 0
    chronic_total = int(rng.binomial(counted_total, rng.uniform(0.02, 0.35))) if counted_total else 0
    suspended_total = int(rng.binomial(size, rng.uniform(0.0, 0.12))) if size else 0
    days_per_student = int(rng.integers(150, 181))
    for dimension in DIMENSIONS:
        columns = [f"{dimension.name}:{code}" for code, _ in dimension.categories]
        if dimension.name == "grade":
            served = rng.choice(len(GRADES), size=int(rng.integers(3, 8)), replace=False)
            shares = np.zeros(len(GRADES))
            shares[served] = _shares(rng, len(served), lopsided)
        else:
            shares = _shares(rng, len(columns), lopsided)
        enrolled = _split(rng, enrolled_total, shares)
        counted = _thin(rng, enrolled, counted_total)
        chronic = _thin(rng, counted, chronic_total)
        suspended = _thin(rng, enrolled, suspended_total)
        for name, values in (
            ("enrolled", enrolled),
            ("counted", counted),
            ("chronic", chronic),
            ("suspended", suspended),
        ):
            row = tally.counts[name]
            for col, v in zip(columns, values, strict=True):
                if v:
                    row[col] = int(v)
        for col, c in zip(columns, counted, strict=True):
            if c:
                days = int(c) * days_per_student
                tally.sums["days_enrolled"][col] = days
                tally.sums["days_absent"][col] = int(rng.binomial(days, 0.06))
    for name, total in (
        ("enrolled", enrolled_total),
        ("counted", counted_total),
        ("chronic", chronic_total),
        ("suspended", suspended_total),
    ):
        if total:
            tally.counts[name][ALL] = total
    days = counted_total * days_per_student
    if days:
        tally.sums["days_enrolled"][ALL] = days
        tally.sums["days_absent"][ALL] = sum(tally.sums["days_absent"].values())  # close enough for rates
    return tally


def state(seed: int, shape: Shape) -> dict[tuple[str, str], SchoolTally]:
    rng = np.random.default_rng(seed)
    schools_per = [int(rng.integers(shape.schools[0], shape.schools[1] + 1)) for _ in range(shape.districts)]
    n_schools = sum(schools_per)
    mean = max(1.0, shape.students / n_schools)
    out: dict[tuple[str, str], SchoolTally] = {}
    for d, count in enumerate(schools_per):
        district = f"d-{100 + d}"
        for s in range(count):
            if rng.random() < shape.tiny:
                size = int(rng.integers(1, 10))
            else:
                size = max(1, int(rng.lognormal(np.log(mean), 0.6)))
            out[(district, f"{district}-s{s + 1}")] = school(rng, size, bool(rng.random() < shape.lopsided))
    return out


def truth(snapshot_tables: object) -> dict[tuple[str, str, str], int]:
    """(measure, unit, column) -> the true count, from `snapshots.Tables` (for the attacker's checks)."""
    from services.reports.snapshots import Tables
    from services.reports.tallies import MEASURES

    assert isinstance(snapshot_tables, Tables)
    out = {}
    for m, measure in enumerate(MEASURES):
        for u, unit in enumerate(snapshot_tables.units):
            for c, col in enumerate(LAYOUT.columns):
                out[(measure.name, unit.key, col)] = snapshot_tables.counts[m][u][c]
    return out
