"""The decision point's facts in memory, and its decision log written by group commit.

This is the one place the policy's facts are gathered: `DecisionFacts.for_request` gives
the engine (decisions.decide, docs/policy.md) everything it reads about a request.

`DecisionFacts` mirrors what the rules read (every agreement's versions and end, the
directory opt-outs in force, the written consents not withdrawn, the districts' transfer
exclusions) and the value of `fact_version` it reflects. Every statement that writes those
tables bumps `fact_version` once and names the agreements, students or districts it touched
in `fact_changes`, by statement trigger in the writer's own transaction
(migrations/005_decision_facts.sql), so the mirror is brought up to date by re-reading only
what changed; a process that starts, falls behind the kept changes or finds more than
`FULL_READ_AFTER` keys changed reads everything.

Requests that differ only in the student, whose own facts (opt-out, consents to the
requester's agreement) are alike, get one answer, decided once per version of the facts and
held as its JSON after the id (`DecisionFacts.decide`, `_asked`, `Answer`); each decision
still gets its own id and its own log row.

`DecisionLog` answers requests from the mirror and writes their log rows together: while
one group's INSERT is in flight, the next requests queue, and each answer waits for its
own row; it is sent as the very JSON its row holds (serialised once). The INSERT is one
statement that also takes `fact_version` FOR SHARE and inserts only if it still equals
the version the answers were decided at; otherwise nothing is written, the mirror is
refreshed, the group decided again and written then. A change to an agreement or a
parent's choice that committed before a decision's row therefore always reaches that
decision, on this instance or any other: no answer is stale past an agreement's end or a
parent's withdrawal. (Terms that end by date need no change at all:
the rules compare them with the decision's `today`.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from operator import attrgetter

import asyncpg

from homeroom.contracts.consent import Decision, DecisionRequest, Requester, ScreenRequest
from homeroom.storage import Connection
from homeroom.tasks import cancel
from services.consent import decisions
from services.consent.agreements import Agreement
from services.consent.decisions import ConsentGrant, Facts
from services.consent.guardianship import standing

log = logging.getLogger(__name__)

Pair = tuple[str, str]  # (student key, district id)


_LIVE = frozenset({"active", "proposed"})
FULL_READ_AFTER = 10_000  # changed keys: past this, one full read is cheaper than per-key reads
_NOTHING: frozenset[str] = frozenset()
MAX_ANSWERS_HELD = 10_000  # distinct answers kept between changes of the facts (1-1.5 KiB each)

# The fields of a request (and of its requester) that `_asked` reads as they are; it reads
# the others (lists, the requester, the student's key) one by one. A field added
# to the contract and not read there would let two different requests share an answer.
_SCALAR_FIELDS = ("action", "district_id", "school_id", "purpose", "data_date", "to_district_id")
_OTHER_FIELDS = ("elements", "class_ids", "requester", "student_key")
_REQUESTER_SCALAR_FIELDS = ("role", "subject", "organization", "agreement_id", "district_id")
if {*_SCALAR_FIELDS, *_OTHER_FIELDS} != set(DecisionRequest.model_fields) or {
    *_REQUESTER_SCALAR_FIELDS,
    "student_keys",
} != set(Requester.model_fields):
    raise TypeError("facts.py: _asked does not read every field of a decision request")
_SCALARS = attrgetter(*_SCALAR_FIELDS)
_REQUESTER_SCALARS = attrgetter(*_REQUESTER_SCALAR_FIELDS)


@dataclass(slots=True)
class DecisionFacts:
    version: int = -1
    histories: dict[str, list[Agreement]] = field(default_factory=dict)
    ended_on: dict[str, date] = field(default_factory=dict)
    opted_out: set[Pair] = field(default_factory=set)
    consents: dict[Pair, list[ConsentGrant]] = field(default_factory=dict)
    exclusions: dict[str, frozenset[str]] = field(default_factory=dict)
    # Guardianship links (issue 24): per (student, district), each person's link status there
    # (a live one over an ended one); and every person the registry has ever linked.
    guardians: dict[Pair, dict[str, str]] = field(default_factory=dict)
    registered: set[str] = field(default_factory=set)
    moves: dict[Pair, set[str]] = field(default_factory=dict)  # (student, sending district) -> receiving
    # One refresh at a time: two interleaved refreshes could leave a key read at an older
    # snapshot under the newer version's label.
    reading: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Answers decided at `answers_version`, by all the rules read (`_asked`): requests that
    # differ only in the student, whose own facts are alike, get the same answer but its id.
    answers: dict[tuple[object, ...], Answer] = field(default_factory=dict)
    answers_version: int = -1

    def for_request(self, request: DecisionRequest, today: date) -> Facts:
        requester = request.requester
        agreement_id = requester.agreement_id if requester.role == "vendor" else None
        pair = (request.student_key, request.district_id)
        parent = requester.role == "parent"
        consents = self.consents.get(pair) if agreement_id else None
        return Facts(
            today=today,
            history=self.histories.get(agreement_id, ()) if agreement_id else (),
            ended_on=self.ended_on.get(agreement_id) if agreement_id else None,
            directory_opt_out=pair in self.opted_out,
            # only a vendor's consents to its own agreement: the rules read no other
            # (decisions.consented_elements), and answers held are shared across the rest
            consents=tuple(c for c in consents if c.recipient == agreement_id) if consents else (),
            not_transferable=self.exclusions.get(request.district_id, _NOTHING),
            guardianship=self._standing(requester.subject or "", request.student_key, request.district_id)
            if parent
            else None,
            guardian_registered=parent and (requester.subject or "") in self.registered,
        )

    def _standing(self, subject: str, key: str, district_id: str) -> str | None:
        return standing(
            district_id,
            lambda d: self.guardians.get((key, d), {}).get(subject),
            lambda d: self.moves.get((key, d), ()),
        )

    def decide(self, requests: Sequence[DecisionRequest], now: datetime) -> list[Answer]:
        """Each request's answer (without its id), each distinct one decided once at this
        version of the facts: a batch for one agreement is mostly a few answers."""
        if self.answers_version != self.version or len(self.answers) > MAX_ANSWERS_HELD:
            self.answers, self.answers_version = {}, self.version
        today = now.date()
        answered = []
        for request in requests:
            facts = self.for_request(request, today)
            asked = _asked(request, facts)
            answer = self.answers.get(asked) if asked is not None else None
            if answer is None:
                answer = Answer.of(decisions.decide(request, facts))
                if asked is not None:
                    self.answers[asked] = answer
            answered.append(answer)
        return answered

    def screen(self, screen: ScreenRequest, now: datetime) -> list[str]:
        """The students of `screen` a read would release nothing to (or not all of `require`).
        The rules see a student only through the facts below and the school, so each distinct
        (school, opt-out, consents) is decided once: a district of 50,000 takes a few decisions."""
        today = now.date()
        district = screen.district_id
        own = set(screen.requester.student_keys)  # a parent's children: the one rule that reads the key
        parent = screen.requester.role == "parent"
        subject = screen.requester.subject or ""
        answers: dict[tuple[object, ...], bool] = {}
        withheld: list[str] = []
        for student_key, school_id, *rest in screen.students:
            class_ids = rest[0] if rest else None
            pair = (student_key, district)
            same = (
                school_id,
                tuple(class_ids) if class_ids is not None else None,
                student_key in own,
                # ... and the parent's guardianship standing in this district (issue 24)
                self._standing(subject, student_key, district) if parent and student_key in own else None,
                pair in self.opted_out,
                tuple(self.consents.get(pair, ())),
            )
            if same not in answers:
                request = screen.request_for(student_key, school_id, class_ids)
                answers[same] = screen.releases(decisions.decide(request, self.for_request(request, today)))
            if not answers[same]:
                withheld.append(student_key)
        return withheld

    # --- loading -------------------------------------------------------------------------

    async def load(self, conn: Connection) -> None:
        """Everything, in one snapshot."""
        async with self.reading, conn.transaction(isolation="repeatable_read", readonly=True):
            version = await conn.fetchval("SELECT version FROM fact_version")
            await self._read(conn, None, None, None)
            self.version = version

    async def refresh(self, conn: Connection) -> None:
        """Re-read what changed since `version` (or everything, if those changes are no
        longer kept), in one snapshot."""
        async with self.reading, conn.transaction(isolation="repeatable_read", readonly=True):
            state = await conn.fetchrow("SELECT version, pruned_through FROM fact_version")
            assert state is not None
            version = state["version"]
            if version == self.version:
                return
            rows = await conn.fetch(
                """SELECT agreement_id, student_key, district_id FROM fact_changes WHERE version > $1
                   LIMIT $2""",
                self.version,
                FULL_READ_AFTER + 1,
            )
            if self.version < state["pruned_through"] or len(rows) > FULL_READ_AFTER:
                self.histories, self.ended_on, self.opted_out, self.consents, self.exclusions = {}, {}, set(), {}, {}
                self.guardians, self.registered, self.moves = {}, set(), {}
                await self._read(conn, None, None, None)
            else:
                agreements = {r["agreement_id"] for r in rows if r["agreement_id"]}
                pairs = {(r["student_key"], r["district_id"]) for r in rows if r["student_key"]}
                districts = {r["district_id"] for r in rows if r["district_id"] and not r["student_key"]}
                await self._read(conn, agreements, pairs, districts)
            self.version = version

    async def _read(
        self, conn: Connection, agreements: set[str] | None, pairs: set[Pair] | None, districts: set[str] | None
    ) -> None:
        """Read the given keys (None: all of them) and replace what is held for them."""
        if agreements is None or agreements:
            rows = await _fetch_keys(conn, _VERSIONS, agreements)
            ends = await _fetch_keys(conn, _ENDS, agreements)
            for agreement_id in agreements or ():
                self.histories.pop(agreement_id, None)
                self.ended_on.pop(agreement_id, None)
            for r in rows:
                version = Agreement.model_validate_json(r["document"])
                self.histories.setdefault(version.id, []).append(version)
            self.ended_on.update({r["agreement_id"]: r["ended_on"] for r in ends})
        if pairs is None or pairs:
            opted = await _fetch_pairs(conn, _OPTED_OUT, pairs)
            consents = await _fetch_pairs(conn, _CONSENTS, pairs)
            links = await _fetch_pairs(conn, _LINKS, pairs)
            moved = await _fetch_pairs(conn, _MOVES, pairs)
            self.opted_out.difference_update(pairs or ())
            for pair in pairs or ():
                self.consents.pop(pair, None)
                self.guardians.pop(pair, None)
                self.moves.pop(pair, None)
            for r in moved:
                self.moves.setdefault((r["student_key"], r["district_id"]), set()).add(r["to_district_id"])
            for r in links:
                held = self.guardians.setdefault((r["student_key"], r["district_id"]), {})
                if held.get(r["subject"]) not in _LIVE or r["status"] in _LIVE:  # a live link wins
                    held[r["subject"]] = r["status"]
                self.registered.add(r["subject"])
            self.opted_out.update((r["student_key"], r["district_id"]) for r in opted)
            for r in consents:
                self.consents.setdefault((r["student_key"], r["district_id"]), []).append(
                    ConsentGrant(
                        consent_id=str(r["consent_id"]),
                        recipient=r["recipient"],
                        elements=frozenset(r["elements"]),
                        purpose=r["purpose"],
                        valid_until=r["valid_until"],
                    )
                )
        if districts is None or districts:
            rows = await _fetch_keys(conn, _EXCLUSIONS, districts)
            for district_id in districts or ():
                self.exclusions.pop(district_id, None)
            self.exclusions.update({r["district_id"]: frozenset(r["elements"]) for r in rows})


def _asked(request: DecisionRequest, facts: Facts) -> tuple[object, ...] | None:
    """All the rules read to answer `request` on `facts` but the student's key, which they read
    only for a parent (never answered from memory, None): every field of the request and its
    requester, and the student's own facts, the opt-out and the consents. The facts' other
    fields (the agreement's versions and end, the district's exclusions) are fixed by the
    request's fields at one version of the facts."""
    requester = request.requester
    if requester.role == "parent":
        return None
    return (
        _SCALARS(request),
        tuple(request.elements),
        None if request.class_ids is None else tuple(request.class_ids),
        _REQUESTER_SCALARS(requester),
        tuple(requester.student_keys),
        facts.directory_opt_out,
        tuple(facts.consents),
        facts.today,
    )


# The facts' reads. Each takes the keys to read ($1; pairs: student keys $1, districts $2)
# and, last, true to read every row instead.
_VERSIONS = """SELECT document FROM agreement_versions WHERE $2 OR agreement_id = ANY($1::text[])
    ORDER BY agreement_id, version"""
_ENDS = "SELECT agreement_id, ended_on FROM agreement_ends WHERE $2 OR agreement_id = ANY($1::text[])"
_EXCLUSIONS = "SELECT district_id, elements FROM transfer_exclusions WHERE $2 OR district_id = ANY($1::text[])"
_OPTED_OUT = """SELECT o.student_key, o.district_id FROM directory_opt_outs o
    WHERE o.opted_out AND ($3 OR (o.student_key, o.district_id) IN (SELECT * FROM unnest($1::text[], $2::text[])))"""
_CONSENTS = """SELECT c.student_key, c.district_id, c.consent_id, c.recipient, c.elements, c.purpose, c.valid_until
    FROM written_consents c
    WHERE c.withdrawn_at IS NULL AND ($3 OR (c.student_key, c.district_id) IN
        (SELECT * FROM unnest($1::text[], $2::text[])))"""
_LINKS = """SELECT g.student_key, g.district_id, g.subject, g.status FROM guardianships g
    WHERE $3 OR (g.student_key, g.district_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
    ORDER BY g.linked_at, g.link_id"""
_MOVES = """SELECT m.student_key, m.district_id, m.to_district_id FROM student_moves m
    WHERE $3 OR (m.student_key, m.district_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))"""


async def _fetch_keys(conn: Connection, sql: str, keys: set[str] | None) -> list[asyncpg.Record]:
    """`sql`'s rows for these ids (None: every row)."""
    return await conn.fetch(sql, sorted(keys or ()), keys is None)


async def _fetch_pairs(conn: Connection, sql: str, pairs: set[Pair] | None) -> list[asyncpg.Record]:
    """`sql`'s rows for these (student key, district) pairs (None: every row)."""
    wanted = sorted(pairs or ())
    return await conn.fetch(sql, [p[0] for p in wanted], [p[1] for p in wanted], pairs is None)


# The group's rows go in only while fact_version still says what the answers were decided
# on; FOR SHARE holds off any writer's bump until the statement commits. (The requests as one
# JSON array, split by `jsonb_array_elements`, cost PostgreSQL 3-4 µs more per row than this
# saves in Python.)
_LOG = """WITH v AS (SELECT version FROM fact_version FOR SHARE),
    logged AS (
        INSERT INTO decisions (decision_id, request, answer, allow, agreement_id)
        SELECT d.id, d.request::jsonb, d.answer::jsonb, d.allow, d.agreement_id
        FROM unnest($2::uuid[], $3::text[], $4::text[], $5::bool[], $6::text[])
            AS d(id, request, answer, allow, agreement_id)
        WHERE (SELECT version FROM v) = $1
        RETURNING 1)
    SELECT (SELECT version FROM v) AS version, (SELECT count(*) FROM logged) AS logged"""
_ID_HEAD = '{"decision_id":"'  # `Decision`'s first field: its JSON starts so


@dataclass(frozen=True, slots=True)
class Answer:
    """A decision but its id: what the log row and the caller need of it, and its JSON after
    the id, shared by every request decided alike."""

    allow: bool
    denial: str | None
    agreement_id: str | None
    after_id: str

    @classmethod
    def of(cls, decision: Decision) -> Answer:
        text = decision.model_dump_json()
        head = _ID_HEAD + decision.decision_id
        if not text.startswith(head):
            raise ValueError("a decision's JSON does not start with its id")
        return cls(decision.allow, decision.denial, decision.agreement_id, text[len(head) :])

    def json(self, decision_id: str) -> str:
        """The answer with this id, as the caller is sent it and its log row holds it."""
        return _ID_HEAD + decision_id + self.after_id


@dataclass(frozen=True, slots=True)
class Logged:
    """The answers to one call, each logged: what they were, and the JSON the caller is sent,
    byte for byte as each row holds it."""

    answers: list[Answer]
    json: list[str]


@dataclass(slots=True)
class _Pending:
    requests: Sequence[DecisionRequest]
    now: datetime
    answers: list[Answer]
    version: int
    answered: asyncio.Future[Logged]


class DecisionLog:
    """Decides from the facts in memory; writes the decisions by group commit (see above)."""

    def __init__(self, pool: asyncpg.Pool, facts: DecisionFacts | None = None) -> None:
        self.pool = pool
        self.facts = facts or DecisionFacts()
        self._queue: list[_Pending] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.groups = 0  # statements written (tests, metrics)
        self.redecided = 0  # groups decided again because the facts moved under them

    async def start(self) -> None:
        async with self.pool.acquire() as conn:
            await self.facts.load(conn)
        self._task = asyncio.create_task(self._run(), name="consent-decision-log")

    async def stop(self) -> None:
        await cancel(self._task)
        _fail(self._queue, RuntimeError("the decision point is stopping"))

    async def decide(self, requests: Sequence[DecisionRequest], now: datetime) -> Logged:
        """Answers, returned only once every one is logged (a decision nobody can look up is
        never given), with the JSON each row holds."""
        pending = _Pending(
            requests,
            now,
            self.facts.decide(requests, now),
            self.facts.version,
            asyncio.get_running_loop().create_future(),
        )
        self._queue.append(pending)
        self._wake.set()
        return await pending.answered

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            group, self._queue = self._queue, []
            if not group:
                continue
            try:
                texts = await self._write(group)
            except asyncio.CancelledError:
                self._queue = group + self._queue
                raise
            except Exception as exc:  # the database is unreachable: these callers get an error
                log.warning("decision log not written", extra={"error": repr(exc), "decisions": len(group)})
                _fail(group, exc)
                continue
            at = 0
            for pending in group:
                n = len(pending.answers)
                if not pending.answered.done():
                    pending.answered.set_result(Logged(pending.answers, texts[at : at + n]))
                at += n

    async def _write(self, group: list[_Pending]) -> list[str]:
        """Write the group's rows; the answers' JSON, in the group's order."""
        async with self.pool.acquire() as conn:
            while True:
                version = self.facts.version
                for pending in group:
                    if pending.version != version:
                        pending.answers = self.facts.decide(pending.requests, pending.now)
                        pending.version = version
                answers = [a for p in group for a in p.answers]
                ids = decisions.new_decision_id.many(len(answers))
                texts = [a.json(i) for a, i in zip(answers, ids, strict=True)]
                result = await conn.fetchrow(
                    _LOG,
                    version,
                    ids,
                    [r.model_dump_json() for p in group for r in p.requests],
                    texts,
                    [a.allow for a in answers],
                    [a.agreement_id for a in answers],
                )
                assert result is not None
                if result["version"] == version:
                    self.groups += 1
                    return texts
                self.redecided += 1
                await self.facts.refresh(conn)


def _fail(group: list[_Pending], error: BaseException) -> None:
    for pending in group:
        if not pending.answered.done():
            pending.answered.set_exception(error)


async def prune_changes(conn: Connection, keep: int = 100_000) -> None:
    """Forget all but the last `keep` versions' changes: a process that far behind reads
    everything again."""
    async with conn.transaction():
        through = await conn.fetchval(
            "UPDATE fact_version SET pruned_through = greatest(pruned_through, version - $1) RETURNING pruned_through",
            keep,
        )
        await conn.execute("DELETE FROM fact_changes WHERE version <= $1", through)
