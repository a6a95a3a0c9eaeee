"""The Ed Law 2-d import through the API and the CLI, and the public transparency listing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import asyncpg
from typer.testing import CliRunner

from homeroom_dev.infra.postgres import EmbeddedPostgres
from services.consent.cli import app as cli
from tests.harness import ServiceEnv, ServiceUnderTest, drop_database, new_database
from tests.services.consent.conftest import bus_events, decision_request, terms, uid

SEED = Path("/work/shared/seeds/003_0bd684370ade645f.txt")
if not SEED.exists():  # the seeds directory next to the repository
    SEED = Path(__file__).resolve().parents[4] / "shared" / "seeds" / "003_0bd684370ade645f.txt"
SIX = (
    "exclusive_purposes",
    "subcontractor_oversight",
    "term_and_expiry",
    "accuracy_challenge",
    "storage_and_protections",
    "encryption",
)


async def test_importing_the_seed_page_creates_drafts_that_release_nothing(
    svc: ServiceUnderTest, module_env: ServiceEnv
) -> None:
    district = uid("d")
    staff = module_env.auth("district_staff", district=district)
    text = SEED.read_text(encoding="utf-8")
    r = await svc.client.post("/v1/agreements/import-2d", json={"text": text, "source_name": SEED.name}, headers=staff)
    assert r.status_code == 200, r.text
    summary: dict[str, Any] = r.json()
    assert 38 <= summary["created"] <= 46 and summary["new_versions"] == 0
    assert len(summary["agreements"]) == summary["created"]
    # Problems are reported per entry with the agreement they belong to.
    assert summary["problems"] and all(p["field"].startswith("/") for p in summary["problems"])
    assert all(p["agreement_id"] for p in summary["problems"] if p["entry"] is not None)

    listed = (await svc.client.get("/v1/agreements?limit=500", headers=staff)).json()["agreements"]
    assert len(listed) == summary["created"]
    assert {a["status"] for a in listed} == {"draft"}
    categories = {a["category"] for a in listed}
    assert {"vendor", "research", "public-health service"} <= categories
    answered = [a for a in listed if all(a["current"]["supplemental"][k] for k in SIX)]
    assert len(answered) >= 38
    dated = [a for a in listed if a["current"]["terms"]["start_date"]]
    assert len(dated) >= 20
    bio = next(a for a in listed if a["organization"].startswith("BioReference"))
    assert bio["current"]["terms"]["start_date"] == "2020-10-01"
    assert bio["current"]["terms"]["districts"] == [district]
    assert bio["current"]["source"] == f"import-2d:{SEED.name}#1"

    # An imported draft releases nothing, and is not on the public page.
    service = module_env.auth("service")
    answer = (
        await svc.client.post("/v1/decisions", json=decision_request(bio["agreement_id"], district), headers=service)
    ).json()
    assert answer["allow"] is False and "draft" in answer["reason"]
    public = (await svc.client.get("/v1/public/agreements")).json()["agreements"]
    assert bio["agreement_id"] not in {a["agreement_id"] for a in public}

    # Activating it takes its data elements first.
    r = await svc.client.post(f"/v1/agreements/{bio['agreement_id']}/activate", headers=staff)
    assert r.status_code == 422
    assert ("/terms/elements", "activation.no_elements") in [(e["field"], e["rule"]) for e in r.json()["errors"]]

    # The same page again changes nothing.
    r = await svc.client.post("/v1/agreements/import-2d", json={"text": text, "source_name": SEED.name}, headers=staff)
    again = r.json()
    assert again["created"] == 0 and again["new_versions"] == 0 and again["unchanged"] == summary["created"]

    await svc.runtime.drain_outbox()
    assert "agreement_signed" in await bus_events(
        module_env.bootstrap, "consent.v1", bio["agreement_id"], {"agreement_signed"}
    )


async def test_import_refuses_the_wrong_callers_and_reports_unreadable_pages(
    svc: ServiceUnderTest, module_env: ServiceEnv
) -> None:
    district = uid("d")
    body = {"text": "Vendors\nAcme\nNothing here answers anything.\n"}
    for headers in (
        module_env.auth("vendor", agreement="a", organization="X"),
        module_env.auth("parent", students=["stu_1"]),
        module_env.auth("school_staff", district=district, schools=["s"]),
    ):
        assert (await svc.client.post("/v1/agreements/import-2d", json=body, headers=headers)).status_code == 403
    staff = module_env.auth("district_staff", district=district)
    r = await svc.client.post("/v1/agreements/import-2d", json={**body, "districts": [uid("d")]}, headers=staff)
    assert r.status_code == 403
    r = await svc.client.post("/v1/agreements/import-2d", json={"text": ""}, headers=staff)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "/text"
    r = await svc.client.post("/v1/agreements/import-2d", json={"text": "just a sentence of prose."}, headers=staff)
    assert r.status_code == 200
    assert r.json()["created"] == 0 and r.json()["problems"][0]["entry"] is None


async def test_public_listing_shows_active_agreements_with_their_answers(
    svc: ServiceUnderTest, module_env: ServiceEnv
) -> None:
    district = uid("d")
    staff = module_env.auth("district_staff", district=district)
    supplemental = {k: f"answer to {k}" for k in SIX}
    r = await svc.client.post(
        "/v1/agreements",
        json={
            "organization": "Open Books <Inc>",
            "category": "vendor",
            "supplemental": supplemental,
            "terms": terms(district),
        },
        headers=staff,
    )
    agreement_id = r.json()["id"]
    assert agreement_id not in {
        a["agreement_id"] for a in (await svc.client.get("/v1/public/agreements")).json()["agreements"]
    }
    await svc.client.post(f"/v1/agreements/{agreement_id}/activate", headers=staff)

    r = await svc.client.get("/v1/public/agreements")  # no token
    assert r.status_code == 200
    item = next(a for a in r.json()["agreements"] if a["agreement_id"] == agreement_id)
    assert item["organization"] == "Open Books <Inc>" and item["category"] == "vendor"
    assert item["supplemental"] == supplemental
    assert item["term"] == {
        "start_date": "2020-01-01",
        "end_date": "2099-06-30",
        "disposition": "destroy",
        "storage_region": "US",
    }
    assert [e["id"] for e in item["elements"]] == ["student.first_name", "student.last_name", "attendance.daily"]
    assert item["elements"][0] == {"id": "student.first_name", "name": "First name", "sensitivity": "directory"}
    assert item["purposes"][0]["id"] == "instruction"

    page = await svc.client.get("/v1/public/agreements.html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Open Books &lt;Inc&gt;" in page.text and "answer to encryption" in page.text


async def test_cli_imports_into_the_database_and_leaves_events_in_the_outbox(
    postgres: EmbeddedPostgres, monkeypatch: Any
) -> None:
    url = await new_database(postgres, "cli")
    try:
        monkeypatch.setenv("HOMEROOM_CONSENT_DATABASE_URL", url)
        monkeypatch.setenv("HOMEROOM_CONSENT_CREATE_DATABASE", "false")
        runner = CliRunner()
        result = await asyncio.to_thread(
            runner.invoke, cli, ["import-2d", str(SEED), "--district", "d-100", "--recorded-by", "ops:kim", "--json"]
        )
        assert result.exit_code == 0, result.output
        summary = json.loads(result.output)
        assert summary["created"] >= 38
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM agreements WHERE status = 'draft'") == summary["created"]
            assert await conn.fetchval("SELECT count(*) FROM outbox WHERE topic = 'consent.v1'") == summary["created"]
            assert (
                await conn.fetchval("SELECT count(*) FROM agreements WHERE districts = '{d-100}'") == summary["created"]
            )
        finally:
            await conn.close()

        result = await asyncio.to_thread(runner.invoke, cli, ["import-2d", str(SEED), "--district", "d-100"])
        assert result.exit_code == 0, result.output
        assert "0 new drafts" in result.output and "problems need a person" in result.output
        missing = await asyncio.to_thread(runner.invoke, cli, ["import-2d", "/no/such/file.txt"])
        assert missing.exit_code == 2
        # The same command through the single `homeroom` entry point.
        from homeroom.cli import app as homeroom

        result = await asyncio.to_thread(runner.invoke, homeroom, ["consent", "import-2d", str(SEED), "-d", "d-100"])
        assert result.exit_code == 0, result.output
        assert "0 new drafts" in result.output
    finally:
        await drop_database(postgres, url)
