"""Ship an instance's output file to CloudWatch Logs, line by line, while it runs.

A shipper tails one file and appends complete lines to one stream; the byte
offset it has shipped is kept next to the file, so a restarted server resumes
where the last one stopped (a crash between an append and the offset write
can repeat the lines of that one batch, never lose any).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from ...aws.logs import log_store

POLL_SECONDS = 0.2
MAX_EVENT_BYTES = 256 * 1024 - 26  # CloudWatch's event size limit, less its per-event overhead

_shippers: dict[Path, Shipper] = {}
_lock = threading.Lock()


class Shipper:
    def __init__(self, store, account_id: str, region: str, group: str, stream: str, path: Path):
        self.store, self.account_id, self.region = store, account_id, region
        self.group, self.stream, self.path = group, stream, path
        self.offset_path = path.with_name(path.name + ".shipped")
        self._stop = threading.Event()
        self._flush_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"logs-{stream}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self.flush()
            except Exception:  # the store is closing or busy: try again on the next tick
                pass

    def flush(self, final: bool = False) -> None:
        """Ship every complete line written so far (and, if ``final``, a last unterminated one)."""
        with self._flush_lock:
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

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(2)
        self.flush(final=True)


def follow(store, account_id: str, region: str, group: str, stream: str, path: Path) -> None:
    """Start shipping ``path`` unless it is shipped already (idempotent)."""
    with _lock:
        if path in _shippers:
            return
        shipper = _shippers[path] = Shipper(store, account_id, region, group, stream, path)
    shipper._thread.start()


def finish(path: Path, store=None, account_id: str = "", region: str = "", group: str = "", stream: str = "") -> None:
    """Ship the rest of ``path`` and stop following it (works after a restart too, given the stream)."""
    with _lock:
        shipper = _shippers.pop(path, None)
    if shipper is None and store is not None:
        shipper = Shipper(store, account_id, region, group, stream, path)
    if shipper is not None:
        shipper.close()
