"""The attacker: everything a snapshot publishes, solved for every suppressed count.

It reads only the published document (`homeroom.contracts.reports.Snapshot`): the units and
their parents, the dimensions and the levels that publish them, the measures and their
parents, every count shown and the label of every count not shown. From those it writes
the equations anyone can (a district's cell is the sum of its schools', the state's of its
districts'; "all" is the sum of a dimension's groups at a level that publishes it) and the
bounds anyone knows (a count is a non-negative integer; "fewer than N" is at most N-1;
"withheld" is at least N, or it would read "fewer than N"; a measure never exceeds its
parent measure in the same cell), and asks an integer program (scipy's HiGHS) for the
smallest and largest value of each suppressed count. A count whose smallest and largest
values agree is exposed.

To keep it quick it first solves for random objectives: every solution that differs from
the true table in a count proves that count cannot be pinned (the solution is checked
against every equation and bound before it counts). Only counts no such solution moved get
their own two programs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from homeroom.contracts.reports import Snapshot

BIG = 10**8  # no count of students exceeds this


@dataclass(slots=True)
class Attack:
    variables: int
    exposed: list[tuple[str, str, str]]  # (measure, unit, column)
    programs: int


def _min_cell(snapshot: Snapshot) -> int:
    return int(snapshot.rules["min_cell"])


def attack(
    snapshot: Snapshot, truth: dict[tuple[str, str, str], int], *, random_rounds: int = 6, stop_after: int = 0
) -> Attack:
    """Try to recover every suppressed count; ``truth`` (measure, unit, column) -> value is
    used only to tell a different solution from the true one, never as a constraint.
    ``stop_after``: give up after that many exposed counts (0: look at every count)."""
    n_min = _min_cell(snapshot)
    rows = {(r.unit, r.column): r for r in snapshot.rows}
    children: dict[str, list[str]] = {}
    for u in snapshot.units:
        if u.parent is not None:
            children.setdefault(u.parent, []).append(u.key)
    columns_at: dict[str, list[str]] = {}
    for u in snapshot.units:
        columns_at[u.key] = [col for (unit, col) in rows if unit == u.key]
    measures = [m.name for m in snapshot.measures]
    parent_of = {m.name: m.parent for m in snapshot.measures}

    index: dict[tuple[str, str, str], int] = {}
    lower: list[float] = []
    upper: list[float] = []
    truth_vec: list[int] = []
    for (unit, col), row in rows.items():
        for m in measures:
            count = row.counts[m]
            if count.status == "published":
                continue
            index[(m, unit, col)] = len(lower)
            truth_vec.append(truth[(m, unit, col)])
            if count.status == "fewer_than":
                lower.append(0)
                upper.append(n_min - 1)
            else:
                lower.append(n_min)
                upper.append(BIG)
    n = len(lower)
    if n == 0:
        return Attack(0, [], 0)

    a_rows: list[np.ndarray] = []
    lo: list[float] = []
    hi: list[float] = []

    def term(m: str, unit: str, col: str) -> tuple[int | None, int]:
        key = (m, unit, col)
        if key in index:
            return index[key], 0
        value = rows[(unit, col)].counts[m].value
        assert value is not None
        return None, value

    def add(terms: list[tuple[int, str, str, str]], equal: bool) -> None:
        row = np.zeros(n)
        const = 0
        for coef, m, unit, col in terms:
            i, v = term(m, unit, col)
            if i is None:
                const += coef * v
            else:
                row[i] += coef
        if not row.any():
            return
        a_rows.append(row)
        lo.append(-const if equal else -np.inf)
        hi.append(-const)

    for m in measures:
        for u in snapshot.units:
            cols = set(columns_at[u.key])
            for d in snapshot.dimensions:
                if u.level in d.levels:
                    add([(1, m, u.key, "all")] + [(-1, m, u.key, g.column) for g in d.groups], True)
            kids = children.get(u.key, [])
            if kids:
                below = set(columns_at[kids[0]])
                for col in sorted(cols & below):
                    add([(1, m, u.key, col)] + [(-1, m, k, col) for k in kids], True)
            p = parent_of[m]
            if p is not None:
                for col in cols:
                    add([(1, m, u.key, col), (-1, p, u.key, col)], False)

    a = np.array(a_rows) if a_rows else np.zeros((0, n))
    constraints = [LinearConstraint(a, lo, hi)] if a_rows else []
    bounds = Bounds(lower, upper)
    integrality = np.ones(n)
    truth_arr = np.array(truth_vec, dtype=float)
    moved = np.zeros(n, dtype=bool)
    programs = 0

    def feasible(x: np.ndarray) -> bool:
        if np.any(x < np.array(lower) - 1e-6) or np.any(x > np.array(upper) + 1e-6):
            return False
        if not a_rows:
            return True
        ax = a @ x
        return bool(np.all(ax >= np.array(lo) - 1e-6) and np.all(ax <= np.array(hi) + 1e-6))

    def solve(objective: np.ndarray) -> np.ndarray:
        nonlocal programs
        programs += 1
        result = milp(objective, constraints=constraints, bounds=bounds, integrality=integrality)
        assert result.status == 0, f"the published equations should have a solution: {result.message}"
        x: np.ndarray = np.round(np.asarray(result.x, dtype=float))
        assert feasible(x), "the solver's answer breaks a published equation"
        return x

    rng = np.random.default_rng(0)
    for _ in range(random_rounds):
        x = solve(rng.normal(size=n))
        moved |= np.abs(x - truth_arr) > 0.5
    # Then push only the counts not yet moved, up or down at random, while that moves some.
    stalled = 0
    while stalled < 2 and not moved.all():
        before = int(moved.sum())
        objective = np.where(moved, 0.0, rng.choice([-1.0, 1.0], size=n))
        x = solve(objective)
        moved |= np.abs(x - truth_arr) > 0.5
        stalled = stalled + 1 if int(moved.sum()) == before else 0
    exposed: list[tuple[str, str, str]] = []
    names = {i: key for key, i in index.items()}
    for i in range(n):
        if moved[i]:
            continue
        for sign in (1.0, -1.0):
            objective = np.zeros(n)
            objective[i] = sign
            x = solve(objective)
            moved |= np.abs(x - truth_arr) > 0.5
            if moved[i]:
                break
        if not moved[i]:
            exposed.append(names[i])
            if stop_after and len(exposed) >= stop_after:
                break
    return Attack(n, exposed, programs)
