"""Notices (homeroom.notices) on a real runtime: written with the change that owes them,
e-mailed through a real SMTP server (aiosmtpd) once each, listed only to their recipient,
and kept (not lost) while the SMTP server is away."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from homeroom.auth import Role
from homeroom.config import ServiceSettings
from homeroom.notices import AddressBook, Notice, Recipient, add
from homeroom.service import ServiceSpec
from homeroom_dev.infra.smtp import EmbeddedSMTP
from tests.harness import ServiceEnv, service_under_test
from tests.mail import mail_arrives, smtp_overrides, to


class _Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HOMEROOM_NOTICETEST_", extra="ignore")
    service_name: str = "noticetest"


SPEC = ServiceSpec(name="noticetest", settings=_Settings, sends_notices=True)


def _transfer_notice(case: str, recipient: Recipient) -> Notice:
    return Notice(
        recipient=recipient,
        kind="transfer_delivered",
        subject=f"A record was sent for case {case}",
        body="Your child's record was sent to the school where they enrolled.\nYou may ask for a copy.",
        cause=f"transfer:{case}",
        student_key="stu_" + "a" * 32,
        district_id="d-1",
    )


async def test_notice_is_mailed_once_listed_to_its_recipient_only(service_env: ServiceEnv, smtp: EmbeddedSMTP) -> None:
    async with service_under_test(SPEC, service_env, **smtp_overrides(smtp)) as svc:
        parent = Recipient("parent", "stu_" + "a" * 32)
        district = Recipient("district", "d-1")
        async with svc.pool.acquire() as conn, conn.transaction():
            written = await add(conn, [_transfer_notice("c-1", parent), _transfer_notice("c-1", district)])
        async with svc.pool.acquire() as conn, conn.transaction():
            again = await add(conn, _transfer_notice("c-1", parent))  # a replayed step
        assert (written, again) == (2, 0)

        mails = await mail_arrives(smtp.messages, to("parent.stu_"), count=1)
        await mail_arrives(smtp.messages, to("district.d-1@homeroom.test"))
        mail = mails[0]
        assert mail["Subject"] == "A record was sent for case c-1"
        assert "You may ask for a copy." in mail.get_content()
        assert mail["Message-ID"] == f"<{_transfer_notice('c-1', parent).id}@homeroom>"
        assert len(smtp.messages()) == 2  # once each, however often the relay runs
        assert svc.runtime.notices is not None
        await svc.runtime.notices.send_due()
        assert len(smtp.messages()) == 2

        sent = await svc.pool.fetch("SELECT recipient_role, address, sent_at FROM notices ORDER BY recipient_role")
        assert [(r["recipient_role"], r["sent_at"] is not None) for r in sent] == [("district", True), ("parent", True)]

        mine = (
            await svc.client.get("/v1/notices", headers=service_env.auth(Role.PARENT, students=["stu_" + "a" * 32]))
        ).json()["notices"]
        assert [n["recipient"] for n in mine] == [{"role": "parent", "id": "stu_" + "a" * 32}]
        assert mine[0]["delivery"] == "e-mailed" and mine[0]["sent_at"]
        other_parent = await svc.client.get(
            "/v1/notices", headers=service_env.auth(Role.PARENT, students=["stu_" + "b" * 32])
        )
        assert other_parent.json()["notices"] == []
        other_district = await svc.client.get(
            "/v1/notices", headers=service_env.auth(Role.DISTRICT_STAFF, district="d-2")
        )
        assert other_district.json()["notices"] == []
        staff = (
            await svc.client.get("/v1/notices", headers=service_env.auth(Role.DISTRICT_STAFF, district="d-1"))
        ).json()
        assert [n["recipient"]["id"] for n in staff["notices"]] == ["d-1"]
        refused = await svc.client.get("/v1/notices", headers=service_env.auth(Role.OPERATOR))
        assert refused.status_code == 403


async def test_a_notice_waits_while_the_smtp_server_is_down_and_is_sent_once_after(
    service_env: ServiceEnv, smtp: EmbeddedSMTP
) -> None:
    port = smtp.port
    smtp.stop()
    async with service_under_test(SPEC, service_env, **smtp_overrides(smtp), start_consumers=False) as svc:
        relay = svc.runtime.notices
        assert relay is not None
        await relay.stop()  # driven by hand below
        async with svc.pool.acquire() as conn, conn.transaction():
            await add(conn, _transfer_notice("c-2", Recipient("district", "d-1")))
        assert await relay.send_due() == 1  # tried, refused by the closed port
        row = await svc.pool.fetchrow("SELECT attempts, sent_at, last_error FROM notices")
        assert row is not None and row["attempts"] == 1 and row["sent_at"] is None and row["last_error"]

        restarted = EmbeddedSMTP(smtp.path, port=port).start()
        try:
            await svc.pool.execute("UPDATE notices SET next_attempt_at = now()")  # skip the backoff
            assert await relay.send_due() == 1
            assert await relay.send_due() == 0
            assert [m["Subject"] for m in restarted.messages()] == ["A record was sent for case c-2"]
        finally:
            restarted.stop()


def test_addresses_come_from_the_address_book_and_production_invents_none() -> None:
    book = AddressBook({"district:d-1": "privacy@d1.example.org", "compliance:*": "cpo@state.example.org"})
    assert book.address(Recipient("district", "d-1")) == "privacy@d1.example.org"
    assert book.address(Recipient("compliance", "compliance")) == "cpo@state.example.org"
    assert book.address(Recipient("district", "d-2")) is None  # production: no made-up address
    dev = AddressBook({}, "homeroom.test")
    assert dev.address(Recipient("recipient", "Acme App/1")) == "recipient.acme-app-1@homeroom.test"
