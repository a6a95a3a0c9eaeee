"""Rotating the log's signing key: what the old key signed keeps verifying, in the service
and offline, and a statement under a key the log never held is named as such."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from typer.testing import CliRunner

from homeroom.bus.producer import Publisher
from homeroom.bus.topics import DISCLOSURE, REJECTED, ensure_topics, with_suffix
from homeroom.service import ServiceSpec
from homeroom.tlog.signing import load_or_create_signer
from services.audit.cli import app as cli_app
from services.audit.cli import verify_export
from services.audit.consumers import SOURCE_TOPICS, consumer_spec
from services.audit.service import SERVICE
from services.audit.settings import AuditSettings
from tests.harness import ServiceEnv, service_under_test
from tests.services.audit.conftest import Audit, disclosure, seed


async def _export(audit: Audit, dest: Path) -> Path:
    response = await audit.svc.client.get("/v1/export", headers=audit.auth("compliance"))
    assert response.status_code == 200, response.text
    dest.write_bytes(response.content)
    return dest


async def test_heads_and_receipts_signed_before_a_rotation_still_verify(
    service_env: ServiceEnv, topic_suffix: str, tmp_path: Path
) -> None:
    await ensure_topics(
        service_env.kafka.client_kwargs(), [with_suffix(t, topic_suffix) for t in (*SOURCE_TOPICS, REJECTED)]
    )
    spec = replace(SERVICE, consumers=(consumer_spec(topic_suffix),))
    settings = await service_env.settings_for(spec, head_interval_s=3600.0, head_max_age_s=36000.0)
    assert isinstance(settings, AuditSettings)
    publisher = Publisher("audit-test", service_env.kafka.client_kwargs())
    try:
        async with service_under_test(spec, service_env, settings=settings) as first:
            await seed(Audit(first, service_env, topic_suffix, publisher), (4,))
        await _rotate_and_check(spec, settings, service_env, topic_suffix, publisher, tmp_path)
    finally:
        await publisher.stop()


async def _rotate_and_check(
    spec: ServiceSpec, settings: AuditSettings, env: ServiceEnv, suffix: str, publisher: Publisher, tmp_path: Path
) -> None:
    old_id = load_or_create_signer(settings.signing_key_path).key_id

    # The operator's command, with the service's own settings from the environment.
    cli_env = {
        "HOMEROOM_AUDIT_SIGNING_KEY_FILE": str(settings.signing_key_path),
        "HOMEROOM_AUDIT_RETIRED_KEYS_DIR": str(settings.retired_keys_path),
    }
    result = CliRunner().invoke(cli_app, ["rotate-key"], env=cli_env)
    assert result.exit_code == 0, result.output
    new_id = load_or_create_signer(settings.signing_key_path).key_id
    assert new_id != old_id and old_id in result.output and new_id in result.output
    assert (settings.retired_keys_path / f"{old_id}.pem").exists()
    assert oct(settings.signing_key_path.stat().st_mode & 0o777) == "0o600"

    # The restarted service signs with the new key over the same log.
    async with service_under_test(spec, env, settings=settings) as restarted:
        after = Audit(restarted, env, suffix, publisher)
        await after.publish(*(after.event(DISCLOSURE, "disclosure_recorded", disclosure()) for _ in range(3)))
        await after.wait_for_entries(7)
        signed = await restarted.client.post("/v1/tree-heads", headers=after.auth("compliance"))
        assert signed.status_code == 201 and signed.json()["key_id"] == new_id

        keys = (await restarted.client.get("/v1/keys", headers=after.auth("compliance"))).json()
        assert keys["signing_key_id"] == new_id and set(keys["keys"]) == {old_id, new_id}

        # Entries carry no receipt of their own (issue 19): heads signed by either key vouch for them.
        entries = (await restarted.client.get("/v1/entries", headers=after.auth("compliance"))).json()["entries"]
        assert len(entries) == 7 and all(e["receipt"] is None for e in entries)

        verification = (await restarted.client.get("/v1/verification", headers=after.auth("compliance"))).json()
        assert verification["ok"] is True, verification

        export = await _export(after, tmp_path / "rotated.jsonl")
        header = json.loads(export.read_text().splitlines()[0])
        assert header["key_id"] == new_id and set(header["public_keys"]) == {old_id, new_id}
        assert verify_export(export).ok

        # Pinning only the new key: the old heads and receipts are named as signed by a key
        # outside the ring, and nothing they vouched for is taken on trust.
        pinned = verify_export(export, public_key_pems=[keys["keys"][new_id].encode()])
        assert not pinned.ok
        assert any(f"claims key {old_id}, not one of the log's keys" in line for line in pinned.lines())
        both = [keys["keys"][k].encode() for k in (new_id, old_id)]
        assert verify_export(export, public_key_pems=both).ok

    # A service that lost its retired key cannot vouch for what that key signed.
    (settings.retired_keys_path / f"{old_id}.pem").unlink()
    async with service_under_test(spec, env, settings=settings) as forgetful:
        report = (await forgetful.client.get("/v1/verification", headers=env.auth("compliance"))).json()
        assert report["ok"] is False, report
