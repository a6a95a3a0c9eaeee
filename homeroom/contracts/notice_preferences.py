"""Records' `POST /v1/internal/notice-preferences` (role `service`): for students of one
district, the language a letter to their family should be written in, from the record's
home language. Only a language code or name travels, never the record (the incidents
service writes breach letters in it; docs/contracts.md)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

StudentKey = Annotated[str, Field(pattern=r"^stu_[a-z0-9]{1,64}$")]
MAX_KEYS = 1000


class NoticePreferencesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    district_id: str = Field(min_length=1, max_length=100)
    student_keys: list[StudentKey] = Field(min_length=1, max_length=MAX_KEYS)


class NoticePreference(BaseModel):
    home_language: str | None = None  # as the record holds it (e.g. "spa", "Spanish"); None: none, or destroyed


class NoticePreferences(BaseModel):
    district_id: str
    preferences: dict[str, NoticePreference]  # student key → preference (keys the district does not hold: absent)
