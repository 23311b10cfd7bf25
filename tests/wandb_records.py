"""Read back an offline W&B run: its `run-<id>.wandb` file (LevelDB-style log of wandb's protobuf records)
and its table files, with the wandb package's own record schema."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # wandb is an extra: the modules using this skip where it is missing
    from wandb.proto import wandb_internal_pb2

BLOCK = 32768
HEADER = 7  # crc32 (4 bytes), length (2), chunk type (1)
WHOLE, LAST = 1, 4


def records(path: Path) -> list[wandb_internal_pb2.Record]:
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, pending, found = 7, b"", []
    while pos + HEADER <= len(data):
        room = BLOCK - pos % BLOCK
        _, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if room < HEADER or (kind == 0 and length == 0):  # the padding at a block's end
            pos += room
            continue
        pending += data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind in (WHOLE, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            found.append(record)
            pending = b""
    return found


def offline_runs(run_dir: Path) -> list[Path]:
    return sorted((Path(run_dir) / "wandb").glob("offline-run-*"))


def run_id(run: Path) -> str:
    """The W&B run id of an offline run dir (its name may carry a `-1` when two started in one second)."""
    (log,) = run.glob("run-*.wandb")
    return log.stem.removeprefix("run-")


def finished_records(run: Path, timeout_s: float = 30.0) -> list[wandb_internal_pb2.Record]:
    """The run's records once its exit record is there: wandb's core process may still be writing the
    log for a moment after `finish()` returned."""
    (log,) = run.glob("run-*.wandb")
    deadline = time.monotonic() + timeout_s
    while True:
        found = records(log)
        if any(r.WhichOneof("record_type") == "exit" for r in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def history(run: Path) -> list[dict]:
    """Each logged row as {key: value}."""
    rows = []
    for record in finished_records(run):
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item})  # fmt: skip
    return rows


def config(run: Path) -> dict:
    for record in finished_records(run):
        if record.WhichOneof("record_type") == "run":
            return {item.key: json.loads(item.value_json) for item in record.run.config.update}
    return {}


def table_rows(run: Path, key: str) -> list[list]:
    """Every row of every increment of table `key`, in the order logged."""
    rows = []
    for row in history(run):
        if f"{key}/path" in row:
            rows += json.loads((run / "files" / row[f"{key}/path"]).read_text())["data"]
    return rows
