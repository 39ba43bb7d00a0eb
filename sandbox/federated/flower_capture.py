"""A log of every message that crosses the Flower boundary, for checking what leaves a client.

Set ``SANDBOX_FLOWER_MESSAGE_LOG=/path/messages.jsonl`` (before the engine starts: Ray
workers and Flower's app processes inherit it) and both sides append one JSON line per
message: the ClientApp through ``message_log_mod`` (what a client received and sent), the
ServerApp through ``RecordingGrid`` (what the server sent and received). Every record is
written in full, arrays as their serialized bytes (base64), so a test can search them all.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from flwr.app import Context, Message, RecordDict
from flwr.clientapp.typing import ClientAppCallable
from flwr.serverapp import Grid

MESSAGE_LOG_ENV = "SANDBOX_FLOWER_MESSAGE_LOG"


def _value_as_json(value):
    if isinstance(value, bytes):
        return {"bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, list):
        return [_value_as_json(v) for v in value]
    return value


def records_as_json(content: RecordDict) -> dict:
    """Every record of a message, typed: arrays with dtype, shape, stype and their bytes."""
    out: dict = {}
    for name, record in content.array_records.items():
        out[name] = {
            "kind": "array",
            "values": {
                key: {
                    "dtype": a.dtype,
                    "shape": list(a.shape),
                    "stype": a.stype,
                    "bytes": base64.b64encode(a.data).decode("ascii"),
                }
                for key, a in record.items()
            },
        }
    for name, record in content.metric_records.items():
        out[name] = {"kind": "metric", "values": {k: _value_as_json(v) for k, v in record.items()}}
    for name, record in content.config_records.items():
        out[name] = {"kind": "config", "values": {k: _value_as_json(v) for k, v in record.items()}}
    return out


def message_as_json(msg: Message, *, side: str, direction: str) -> dict:
    meta = msg.metadata
    entry = {
        "side": side,
        "direction": direction,
        "message_type": meta.message_type,
        "group_id": meta.group_id,
        "src_node_id": meta.src_node_id,
        "dst_node_id": meta.dst_node_id,
    }
    if msg.has_error():
        entry["error"] = {"code": msg.error.code, "reason": msg.error.reason}
    else:
        entry["records"] = records_as_json(msg.content)
    return entry


def append_to_message_log(entry: dict) -> None:
    """Append ``entry`` to the log named by ``SANDBOX_FLOWER_MESSAGE_LOG``; no-op when unset."""
    path = os.environ.get(MESSAGE_LOG_ENV)
    if path:
        with Path(path).open("a", encoding="utf-8") as log:  # one write per line: appends interleave whole
            log.write(json.dumps(entry) + "\n")


def message_log_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """ClientApp mod: log the incoming message and the reply (only when the log is switched on)."""
    if not os.environ.get(MESSAGE_LOG_ENV):
        return call_next(msg, context)
    append_to_message_log(message_as_json(msg, side="client", direction="received"))
    reply = call_next(msg, context)
    append_to_message_log(message_as_json(reply, side="client", direction="sent"))
    return reply


class RecordingGrid(Grid):
    """The ServerApp's Grid, logging every message sent and every reply received."""

    def __init__(self, grid: Grid):
        self._grid = grid

    def set_run(self, run) -> None:
        self._grid.set_run(run)

    @property
    def run(self):
        return self._grid.run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None) -> Message:
        return self._grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self):
        return self._grid.get_node_ids()

    def get_nodes(self):
        return self._grid.get_nodes()

    def push_messages(self, messages):
        messages = list(messages)
        for msg in messages:
            append_to_message_log(message_as_json(msg, side="server", direction="sent"))
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids):
        replies = list(self._grid.pull_messages(message_ids))
        for reply in replies:
            append_to_message_log(message_as_json(reply, side="server", direction="received"))
        return replies

    def send_and_receive(self, messages, *, timeout=None):
        messages = list(messages)
        for msg in messages:
            append_to_message_log(message_as_json(msg, side="server", direction="sent"))
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        for reply in replies:
            append_to_message_log(message_as_json(reply, side="server", direction="received"))
        return replies
