"""A claim: a lock file naming its holder (host, pid, start time) and a deadline; one left by kill -9 is taken over.

A kill -9 runs no clean-up, so a claim outlives its holder: whether it still holds is judged from what it names.
One whose holder is dead (gone, or its pid now names another process, which the start time tells) or whose deadline
has passed is taken over; a process on another host cannot be checked, so its claim holds until the deadline it
keeps renewing while it runs. Each claim carries a random token its holder keeps: one that lapsed and was taken
over by another process is no longer its old holder's (`holds_claim`) to renew or let go.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import time
from pathlib import Path
from typing import Any

from optbench.atomic import create_json_exclusive, write_json_atomic
from optbench.errors import unreadable_file
from optbench.records import is_number, read_json

CLAIM_GRACE_S = 300.0  # beyond the job timeout: the job's start and the recording of its result


def this_process() -> dict[str, Any]:
    """This process as a claim names it: host, pid, start time, and the time now."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "started": _process_start(pid), "at": time.time()}


def lease(timeout_s: float) -> dict[str, Any]:
    """A claim's or a sweep participant's content: its holder, and when it lapses unless renewed (by the holder's
    own job timeout, which another sweep of the plan may not share)."""
    return {**this_process(), "until": time.time() + timeout_s + CLAIM_GRACE_S}


def take_claim(path: Path, timeout_s: float) -> str | None:
    """Create the lock file `path` naming this process, until `timeout_s` and CLAIM_GRACE_S have passed, and return
    its token; None while a live holder has it. One left by a gone holder is renamed away before it is replaced, so
    that of two processes taking it over at once one does: the other finds it gone, or finds the fresh claim in its
    place and puts it back."""
    token = secrets.token_hex(8)
    for _ in range(2):
        try:
            create_json_exclusive(path, {**lease(timeout_s), "token": token})
            return token
        except FileExistsError:
            try:
                found = path.read_bytes()
            except FileNotFoundError:  # let go meanwhile
                continue
            if _is_live(found):
                return None
            gone = path.with_name(f".{path.name}.{secrets.token_hex(4)}.gone")
            try:
                os.rename(path, gone)
            except FileNotFoundError:  # renamed away by another process taking it over
                continue
            if gone.read_bytes() != found:  # renewed, or already replaced by another process: not the one judged
                with contextlib.suppress(FileExistsError):  # unless a third process made its own in the meantime
                    os.link(gone, path)
                gone.unlink()
                return None
            gone.unlink()
    return None


def holds_claim(path: Path, token: str) -> bool:
    """Whether the lock file `path` is still the one `take_claim` returned `token` for: not let go, nor taken
    over."""
    return (read_json(path) or {}).get("token") == token


def renew_claim(path: Path, token: str, timeout_s: float) -> None:
    """Hold the claim `path` (whose `token` this process has) as if taken now."""
    write_json_atomic(path, {**lease(timeout_s), "token": token})


def read_holder(path: Path) -> dict[str, Any] | None:
    """The holder a claim or a sweep participant's entry `path` names; None when there is no such file, or when it
    names none (see `_holder`)."""
    try:
        return _holder(path.read_bytes())
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise unreadable_file(path, exc) from exc


def is_dead(holder: dict[str, Any]) -> bool:
    """Whether the process that wrote `holder` is gone (or its pid now names another process); a process
    on another host, which cannot be checked, once the deadline it renews while alive has passed. One from this host
    that names no pid (a hand-edited file) names no process that could hold anything: taken for dead."""
    if holder.get("host") != socket.gethostname():
        return time.time() > _deadline(holder)
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:  # 0 and below name process groups, not a process
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: past any pid
        return True
    except PermissionError:
        pass
    return holder.get("started") is not None and _process_start(pid) != holder["started"]


def _is_live(claim: bytes) -> bool:
    """Whether a lock file's content names a holder that has it: one within its deadline and alive."""
    holder = _holder(claim)
    return holder is not None and time.time() <= _deadline(holder) and not is_dead(holder)


def _holder(content: bytes) -> dict[str, Any] | None:
    """The holder a claim's or participant's content names; None when it names none: left empty by a machine's crash
    (never half-written), or hand-edited into something other than a JSON object."""
    try:
        holder = json.loads(content)
    except ValueError:  # UnicodeDecodeError too
        return None
    return holder if isinstance(holder, dict) else None


def _deadline(holder: dict[str, Any]) -> float:
    """When `holder`'s hold lapses unless renewed; one that names no time (hand-edited) has lapsed."""
    until = holder.get("until")
    return until if is_number(until) else 0.0


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux /proc), which a reused pid does not share."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
