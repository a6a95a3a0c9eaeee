"""The committed protobuf modules are exactly what proto/ generates; a stale one fails."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from gen_proto import OUT_PACKAGE, PROTO_ROOT, stale_modules  # type: ignore[import-not-found]  # noqa: E402

from homeroom.bus.topics import ALL_TOPICS  # noqa: E402


def test_committed_modules_match_the_protos() -> None:
    assert stale_modules() == []


def test_a_changed_proto_makes_its_module_stale(tmp_path: Path) -> None:
    protos = tmp_path / "proto"
    shutil.copytree(PROTO_ROOT, protos)
    target = protos / "homeroom" / "events" / "v1" / "attendance.proto"
    target.write_text(target.read_text() + "\nmessage AddedLater { string x = 1; }\n")
    assert stale_modules(protos, OUT_PACKAGE) == ["attendance_pb2.py", "attendance_pb2.pyi"]


def test_every_topic_message_carries_the_envelope_and_a_change() -> None:
    for topic in ALL_TOPICS:
        descriptor = topic.message.DESCRIPTOR
        meta = descriptor.fields_by_name["meta"].message_type
        assert meta is not None and meta.name == "EventMeta", topic.name
        assert "change" in descriptor.oneofs_by_name, f"{topic.name} has no oneof change"
