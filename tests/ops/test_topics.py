"""deploy/kafka/create-topics.sh creates exactly the topics of homeroom/bus/topics.py."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from homeroom.bus.topics import ALL_TOPICS, CONSENT, DISCLOSURE, FOREVER, KEYS, TRANSFER
from tests.ops.files import TOPICS_SCRIPT
from tests.ops.topics_script import parse_topics, render_block, script_block


def test_script_creates_every_topic_with_its_partitions_and_retention() -> None:
    expected = {t.name: (t.partitions, t.retention_ms) for t in ALL_TOPICS}
    assert parse_topics(TOPICS_SCRIPT.read_text()) == expected


def test_script_block_is_current() -> None:
    assert script_block(TOPICS_SCRIPT.read_text()) == render_block(), "run .venv/bin/python -m tests.ops.topics_script"


def test_the_audit_trail_is_never_deleted_by_retention() -> None:
    created = parse_topics(TOPICS_SCRIPT.read_text())
    for topic in (DISCLOSURE, CONSENT, TRANSFER, KEYS):
        assert created[topic.name][1] == FOREVER == -1, topic.name


def test_a_drifted_script_is_noticed() -> None:
    text = TOPICS_SCRIPT.read_text().replace(
        "create_topic disclosure.v1 6 -1", "create_topic disclosure.v1 6 604800000"
    )
    assert parse_topics(text)["disclosure.v1"] != (DISCLOSURE.partitions, DISCLOSURE.retention_ms)
    with pytest.raises(ValueError, match="twice"):
        parse_topics(text.replace("# END TOPICS", "create_topic keys.v1 1 -1\n# END TOPICS"))


def test_replication_and_safety_settings() -> None:
    text = TOPICS_SCRIPT.read_text()
    assert '--replication-factor "$RF"' in text
    assert "min.insync.replicas" in text and "three-broker" in text
    assert "--if-not-exists" in text  # idempotent on every deployment


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
def test_script_is_valid_bash() -> None:
    result = subprocess.run(["bash", "-n", str(TOPICS_SCRIPT)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
