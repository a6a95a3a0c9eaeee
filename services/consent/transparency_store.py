"""SQL of a district's transparency answers (migrations/007_transparency.sql)."""

from __future__ import annotations

from datetime import date
from typing import Any

from homeroom.storage import Connection


async def put_answer(conn: Connection, district_id: str, question: int, text: str, reviewed_on: date, by: str) -> None:
    await conn.execute(
        """INSERT INTO transparency_answers (district_id, question, text, reviewed_on, reviewed_by)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (district_id, question) DO UPDATE
           SET text = EXCLUDED.text, reviewed_on = EXCLUDED.reviewed_on, reviewed_by = EXCLUDED.reviewed_by""",
        district_id,
        question,
        text,
        reviewed_on,
        by,
    )


async def answers(conn: Connection, district_id: str) -> dict[int, dict[str, Any]]:
    rows = await conn.fetch("SELECT * FROM transparency_answers WHERE district_id = $1 ORDER BY question", district_id)
    return {
        r["question"]: {"text": r["text"], "reviewed_on": r["reviewed_on"].isoformat(), "reviewed_by": r["reviewed_by"]}
        for r in rows
    }
