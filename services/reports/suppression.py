"""Publication rules for statewide statistics, in one place (pure: no I/O).

A statewide release (FERPA 34 CFR 99.31(b)(1)) may publish only numbers from which no
student is reasonably identifiable. The tables are counts of students by geography (state,
district, school) and by column ("all" students, or one group of a dimension: sex, grade,
a program), for several measures, each a subset of another (students enrolled ⊇ students
whose attendance is counted ⊇ students chronically absent; enrolled ⊇ suspended). They
share their margins: a district's cell is the sum of its schools' cells, the state's the
sum of its districts', and in every row "all" is the sum of each dimension's groups.

Primary suppression. A cell counting fewer than ``min_cell`` students (N, 10 by default,
set per state) is never published: it is shown as "fewer than N". A count that is 100% of
its group (the parent measure's cell) is withheld when the group has fewer than
``extreme_rate_min_group`` students (top coding; 0% is a cell below N already). A rate is
published only when its numerator and its denominator are both published.

Complementary suppression. A suppressed cell must not be recoverable from the published
ones by anyone who solves the margins' equations, knowing that a cell shown as "fewer than
N" lies in [0, N-1], that a withheld one is at least N (it would be shown as "fewer than N"
otherwise), and that a measure never exceeds its parent measure. For every suppressed cell
this module finds a *move*: an integer change of some suppressed cells, by +1 and -1, that
keeps every published value, every margin and every one of those bounds. The true table
moved by it is another table the public cannot tell from the true one, in which that cell
has another value: so its value cannot be worked out exactly. Where no move exists among the
cells already suppressed, the cheapest move is chosen (fewest further cells, school cells
before district cells before state cells, "all" cells last, then the smallest values) and
its cells are withheld too. A move's cells stay suppressed, so every move found stays valid
while more cells are suppressed: one move per cell is a proof for the whole table.

Moves have one shape: a column change Δ applied along paths of the geography.
  * Δ is a *swap* within a dimension (+1 in one group, -1 in another: "all" unchanged) or
    a *shift* (+1 in "all" and in one group of every dimension published there);
  * the path runs from a top unit down through the target's unit to the lowest level that
    publishes a column of Δ; a second path from a sibling of the top, with -Δ, keeps the
    parent's cells, or the top is the state itself;
  * the same move may be applied to several measures at once (a chronic-absence cell whose
    value equals its parent's can only move with it).
The test that plays the attacker (tests/services/reports/test_suppression.py with attacker.py) solves the
published equations with an integer program and finds no suppressed cell it can pin.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from itertools import combinations

ALL = "all"


class Level(IntEnum):
    STATE = 0
    DISTRICT = 1
    SCHOOL = 2


class Status(IntEnum):
    PUBLISHED = 0
    FEWER_THAN = 1  # primary: fewer than N students
    WITHHELD = 2  # top coded, or withheld so that a smaller cell cannot be worked out


@dataclass(frozen=True, slots=True)
class Rules:
    """The parameters a state sets (HOMEROOM_REPORTS_MIN_CELL ...), stated in every snapshot."""

    min_cell: int = 10
    extreme_rate_min_group: int = 30

    def __post_init__(self) -> None:
        if self.min_cell < 1:
            raise ValueError("min_cell must be at least 1")
        if self.extreme_rate_min_group < self.min_cell:
            raise ValueError("extreme_rate_min_group must be at least min_cell")

    def describe(self) -> dict[str, object]:
        return {
            "min_cell": self.min_cell,
            "extreme_rate_min_group": self.extreme_rate_min_group,
            "primary": f"a count of fewer than {self.min_cell} students is shown as 'fewer than {self.min_cell}'",
            "top_coding": (
                f"a count that is 100% of a group of fewer than {self.extreme_rate_min_group} students is withheld"
            ),
            "rates": "a rate is shown only when its numerator and denominator are both shown",
            "complementary": (
                "further counts are withheld so that no suppressed count can be worked out exactly from the "
                "published counts, their margins (school, district, state; group and all students) and the "
                "bounds the labels state"
            ),
        }


@dataclass(frozen=True, slots=True)
class Measure:
    name: str
    label: str
    parent: str | None = None  # this measure counts a subset of the parent's students


@dataclass(frozen=True, slots=True)
class Dimension:
    name: str
    label: str
    categories: tuple[tuple[str, str], ...]  # (code, label)
    levels: frozenset[Level]  # where its groups are published

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f"{self.name}:{code}" for code, _ in self.categories)


@dataclass(frozen=True, slots=True)
class Layout:
    """What a snapshot publishes: measures and, per level, the dimensions broken out."""

    measures: tuple[Measure, ...]
    dimensions: tuple[Dimension, ...]

    def __post_init__(self) -> None:
        names = {m.name for m in self.measures}
        for m in self.measures:
            if m.parent is not None and m.parent not in names:
                raise ValueError(f"measure {m.name}: unknown parent {m.parent}")
        for d in self.dimensions:
            # A group published at a level is published above it too (the margins must close).
            if d.levels and any(Level(lv) not in d.levels for lv in range(min(d.levels) + 1)):
                raise ValueError(f"dimension {d.name} must be published at every level above its lowest")
            if len(d.categories) < 2:
                raise ValueError(f"dimension {d.name} needs at least two groups")

    @property
    def columns(self) -> tuple[str, ...]:
        return (ALL, *(c for d in self.dimensions for c in d.columns))

    def dimensions_at(self, level: Level) -> tuple[Dimension, ...]:
        return tuple(d for d in self.dimensions if level in d.levels)

    def columns_at(self, level: Level) -> tuple[str, ...]:
        return (ALL, *(c for d in self.dimensions_at(level) for c in d.columns))

    def measure(self, name: str) -> Measure:
        return next(m for m in self.measures if m.name == name)


@dataclass(frozen=True, slots=True)
class Unit:
    key: str  # "state", a district id, "district/school"
    level: Level
    parent: int | None  # index of the parent unit; None for the state


class CannotProtect(RuntimeError):
    """No move protects this cell under the rules: the table is not published."""


@dataclass(slots=True)
class Pattern:
    """The outcome: every cell's status, and how many were suppressed for which reason."""

    layout: Layout
    units: Sequence[Unit]
    status: list[list[bytearray]]  # [measure][unit][column] -> Status
    fewer_than: int = 0
    top_coded: int = 0
    complementary: int = 0
    cells: int = 0
    moves: int = 0

    def of(self, measure: int, unit: int, column: int) -> Status:
        return Status(self.status[measure][unit][column])

    @property
    def suppressed(self) -> int:
        return self.fewer_than + self.top_coded + self.complementary


INFEASIBLE = float("inf")
_PUBLISHED, _FEWER_THAN = int(Status.PUBLISHED), int(Status.FEWER_THAN)  # plain ints: compared millions of times
LEVEL_WEIGHT = {Level.SCHOOL: 1.0, Level.DISTRICT: 8.0, Level.STATE: 10_000.0}
ALL_WEIGHT = 3.0  # an "all students" cell is worth more than a group's
BLOCKED = 1e9  # the cost of a broken bound while looking for moves another move can unblock
COMBINATION_WIDTH = 6  # first moves tried when the measures of a cell must move one after another
ROOM_TRIES = 24  # blocked moves tried with moves that lift their bounds first
ROOM_BLOCKERS = 3  # at most this many bounds lifted for one move
PARTNERS = 32  # siblings tried at once as a move's partner (a state has hundreds of districts)


@dataclass(slots=True)
class _Move:
    cost: float
    measures: tuple[int, ...]
    cells: list[tuple[int, int, int]] = field(default_factory=list)  # (unit, column, delta)
    # how it was built: (chain, partner, base delta, fixed dimension, sign), to rebuild it
    shape: tuple[list[int], int | None, dict[int, int], int | None, int] = ([], None, {}, None, 1)


class _Solver:
    """Primary then complementary suppression of one school year's tables."""

    def __init__(self, layout: Layout, units: Sequence[Unit], values: list[list[list[int]]], rules: Rules) -> None:
        self.layout, self.units, self.values, self.rules = layout, units, values, rules
        self.n = rules.min_cell
        columns = layout.columns
        self.col_index = {c: i for i, c in enumerate(columns)}
        self.n_columns = len(columns)
        self.children: list[list[int]] = [[] for _ in units]
        self._ranked: dict[int, list[int]] = {}
        for i, u in enumerate(units):
            if u.parent is not None:
                self.children[u.parent].append(i)
        self.level = [u.level for u in units]
        self.weight = [LEVEL_WEIGHT[u.level] for u in units]  # a published cell's cost by unit
        self.published = {lv: [self.col_index[c] for c in layout.columns_at(lv)] for lv in Level}
        self.published_set = {lv: set(cols) for lv, cols in self.published.items()}
        # column index -> the column indices of its dimension (a category) or None ("all")
        self.dimension_of: list[int | None] = [None] * self.n_columns
        self.dimension_columns: list[list[int]] = []
        for k, d in enumerate(layout.dimensions):
            cols = [self.col_index[c] for c in d.columns]
            self.dimension_columns.append(cols)
            for c in cols:
                self.dimension_of[c] = k
        self.dimension_levels = [d.levels for d in layout.dimensions]
        self.everywhere = [set(Level) <= d.levels for d in layout.dimensions]
        names = [m.name for m in layout.measures]
        self.parent = [names.index(m.parent) if m.parent else None for m in layout.measures]
        self.child_measures = [[j for j, p in enumerate(self.parent) if p == i] for i in range(len(names))]
        self.measure_sets = [self._connected_sets(i) for i in range(len(names))]
        self.status = [[bytearray(self.n_columns) for _ in units] for _ in layout.measures]
        self.certified = [[bytearray(self.n_columns) for _ in units] for _ in layout.measures]
        self.pattern = Pattern(layout, units, self.status)
        self._permissive = False  # while looking for moves blocked by a bound that another move can lift
        # _best_move's cheapest move so far: a move that reaches this cost is given up early.
        # Costs only add non-negative terms, so this changes no choice (the first cheapest wins).
        self._bound = INFEASIBLE

    # --- structure ---------------------------------------------------------------------------

    def _connected_sets(self, m: int) -> list[tuple[int, ...]]:
        """Sets of measures containing m, connected in the measure tree, smallest first."""
        n = len(self.parent)
        found = []
        for size in range(1, n + 1):
            for combo in combinations(range(n), size):
                if m in combo and self._connected(set(combo)):
                    found.append(combo)
        return found

    def _connected(self, members: set[int]) -> bool:
        roots = [i for i in members if self.parent[i] not in members]
        return len(roots) == 1

    def _siblings(self, u: int) -> list[int]:
        """The unit's siblings, smallest first (the likeliest to hold suppressed cells already,
        so the cheapest partners of a move)."""
        p = self.units[u].parent
        if p is None:
            return []
        ranked = self._ranked.get(p)
        if ranked is None:
            ranked = self._ranked[p] = sorted(self.children[p], key=lambda s: (self.values[0][s][0], s))
        return [s for s in ranked if s != u]

    # --- primary -----------------------------------------------------------------------------

    def primary(self) -> list[tuple[int, int, int]]:
        targets = []
        t2 = self.rules.extreme_rate_min_group
        for m in range(len(self.layout.measures)):
            p = self.parent[m]
            for u, unit in enumerate(self.units):
                row, status = self.values[m][u], self.status[m][u]
                for c in self.published[unit.level]:
                    v = row[c]
                    if v < self.n:
                        status[c] = Status.FEWER_THAN
                        self.pattern.fewer_than += 1
                    elif p is not None and v == self.values[p][u][c] and v < t2:
                        status[c] = Status.WITHHELD
                        self.pattern.top_coded += 1
                    else:
                        continue
                    targets.append((m, u, c))
                self.pattern.cells += len(self.published[unit.level])
        # Schools first, then districts, then the state: local moves are found first.
        targets.sort(key=lambda t: (-self.level[t[1]], t[1], t[0], t[2]))
        return targets

    # --- complementary ---------------------------------------------------------------------

    def protect(self, targets: list[tuple[int, int, int]]) -> None:
        for m, u, c in targets:
            if self.certified[m][u][c]:
                continue
            moves = self._certificate(m, u, c)
            if moves is None:
                unit = self.units[u]
                raise CannotProtect(
                    f"no move protects {self.layout.measures[m].name} of {unit.key} in column "
                    f"{self.layout.columns[c]} under the rules"
                )
            self._apply(moves)
            self.pattern.moves += 1

    def _apply(self, moves: Sequence[_Move]) -> None:
        """The certificate's cells that end up changed are suppressed, and so protected: the
        table changed by the whole certificate is one the public cannot tell apart."""
        for (m, u, c), d in _net(moves).items():
            if d == 0:
                continue
            if self.status[m][u][c] == Status.PUBLISHED:
                self.status[m][u][c] = Status.WITHHELD
                self.pattern.complementary += 1
            self.certified[m][u][c] = 1

    def _certificate(self, m: int, u: int, c: int) -> list[_Move] | None:
        """A move of one set of measures together; failing that, a sequence of moves, one per
        measure that must change with the target, each found on the table as the previous
        ones left it (so the bounds between measures hold for the sequence as a whole)."""
        single = self._best_move(m, u, c, (1, -1))
        if single is not None:
            return [single]
        best: list[_Move] | None = None
        for d in (1, -1):
            together = self._moving_with(m, u, c, d)
            if len(together) == 1:
                continue
            # Parents make room first when the target grows, children when it shrinks.
            order = sorted(together, key=self._depth, reverse=d < 0)
            for first in self._candidates(order[0], u, c, d, together):
                sequence = self._sequence(first, order[1:], u, c, d, together)
                if sequence is not None and (best is None or _cost(sequence) < _cost(best)):
                    best = sequence
        return best or self._with_room(m, u, c)

    def _with_room(self, m: int, u: int, c: int) -> list[_Move] | None:
        """A move blocked by bounds (a cell at its bound, a measure at its parent's value) after
        moves that first lift those bounds: e.g. a school total of exactly N that must drop by
        one is first raised by one by a move with a third school."""
        self._permissive = True
        try:
            blocked = [mv for mv in self._all_moves(m, u, c) if BLOCKED <= mv.cost < (ROOM_BLOCKERS + 1) * BLOCKED]
        finally:
            self._permissive = False
        blocked.sort(key=lambda mv: mv.cost)  # fewest broken bounds first, then cheapest
        target = (m, u, c)
        for main in blocked[:ROOM_TRIES]:
            rooms: list[_Move] = []
            try:
                for bm, bu, bc, need in self._blockers(main):
                    if (bm, bu, bc) == target:
                        break
                    room = self._best_move(bm, bu, bc, (need,))
                    if room is None:
                        break
                    rooms.append(room)
                    self._shift(room, 1)
                else:
                    again = self._evaluate(main.measures, *main.shape)
                    if again is not None and _net([*rooms, again]).get(target, 0) != 0:
                        return [*rooms, again]
            finally:
                for room in rooms:
                    self._shift(room, -1)
        return None

    def _blockers(self, move: _Move) -> list[tuple[int, int, int, int]]:
        """(measure, unit, column, change that lifts it) for every bound the move breaks."""
        found = []
        n = self.n
        for u, c, d in move.cells:
            for m in move.measures:
                v = self.values[m][u][c] + d
                st = self.status[m][u][c]
                if v < 0 or (st != Status.FEWER_THAN and v < n):
                    found.append((m, u, c, 1))  # raise it first, so that it can drop
                elif st == Status.FEWER_THAN and v >= n:
                    found.append((m, u, c, -1))
                p = self.parent[m]
                if p is not None and p not in move.measures and v > self.values[p][u][c]:
                    found.append((p, u, c, 1))
                for ch in self.child_measures[m]:
                    if ch not in move.measures and v < self.values[ch][u][c]:
                        found.append((ch, u, c, -1))
        return found

    def _all_moves(self, m: int, u: int, c: int) -> Iterator[_Move]:
        for tier in self._geometries(u):
            for measures in self.measure_sets[m]:
                for chain, partner in tier:
                    for base, fixed_dim in self._deltas(c):
                        for sign in (1, -1):
                            move = self._evaluate(measures, chain, partner, base, fixed_dim, sign)
                            if move is not None:
                                yield move

    def _sequence(
        self, first: _Move, rest: list[int], u: int, c: int, d: int, together: tuple[int, ...]
    ) -> list[_Move] | None:
        moves = [first]
        self._shift(first, 1)
        try:
            for t in rest:
                found = self._candidates(t, u, c, d, together)
                if not found:
                    return None
                moves.append(found[0])
                self._shift(found[0], 1)
            return moves
        finally:
            for move in moves:
                self._shift(move, -1)

    def _shift(self, move: _Move, sign: int) -> None:
        """Apply (sign 1) or undo (sign -1) a move's change to the working values."""
        for m in move.measures:
            rows = self.values[m]
            for u, c, d in move.cells:
                rows[u][c] += sign * d

    def _depth(self, m: int) -> int:
        depth, p = 0, self.parent[m]
        while p is not None:
            depth, p = depth + 1, self.parent[p]
        return depth

    def _moving_with(self, m: int, u: int, c: int, d: int) -> tuple[int, ...]:
        """The measures that must change by d at (u, c) when measure m does: a parent whose
        value equals the child's must grow with it, a child equal to its parent shrink with it."""
        found = [m]
        todo = [m]
        while todo:
            t = todo.pop()
            v = self.values[t][u][c]
            related = [self.parent[t]] if d > 0 else self.child_measures[t]
            for r in related:
                if r is not None and r not in found and self.values[r][u][c] == v:
                    found.append(r)
                    todo.append(r)
        return tuple(sorted(found))

    def _candidates(self, t: int, u: int, c: int, d: int, together: tuple[int, ...]) -> list[_Move]:
        """The cheapest moves of measure t (with any measures outside ``together`` that must
        follow it) that change the target cell by d, from the nearest tier that has any."""
        sets = [s for s in self.measure_sets[t] if set(s) & set(together) == {t}]
        found: list[_Move] = []
        for tier in self._geometries(u):
            for measures in sets:
                for chain, partner in tier:
                    for base, fixed_dim in self._deltas(c):
                        move = self._evaluate(measures, chain, partner, base, fixed_dim, d)
                        if move is not None:
                            found.append(move)
            if len(found) >= COMBINATION_WIDTH:
                break
        found.sort(key=lambda mv: mv.cost)
        return found[:COMBINATION_WIDTH]

    def _cell_cost(self, measures: tuple[int, ...], u: int, c: int, d: int) -> float:
        """What moving this cell by d costs in every measure of the set, or INFEASIBLE if a
        bound the public knows would break (bounds between the set's measures hold: they
        move alike). The hottest function of a snapshot: plain ints and locals only."""
        cost = 0.0
        n = self.n
        values = self.values
        status = self.status
        parents = self.parent
        for m in measures:
            v = values[m][u][c]
            nv = v + d
            st = status[m][u][c]
            broken = nv < 0 or (nv >= n if st == _FEWER_THAN else nv < n)
            if not broken:
                p = parents[m]
                broken = p is not None and p not in measures and nv > values[p][u][c]
                if not broken:
                    for ch in self.child_measures[m]:
                        if ch not in measures and nv < values[ch][u][c]:
                            broken = True
                            break
            if broken:
                if not self._permissive:
                    return INFEASIBLE
                cost += BLOCKED
            if st == _PUBLISHED:
                cost += self.weight[u] * (ALL_WEIGHT if c == 0 else 1.0) + v * 1e-7
        return cost

    def _row_cost(
        self, measures: tuple[int, ...], u: int, delta: dict[int, int], sign: int, so_far: float = 0.0
    ) -> float:
        """The row's cost; INFEASIBLE as soon as so_far plus it reaches self._bound (a move
        costing that much cannot be the cheapest: costs are never negative)."""
        published = self.published_set[self.level[u]]
        cost = 0.0
        bound = self._bound
        for c, d in delta.items():
            if c in published:
                cost += self._cell_cost(measures, u, c, d * sign)
                if cost == INFEASIBLE or so_far + cost >= bound:
                    return INFEASIBLE
        return cost

    def _needs_descent(self, u: int, delta: dict[int, int]) -> bool:
        if not self.children[u]:
            return False
        below = self.published_set[Level(self.level[u] + 1)]
        return any(c in below for c in delta)

    def _descend(
        self, measures: tuple[int, ...], u: int, delta: dict[int, int], sign: int, cells: list[tuple[int, int, int]]
    ) -> float:
        """Carry the change of unit u down to the lowest level publishing one of Δ's columns,
        through the cheapest child at each level; appends the cells; returns their cost."""
        total = 0.0
        while self._needs_descent(u, delta):
            # Children are one level below u: the same columns are published in each of them.
            published = self.published_set[Level(self.level[u] + 1)]
            columns = [(c, d * sign) for c, d in delta.items() if c in published]
            # Each child is costed along the columns: _cell_cost with its arguments in that order.
            cost = lambda ms, c, child, d: self._cell_cost(ms, child, c, d)  # noqa: E731
            best, best_cost = self._cheapest(measures, self.children[u], columns, self._bound, cost)
            if best < 0:
                return INFEASIBLE
            cells.extend((best, c, d) for c, d in columns)
            total += best_cost
            u = best
        return total

    def _deltas(self, c: int) -> Iterator[tuple[dict[int, int], int | None]]:
        """Column changes that move column c: swaps within its dimension, and the shift
        (second item: the dimension whose group is fixed, or None for "all")."""
        k = self.dimension_of[c]
        if k is not None:
            for other in self.dimension_columns[k]:
                if other != c:
                    yield {c: 1, other: -1}, None
        yield {0: 1, **({c: 1} if k is not None else {})}, k

    def _shift_groups(
        self, measures: tuple[int, ...], fixed: list[tuple[int, int]], base: dict[int, int], fixed_dim: int | None
    ) -> dict[int, int] | None:
        """The shift's Δ: for each dimension not fixed, the group cheapest to move in every fixed
        unit (unit, sign) where it is published; None if some dimension has no feasible group."""
        delta = dict(base)
        least = 0.0  # what the move will cost at least: the chosen groups' cells
        for k, cols in enumerate(self.dimension_columns):
            if k == fixed_dim:
                continue
            # A dimension published at every level moves in every fixed unit: fixed itself.
            where = (
                fixed if self.everywhere[k] else [(u, s) for u, s in fixed if self.level[u] in self.dimension_levels[k]]
            )
            if not where:
                continue
            best, best_cost = self._cheapest(measures, cols, where, INFEASIBLE, self._cell_cost)
            if best < 0:
                return None
            delta[best] = 1
            least += best_cost
            # A move that cannot be cheaper than _best_move's best so far is not built (the
            # margin covers the rounding of a sum taken in another order).
            if least > self._bound * (1 + 1e-9):
                return None
        return delta

    def _cheapest(
        self,
        measures: tuple[int, ...],
        candidates: list[int],
        along: list[tuple[int, int]],
        bound: float,
        cost: Callable[[tuple[int, ...], int, int, int], float],
    ) -> tuple[int, float]:
        """The candidate whose cells cost least, and that cost; (-1, bound) when none costs less
        than bound. A candidate's cells are one per (item, change) of ``along``, each costing
        ``cost(measures, item, candidate, change)``: _cell_cost itself when the candidates are a
        dimension's groups and along the units a shift moves them in, _cell_cost with unit and
        column swapped when the candidates are the children a change descends through and along
        its columns. A candidate is given up once it costs as much as the cheapest so far (costs
        are never negative), and a free one ends the search. Hot (a shift's every dimension): no
        call per candidate but the cells'."""
        best, best_cost = -1, bound
        for x in candidates:
            total = 0.0
            for y, d in along:
                total += cost(measures, y, x, d)
                if total >= best_cost:
                    break
            if total < best_cost:
                best, best_cost = x, total
                if total == 0:
                    break
        return best, best_cost

    def _geometries(self, u: int) -> Iterator[list[tuple[list[int], int | None]]]:
        """Tiers of (chain from a top unit down to u, the top's sibling or None for the state)."""
        chain = [u]
        while True:
            top = chain[0]
            siblings = self._siblings(top)
            # Many siblings (a state's districts): the smallest PARTNERS first, the next ones
            # only when none of those gives a move. Any move is a proof; the order spares time.
            if len(siblings) > 2 * PARTNERS:
                for start in range(0, len(siblings), PARTNERS):
                    yield [(list(chain), s) for s in siblings[start : start + PARTNERS]]
            elif siblings:
                yield [(list(chain), s) for s in siblings]
            parent = self.units[top].parent
            if parent is None:
                yield [(list(chain), None)]
                return
            chain.insert(0, parent)

    def _best_move(self, m: int, u: int, c: int, signs: tuple[int, ...]) -> _Move | None:
        """The cheapest single move (one set of measures) of the nearest tier that has one."""
        try:
            for tier in self._geometries(u):
                best: _Move | None = None
                self._bound = INFEASIBLE
                for measures in self.measure_sets[m]:
                    for chain, partner in tier:
                        for base, fixed_dim in self._deltas(c):
                            for sign in signs:
                                move = self._evaluate(measures, chain, partner, base, fixed_dim, sign)
                                if move is not None and (best is None or move.cost < best.cost):
                                    best = move
                                    self._bound = move.cost
                                    if move.cost == 0:
                                        return best
                    if best is not None:  # a larger set of measures only adds cells
                        break
                if best is not None:
                    return best
            return None
        finally:
            self._bound = INFEASIBLE

    def _evaluate(
        self,
        measures: tuple[int, ...],
        chain: list[int],
        partner: int | None,
        base: dict[int, int],
        fixed_dim: int | None,
        sign: int,
    ) -> _Move | None:
        fixed = [(w, sign) for w in chain] + ([(partner, -sign)] if partner is not None else [])
        delta = self._shift_groups(measures, fixed, base, fixed_dim) if 0 in base else base
        if delta is None:
            return None
        cells: list[tuple[int, int, int]] = []
        cost = 0.0
        for w, s in fixed:
            row = self._row_cost(measures, w, delta, s, cost)
            if row == INFEASIBLE:
                return None
            cost += row
            published = self.published_set[self.level[w]]
            cells.extend((w, col, d * s) for col, d in delta.items() if col in published)
        for bottom, s in ((chain[-1], sign), *(((partner, -sign),) if partner is not None else ())):
            extra = self._descend(measures, bottom, delta, s, cells)
            if extra == INFEASIBLE:
                return None
            cost += extra
            if cost >= self._bound:
                return None
        return _Move(cost, measures, cells, (chain, partner, base, fixed_dim, sign))


def _cost(moves: Sequence[_Move]) -> float:
    return sum(m.cost for m in moves)


def _net(moves: Sequence[_Move]) -> dict[tuple[int, int, int], int]:
    change: dict[tuple[int, int, int], int] = {}
    for move in moves:
        for m in move.measures:
            for u, c, d in move.cells:
                change[(m, u, c)] = change.get((m, u, c), 0) + d
    return change


def suppress(
    layout: Layout, units: Sequence[Unit], values: list[list[list[int]]], rules: Rules, *, complementary: bool = True
) -> Pattern:
    """Apply primary and complementary suppression to one school year's tables.

    ``units`` list the state first, then districts and schools (each after its parent);
    ``values[m][u][c]`` is measure m of unit u in column c of ``layout.columns`` (columns a
    level does not publish are ignored). Raises CannotProtect if some cell has no move.
    ``complementary=False`` stops after primary suppression: only for showing what an
    attacker recovers without it (tests)."""
    if not units or units[0].parent is not None:
        raise ValueError("the first unit must be the state")
    for i, unit in enumerate(units):
        if unit.parent is not None and not (0 <= unit.parent < i and units[unit.parent].level == unit.level - 1):
            raise ValueError(f"unit {unit.key}: its parent must come before it, one level up")
    solver = _Solver(layout, units, [[list(row) for row in m] for m in values], rules)
    targets = solver.primary()
    if complementary:
        solver.protect(targets)
    return solver.pattern


def rate_published(pattern: Pattern, measure: int, parent: int, unit: int, column: int) -> bool:
    """A rate is shown only when its numerator and its denominator are both shown."""
    return (
        pattern.of(measure, unit, column) == Status.PUBLISHED and pattern.of(parent, unit, column) == Status.PUBLISHED
    )


def extreme(numerator: int, denominator: int, group: int, rules: Rules) -> bool:
    """A rate at 0% or 100% of a group under the second threshold (top and bottom coding);
    used for rates whose numerator is not a published count (the attendance rate's days)."""
    return group < rules.extreme_rate_min_group and (numerator == 0 or numerator == denominator)
