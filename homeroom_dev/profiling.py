"""py-spy over running processes, for the benchmarks (py-spy is not a project dependency:
`.homeroom/tools/bin/uv pip install --python .venv/bin/python py-spy`)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path


def start_py_spy(directory: Path, pids: dict[str, int]) -> list[subprocess.Popen[bytes]]:
    """py-spy sampling each service process (collapsed stacks, flamegraph.pl's input)."""
    directory.mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return [
        subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(pid),
                "--rate",
                "100",
                "--format",
                "raw",
                "-o",
                str(directory / f"{name}.folded"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]


def stop_py_spy(spies: list[subprocess.Popen[bytes]]) -> None:
    for spy in spies:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
    for spy in spies:
        spy.wait(30)
