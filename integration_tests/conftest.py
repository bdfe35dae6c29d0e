"""End-to-end helpers: an emulator on loopback and the installed console script as a subprocess."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from commsmining_emulator import Emulator

BIN = Path(sys.executable).parent
CONNECTOR = str(BIN / "source-commsmining") if (BIN / "source-commsmining").exists() else shutil.which("source-commsmining")
TRIAGE = {"project": "acme", "dataset": "collections", "stream": "triage"}
RAW = {"project": "acme", "dataset": "collections", "stream": "raw"}
URGENT = {"project": "acme", "dataset": "collections", "stream": "urgent-only"}
CLAIMS = {"project": "globex", "dataset": "claims-ds", "stream": "claims"}


def connector_config(emu: Emulator, streams=(TRIAGE,), **extra: Any) -> Dict[str, Any]:
    cfg = {"api_endpoint": emu.url, "api_token": emu.token, "streams": list(streams), "retry_backoff_seconds": 0.05}
    cfg.update(extra)
    return cfg


def configured_catalog(*names: str) -> Dict[str, Any]:
    streams = []
    for name in names:
        incremental = name == "stream_results"
        streams.append(
            {
                "stream": {
                    "name": name,
                    "json_schema": {},
                    "supported_sync_modes": ["incremental"] if incremental else ["full_refresh"],
                    **({"source_defined_cursor": True, "default_cursor_field": ["created_at"]} if incremental else {}),
                },
                "sync_mode": "incremental" if incremental else "full_refresh",
                "destination_sync_mode": "append_dedup" if incremental else "overwrite",
                **({"cursor_field": ["created_at"], "primary_key": [["project"], ["dataset"], ["stream"], ["uid"]]} if incremental else {"primary_key": [["id"]]}),
            }
        )
    return {"streams": streams}


@dataclass
class Run:
    returncode: Optional[int]
    messages: List[Dict[str, Any]]
    stderr: str = ""
    raw: str = ""

    def of_type(self, kind: str) -> List[Dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == kind]

    @property
    def records(self) -> List[Dict[str, Any]]:
        return [m["record"] for m in self.of_type("RECORD")]

    def uids(self, stream: str = "stream_results") -> List[str]:
        key = "uid" if stream == "stream_results" else "id"
        return [r["data"][key] for r in self.records if r["stream"] == stream]

    @property
    def states(self) -> List[Dict[str, Any]]:
        return [m["state"] for m in self.of_type("STATE")]

    def last_state(self) -> Optional[List[Dict[str, Any]]]:
        states = self.states
        return [states[-1]] if states else None

    def uids_covered_by_last_state(self) -> List[str]:
        """Records printed before the last STATE: the ones a destination could have committed."""
        covered: List[str] = []
        pending: List[str] = []
        for m in self.messages:
            if m.get("type") == "RECORD" and m["record"]["stream"] == "stream_results":
                pending.append(m["record"]["data"]["uid"])
            elif m.get("type") == "STATE":
                covered.extend(pending)
                pending = []
        return covered


def _parse(text: str) -> List[Dict[str, Any]]:
    """Whole lines only: a line cut by a kill is not a message the platform would read."""
    messages = []
    for line in text.split("\n")[:-1] if not text.endswith("\n") else text.splitlines():
        if line.startswith("{"):
            try:
                messages.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return messages


def _write_files(tmp: Path, config=None, catalog=None, state=None) -> List[str]:
    args = []
    for flag, content in (("config", config), ("catalog", catalog), ("state", state)):
        if content is not None:
            path = tmp / f"{flag}.json"
            path.write_text(json.dumps(content))
            args += [f"--{flag}", str(path)]
    return args


def _env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return env


def run_connector(command: str, config=None, catalog=None, state=None, timeout: float = 300) -> Run:
    with tempfile.TemporaryDirectory() as tmp:
        args = [CONNECTOR, command] + _write_files(Path(tmp), config, catalog, state)
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=_env())
    return Run(proc.returncode, _parse(proc.stdout), proc.stderr, proc.stdout)


def run_and_kill(config, catalog, state, kill_after: float, timeout: float = 120) -> Run:
    """Starts a read and SIGKILLs it after `kill_after` seconds (or lets it finish first)."""
    with tempfile.TemporaryDirectory() as tmp:
        out_path = Path(tmp) / "stdout"
        args = [CONNECTOR, "read"] + _write_files(Path(tmp), config, catalog, state)
        with out_path.open("w") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.DEVNULL, env=_env())
            try:
                proc.wait(timeout=kill_after)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=timeout)
        raw = out_path.read_text()
    return Run(proc.returncode, _parse(raw), "", raw)


@pytest.fixture
def emulator():
    with Emulator(seed=7, comments=300, scenario="default") as emu:
        yield emu
