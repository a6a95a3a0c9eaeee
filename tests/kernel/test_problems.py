"""RFC 9457 problem responses, as a client of a real FastAPI app receives them."""

from __future__ import annotations

import logging
from datetime import date
from typing import Annotated, Any

import pytest
from fastapi import FastAPI, HTTPException, Query
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from homeroom.auth import AuthenticationError
from homeroom.problems import (
    FieldError,
    Problem,
    field_errors_from_pydantic,
    install_problem_handlers,
    json_pointer,
    problem_type,
)
from homeroom.registry import load_spec
from homeroom.service import create_app

PROBLEM_JSON = "application/problem+json"


class Student(BaseModel):
    local_id: str = Field(min_length=1)
    birth_date: date

    @field_validator("birth_date")
    @classmethod
    def not_in_future(cls, value: date) -> date:
        if value > date.today():
            raise PydanticCustomError("date.not_in_future", "A birth date cannot be in the future")
        return value


class Roster(BaseModel):
    district: str
    students: list[Student]


def make_app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/rosters")
    async def submit(roster: Roster) -> dict[str, int]:
        return {"accepted": len(roster.students)}

    @app.get("/submissions")
    async def submissions(limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, int]:
        return {"limit": limit}

    @app.get("/agreements/{agreement_id}")
    async def agreement(agreement_id: str) -> None:
        raise HTTPException(404, f"no agreement {agreement_id}")

    @app.get("/submissions/{submission_id}/report")
    async def report(submission_id: str) -> None:
        raise Problem(
            409,
            "Submission still processing",
            "The report is ready when the submission has been processed.",
            type=problem_type("submission-processing"),
            instance=f"/submissions/{submission_id}",
            headers={"Retry-After": "5"},
            extensions={"submission_id": submission_id},
        )

    @app.get("/whoami")
    async def whoami() -> None:
        raise AuthenticationError("expired", "token has expired")

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("connection to postgres://homeroom:hunter2@db failed")

    return app


@pytest.fixture(scope="module")
def client() -> Any:
    with TestClient(make_app()) as c:
        yield c


def test_validation_errors_list_every_field_with_its_rule(client: TestClient) -> None:
    response = client.post(
        "/rosters",
        json={
            "district": "d-1",
            "students": [
                {"local_id": "1001", "birth_date": "2012-04-01"},
                {"local_id": "", "birth_date": "not a date"},
                {"local_id": "1003", "birth_date": "2999-01-01"},
            ],
        },
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["type"] == "/problems/validation"
    assert body["status"] == 422
    assert body["detail"] == "3 fields failed validation."
    by_field = {e["field"]: e for e in body["errors"]}
    assert set(by_field) == {"/students/1/local_id", "/students/1/birth_date", "/students/2/birth_date"}
    assert by_field["/students/1/local_id"]["rule"] == "string_too_short"
    assert by_field["/students/1/birth_date"]["rule"].startswith("date_")
    # A validator's own rule id travels as the rule, its sentence as the message.
    assert by_field["/students/2/birth_date"] == {
        "field": "/students/2/birth_date",
        "rule": "date.not_in_future",
        "message": "A birth date cannot be in the future",
    }


def test_validation_errors_do_not_echo_submitted_values(client: TestClient) -> None:
    # The submitted values are student data; an error body is not a place to disclose them.
    response = client.post("/rosters", json={"district": "d-1", "students": [{"local_id": "", "birth_date": "Jo"}]})
    assert response.status_code == 422
    assert "Jo" not in response.text
    assert "input" not in response.json()["errors"][0]


def test_a_missing_field_and_a_query_parameter_are_named(client: TestClient) -> None:
    missing = client.post("/rosters", json={"students": []}).json()
    assert missing["errors"] == [{"field": "/district", "rule": "missing", "message": "Field required"}]
    query = client.get("/submissions", params={"limit": 0}).json()
    assert query["errors"][0]["field"] == "query.limit"
    assert query["errors"][0]["rule"] == "greater_than_equal"


def test_an_unparseable_body_points_at_the_whole_document(client: TestClient) -> None:
    response = client.post("/rosters", content=b'{"district": ', headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == ""
    assert response.json()["errors"][0]["rule"] == "json_invalid"


def test_a_raised_problem_keeps_its_members_and_headers(client: TestClient) -> None:
    response = client.get("/submissions/sub-42/report")
    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["retry-after"] == "5"
    assert response.json() == {
        "type": "/problems/submission-processing",
        "title": "Submission still processing",
        "status": 409,
        "detail": "The report is ready when the submission has been processed.",
        "instance": "/submissions/sub-42",
        "submission_id": "sub-42",
    }


def test_http_exceptions_and_unknown_routes_are_problems(client: TestClient) -> None:
    raised = client.get("/agreements/dsa-9")
    assert raised.status_code == 404
    assert raised.json() == {"type": "about:blank", "title": "Not Found", "status": 404, "detail": "no agreement dsa-9"}
    unknown = client.get("/no/such/route")
    assert unknown.headers["content-type"] == PROBLEM_JSON
    assert unknown.json() == {"type": "about:blank", "title": "Not Found", "status": 404}
    wrong_method = client.delete("/rosters")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "POST"  # the exception's headers survive


def test_auth_errors_render_through_the_same_path(client: TestClient) -> None:
    response = client.get("/whoami")
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_JSON
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert response.json()["reason"] == "expired"


def test_an_unhandled_error_is_a_500_that_leaks_nothing_and_is_logged(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="homeroom.problems"):
        response = client.get("/crash")
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    for secret in ("hunter2", "postgres", "RuntimeError", "Traceback"):
        assert secret not in response.text
    assert body["type"] == "/problems/internal-error"
    assert body["instance"].startswith("urn:uuid:")
    # The operator finds the traceback by the id the client quotes.
    logged = [r for r in caplog.records if getattr(r, "problem_instance", None) == body["instance"]]
    assert len(logged) == 1
    assert logged[0].exc_info is not None
    assert "hunter2" in str(logged[0].exc_info[1])


def test_problem_refuses_a_success_status_and_overwriting_standard_members() -> None:
    with pytest.raises(ValueError, match="400-599"):
        Problem(200, "OK")
    with pytest.raises(ValueError, match="status"):
        Problem(400, "Bad", extensions={"status": 200})


def test_problem_defaults_and_validation_shape() -> None:
    plain = Problem(503)
    assert plain.to_dict() == {"type": "about:blank", "title": "Service Unavailable", "status": 503}
    one = Problem.validation([FieldError("/students/0/sex", "code.unknown", "Unknown sex code 'Q'", record=12)])
    assert one.to_dict()["detail"] == "1 field failed validation."
    assert one.to_dict()["errors"] == [
        {"field": "/students/0/sex", "rule": "code.unknown", "message": "Unknown sex code 'Q'", "record": 12}
    ]
    assert str(one) == "1 field failed validation."


def test_field_errors_from_a_record_validated_outside_a_request() -> None:
    # Ingest validates CSV rows itself and reports each error against the line number.
    with pytest.raises(ValidationError) as caught:
        Student.model_validate({"local_id": "x", "birth_date": "2999-12-31"})
    assert field_errors_from_pydantic(caught.value.errors(), record=7) == [
        FieldError("/birth_date", "date.not_in_future", "A birth date cannot be in the future", record=7)
    ]


def test_value_errors_lose_pydantics_prefix() -> None:
    errors = [{"loc": ("body", "code"), "type": "value_error", "msg": "Value error, unknown exit code 'X9'"}]
    assert field_errors_from_pydantic(errors)[0].message == "unknown exit code 'X9'"


def test_json_pointer_escapes_slash_and_tilde() -> None:
    assert json_pointer(["students", 3, "a/b~c"]) == "/students/3/a~1b~0c"
    assert json_pointer([]) == ""


@pytest.mark.parametrize("name", ["ingest", "records", "consent", "transfer", "audit"])
def test_every_documented_error_answer_is_a_problem(name: str) -> None:
    """The OpenAPI documents promise what the handlers send: no FastAPI `HTTPValidationError`."""
    spec = load_spec(name)
    document = create_app(spec, spec.settings(), lifespan=False).openapi()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    errors = [
        (path, method, status, response.get("content"))
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        for status, response in operation.get("responses", {}).items()
        if status.startswith(("4", "5"))
    ]
    assert any(status == "422" for _p, _m, status, _c in errors)  # every service validates input
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    assert [e for e in errors if e[3] != problem] == []
