"""What ComfyUI's answers mean: the queue, a /history entry (outputs, status, errors, how
long it ran), a job of the job API shaped as a /history entry, node_errors as readable lines.

Plain functions over the parsed JSON, tolerant of any shape a server may send: a field of
the wrong type reads as absent. See docs/comfyui.md for the fields relied on.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import attrs


@attrs.define
class QueueState:
    running: list[str]
    pending: list[str]

    def __contains__(self, prompt_id: str) -> bool:
        return prompt_id in self.running or prompt_id in self.pending

    @property
    def depth(self) -> int:
        return len(self.running) + len(self.pending)


def describe_node_errors(node_errors: Mapping[str, Any], workflow: Mapping[str, Any] | None = None
                         ) -> list[str]:
    """One line per failing input: ``node 1 (EmptyImage) input 'width': Required input is missing``."""
    lines = []
    for node_id, info in (node_errors if isinstance(node_errors, Mapping) else {}).items():
        info = info if isinstance(info, dict) else {}
        node = (workflow or {}).get(node_id)
        cls = info.get("class_type") or (node.get("class_type") if isinstance(node, dict) else None) or "?"
        errors = info.get("errors")
        for err in (errors if isinstance(errors, list) and errors else [{}]):
            err = err if isinstance(err, dict) else {"message": str(err)}
            extra = err.get("extra_info") if isinstance(err.get("extra_info"), dict) else {}
            name = extra.get("input_name")
            where = f"node {node_id} ({cls})" + (f" input {name!r}" if name else "")
            detail = err.get("details") or ""
            msg = err.get("message") or err.get("type") or "invalid"
            lines.append(f"{where}: {msg}" + (f" ({detail})" if detail and detail != name else ""))
    return lines



#: Job API statuses (comfy_execution/jobs.py): waiting, and finished one way or another.
JOB_PENDING = frozenset({"pending"})
JOB_DONE = frozenset({"completed", "failed", "cancelled"})


def entry_from_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """A finished job of the job API, shaped as a /history entry ({outputs, status}), with
    ``execution_seconds`` from its execution_start_time and execution_end_time (ms)."""
    status = job.get("execution_status")
    if not isinstance(status, dict):
        failed = job.get("status") in ("failed", "cancelled")
        error = job.get("execution_error")
        status = {"status_str": "error" if failed else "success",
                  "messages": [["execution_error", error]] if isinstance(error, dict) else []}
    outputs = job.get("outputs")
    entry: dict[str, Any] = {"outputs": outputs if isinstance(outputs, dict) else {}, "status": status}
    start, end = job.get("execution_start_time"), job.get("execution_end_time")
    if _is_number(start) and _is_number(end) and end >= start:
        entry["execution_seconds"] = (end - start) / 1000.0
    return entry


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value \
        and abs(value) < 1e15


def execution_seconds(entry: Mapping[str, Any]) -> float | None:
    """How long the server spent executing a finished prompt: the job API's times, else the
    timestamps (ms) of execution_start and the message that ended it in the history entry."""
    value = entry.get("execution_seconds")
    if _is_number(value) and value >= 0:
        return float(value)
    status = entry.get("status")
    messages = status.get("messages") if isinstance(status, dict) else None
    start = end = None
    for msg in messages if isinstance(messages, list) else []:
        if not (isinstance(msg, list) and len(msg) == 2 and isinstance(msg[1], dict)):
            continue
        stamp = msg[1].get("timestamp")
        if not _is_number(stamp):
            continue
        if msg[0] == "execution_start":
            start = stamp
        elif msg[0] in ("execution_success", "execution_error", "execution_interrupted"):
            end = stamp
    if start is None or end is None or end < start:
        return None
    return (end - start) / 1000.0

def history_outputs(entry: Mapping[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
    """(node_id, file item) for every file named in a history entry's outputs, in node order."""
    outputs = entry.get("outputs")
    for node_id, output in (outputs if isinstance(outputs, dict) else {}).items():
        if not isinstance(output, dict):
            continue
        for value in output.values():
            if isinstance(value, list):
                for item in value:
                    if isinstance(item, dict) and "filename" in item:
                        yield str(node_id), item


def history_error(entry: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """('execution_error'|'execution_interrupted', data) from a failed history entry."""
    status = entry.get("status")
    messages = status.get("messages") if isinstance(status, dict) else None
    for msg in messages if isinstance(messages, list) else []:
        if isinstance(msg, list) and len(msg) == 2 and msg[0] in ("execution_error",
                                                                 "execution_interrupted"):
            return msg[0], msg[1] if isinstance(msg[1], dict) else {}
    return None


def history_status(entry: Mapping[str, Any]) -> str | None:
    """The entry's status_str ('success', 'error'), or 'success' for servers older than the
    history status when the entry has outputs; None when there is no usable status."""
    status = entry.get("status")
    value = status.get("status_str") if isinstance(status, dict) else None
    if isinstance(value, str) and value:
        return value
    return "success" if entry.get("outputs") else None
