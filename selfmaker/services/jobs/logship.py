"""Ship an instance's output file to CloudWatch Logs, line by line, while it runs.

A shipper tails one file and appends complete lines to one stream; the byte
offset it has shipped is kept next to the file, so a restarted server resumes
where the last one stopped (a crash between an append and the offset write
can repeat the lines of that one batch, never lose any).

Each shipper is a :class:`~selfmaker.engines.periodic.Periodic` polling its file; ``finish``
stops it and ships the last, unterminated line too. A server that stops cleanly stops the
shippers of its store (after the fleet and the reconciler, which finish their own, have
stopped), shipping their complete lines; the next server follows the files again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ...aws.logs import log_store
from ...backends import Backends, background_worker
from ...engines.periodic import Periodic

log = logging.getLogger("selfmaker.logs")

POLL_SECONDS = 0.2
MAX_EVENT_BYTES = 256 * 1024 - 26  # CloudWatch's event size limit, less its per-event overhead

_shippers: dict[Path, Shipper] = {}
_lock = threading.Lock()


class Shipper(Periodic):
    def __init__(
        self,
        store,
        account_id: str,
        region: str,
        group: str,
        stream: str,
        path: Path,
        on_shipped: Callable[[int], None] | None = None,
        ships: Callable[[], bool] | None = None,
    ):
        super().__init__(f"logs-{stream}", POLL_SECONDS)
        self.on_shipped = on_shipped  # told the file's offset shipped, after each batch
        self.ships = ships  # whether to ship now (this server still drives the instance)
        self.store, self.account_id, self.region = store, account_id, region
        self.group, self.stream, self.path = group, stream, path
        self.offset_path = path.with_name(path.name + ".shipped")
        self._flush_lock = threading.Lock()
        self.last_line = True  # whether stop() ships an unterminated last line (the file is complete)

    def run(self) -> None:
        self.flush()

    def run_final(self) -> None:
        self.flush(final=self.last_line)

    def flush(self, final: bool = False) -> None:
        """Ship every complete line written so far (and, if ``final``, a last unterminated one)."""
        with self._flush_lock:
            if self.ships is not None and not self.ships():
                return  # another server may follow the instance now: it ships the stream
            try:
                offset = int(self.offset_path.read_text() or 0)
            except (FileNotFoundError, ValueError):
                offset = 0
            try:
                with open(self.path, "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except FileNotFoundError:
                return
            end = len(data) if final else data.rfind(b"\n") + 1
            if end <= 0:
                return
            stamp = int(time.time() * 1000)
            lines = data[:end].decode("utf-8", "replace").splitlines()
            events = [(stamp, line[:MAX_EVENT_BYTES]) for line in lines if line.strip()]
            for start in range(0, len(events), 1000):
                log_store.append_events(
                    self.store, self.account_id, self.region, self.group, self.stream, events[start : start + 1000]
                )
            self.offset_path.write_text(str(offset + end))
            if self.on_shipped is not None:
                try:
                    self.on_shipped(offset + end)
                except Exception:
                    log.warning("could not note what %s has shipped", self.stream, exc_info=True)


def follow(
    store,
    account_id: str,
    region: str,
    group: str,
    stream: str,
    path: Path,
    on_shipped: Callable[[int], None] | None = None,
    ships: Callable[[], bool] | None = None,
) -> None:
    """Start shipping ``path`` unless it is shipped already (idempotent); ``on_shipped(offset)`` after each
    batch (the job notes where another server would resume the log: lifecycle.py); only while ``ships()``
    (a server paused past its lease must not ship lines the server that took over ships too)."""
    with _lock:
        if path in _shippers:
            return
        shipper = _shippers[path] = Shipper(store, account_id, region, group, stream, path, on_shipped, ships)
    shipper.start()


def finish(path: Path, store=None, account_id: str = "", region: str = "", group: str = "", stream: str = "") -> None:
    """Ship the rest of ``path`` and stop following it (works after a restart too, given the stream)."""
    with _lock:
        shipper = _shippers.pop(path, None)
    if shipper is None and store is not None:
        shipper = Shipper(store, account_id, region, group, stream, path)
    if shipper is not None:
        shipper.stop()


class _StopShippers:
    """At a clean server stop, stops the shippers still following files for this server's store
    (instances that outlive the server): their complete lines are shipped, and the threads do not
    outlive the store they write to."""

    def __init__(self, backends: Backends):
        self.store = backends.store

    def start(self) -> None:
        pass

    def stop(self) -> None:
        with _lock:
            mine = [path for path, shipper in _shippers.items() if shipper.store is self.store]
            stopping = [_shippers.pop(path) for path in mine]
        for shipper in stopping:
            shipper.last_line = False  # the instance may still write the rest of that line
            shipper.stop()


background_worker(_StopShippers)
