"""The topic list of deploy/kafka/create-topics.sh, rendered from homeroom/bus/topics.py.

The script is committed (the compose job runs it with the Kafka image's own tools, where
Homeroom's Python is not installed); tests/ops/test_topics.py fails when it drifts from
topics.py. Regenerate the block with:

    .venv/bin/python -m tests.ops.topics_script
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from homeroom.bus.topics import ALL_TOPICS, FOREVER, Topic

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "create-topics.sh"
BEGIN = "# BEGIN TOPICS (generated from homeroom/bus/topics.py by tests/ops/topics_script.py; do not edit)"
END = "# END TOPICS"
LINE = re.compile(r"^create_topic (?P<name>\S+) (?P<partitions>\d+) (?P<retention>-?\d+)\s*(?:#.*)?$")


def _retention_note(topic: Topic) -> str:
    if topic.retention_ms == FOREVER:
        return "kept forever"
    days = topic.retention_ms / (24 * 3600 * 1000)
    return f"{days:g} days"


def render_block() -> str:
    lines = [BEGIN]
    for topic in ALL_TOPICS:
        note = f"{_retention_note(topic)}; key: {topic.key}"
        lines.append(f"create_topic {topic.name} {topic.partitions} {topic.retention_ms}  # {note}")
    lines.append(END)
    return "\n".join(lines)


def script_block(text: str) -> str:
    start, end = text.index(BEGIN), text.index(END)
    return text[start : end + len(END)]


def parse_topics(text: str) -> dict[str, tuple[int, int]]:
    """name → (partitions, retention.ms) as the script would create them."""
    found: dict[str, tuple[int, int]] = {}
    for raw in script_block(text).splitlines()[1:-1]:
        match = LINE.match(raw.strip())
        if match is None:
            raise ValueError(f"unreadable topic line in {SCRIPT.name}: {raw!r}")
        name = match["name"]
        if name in found:
            raise ValueError(f"topic {name} listed twice in {SCRIPT.name}")
        found[name] = (int(match["partitions"]), int(match["retention"]))
    return found


def main() -> int:
    text = SCRIPT.read_text()
    SCRIPT.write_text(text.replace(script_block(text), render_block()))
    print(f"wrote {SCRIPT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
