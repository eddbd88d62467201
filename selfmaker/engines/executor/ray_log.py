"""Where a Ray instance's log on its node went in the server's copy of it (``log_path``).

The server appends the node's log to ``log_path`` as it arrives, and writes lines of its
own there too, so the two offsets differ. The instance's ``offset`` file maps them:
``offset``, how much of the node's log is in ``log_path``; ``chunks``, where each piece
not shipped whole yet went ([local start, offset on the node, length]); ``base``, the
node's offset up to which everything is shipped. A server taking the instance over
resumes the node's log at what :func:`shipped` said (ray_cluster.py, "Another server").
Callers hold the executor's lock around a read-then-write (the follower and the log
shipper run on different threads).
"""

from __future__ import annotations

import json
from pathlib import Path


def _read(state_dir: Path) -> dict:
    try:
        text = (state_dir / "offset").read_text()
    except FileNotFoundError:
        return {"offset": 0, "chunks": [], "base": 0}
    known = json.loads(text or "0")  # a plain number: written by an earlier version
    return known if isinstance(known, dict) else {"offset": known, "chunks": [], "base": known}


def _save(state_dir: Path, known: dict) -> None:
    write_atomically(state_dir / "offset", json.dumps(known))


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.rename(path)


def copied(state_dir: Path) -> int:
    """How much of the node's log is in ``log_path``: where the follower asks the node to go on."""
    return _read(state_dir)["offset"]


def appended(state_dir: Path, at: int, offset: int, length: int) -> None:
    """``length`` bytes of the node's log from ``offset`` were appended to ``log_path`` at ``at``."""
    known = _read(state_dir)
    known["chunks"].append([at, offset, length])
    known["offset"] = offset + length
    _save(state_dir, known)


def start_at(state_dir: Path, offset: int) -> None:
    """A server taking the instance over: ``log_path`` holds nothing yet, the node's log resumes at ``offset``."""
    _save(state_dir, {"offset": offset, "chunks": [], "base": offset})


def shipped(state_dir: Path, local_offset: int) -> int:
    """How much of the node's log the first ``local_offset`` bytes of ``log_path`` hold; chunks shipped whole
    are forgotten."""
    known = _read(state_dir)
    chunks = known["chunks"]
    whole = 0
    while whole < len(chunks) and chunks[whole][0] + chunks[whole][2] <= local_offset:
        known["base"] = chunks[whole][1] + chunks[whole][2]
        whole += 1
    if whole:
        del chunks[:whole]
        _save(state_dir, known)
    if chunks and chunks[0][0] < local_offset:  # part of a chunk: its complete lines were shipped
        return chunks[0][1] + local_offset - chunks[0][0]
    return known["base"] if not chunks else chunks[0][1]
