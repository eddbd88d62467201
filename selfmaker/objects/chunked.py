"""aws-chunked request bodies: ``<hex size>[;chunk-signature=..]\\r\\n<data>\\r\\n`` ... ``0\\r\\n<trailers>\\r\\n``.

SDKs send them for streaming uploads (x-amz-content-sha256 STREAMING-*), often
with a checksum as a trailer after the last chunk. The decoder yields the data
and collects the trailers once the body ends. When the upload is signed chunk
by chunk (strict mode hands us the authenticator's ChunkVerifier), each chunk is
held until its signature is checked, so no unverified byte is passed on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..server.errors import AWSError

_MAX_LINE = 8192
_MAX_SIGNED_CHUNK = 16 << 20  # signed chunks are buffered whole; SDKs send 64 KiB to 8 MiB


def incomplete() -> AWSError:
    return AWSError("IncompleteBody", "The request body ended before the aws-chunked encoding did.")


class AwsChunkedDecoder:
    def __init__(self, stream: AsyncIterator[bytes], verifier=None):
        self._stream = stream.__aiter__()
        self._buffer = bytearray()
        self._verifier = verifier  # selfmaker.server.sigv4.ChunkVerifier, for signed chunks
        self.trailers: dict[str, str] = {}  # lower-cased names; complete once iteration has finished

    async def _more(self) -> bool:
        try:
            self._buffer += await self._stream.__anext__()
            return True
        except StopAsyncIteration:
            return False

    async def _fill(self, size: int) -> None:
        while len(self._buffer) < size:
            if not await self._more():
                raise incomplete()

    async def _line(self) -> str:
        while (end := self._buffer.find(b"\r\n")) < 0:
            if len(self._buffer) > _MAX_LINE:
                raise AWSError("InvalidRequest", "An aws-chunked header line is too long.")
            await self._fill(len(self._buffer) + 1)
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line.decode("latin-1")

    async def __aiter__(self):
        while True:
            size, signature = self._chunk_header(await self._line())
            if self._verifier is not None:
                if size > _MAX_SIGNED_CHUNK:
                    raise AWSError("InvalidRequest", "A signed aws-chunked chunk is larger than 16 MiB.")
                await self._fill(size)
                data = bytes(self._buffer[:size])
                del self._buffer[:size]
                self._verifier.chunk(data, signature)
                if data:
                    yield data
            else:
                remaining = size
                while remaining:  # pass data on as it arrives rather than holding whole chunks
                    if not self._buffer:
                        await self._fill(1)
                    take = min(remaining, len(self._buffer))
                    yield bytes(self._buffer[:take])
                    del self._buffer[:take]
                    remaining -= take
            if size == 0:
                break
            if await self._line() != "":
                raise AWSError("InvalidRequest", "An aws-chunked chunk is longer than its declared size.")
        await self._read_trailers()

    def _chunk_header(self, header: str) -> tuple[int, str]:
        size_text, _, extension = header.partition(";")
        try:
            size = int(size_text.strip(), 16)
        except ValueError:
            raise AWSError("InvalidRequest", f"Invalid aws-chunked chunk header {header[:64]!r}.") from None
        name, _, signature = extension.partition("=")
        if self._verifier is not None and name.strip() != "chunk-signature":
            raise AWSError("InvalidRequest", "A chunk of a signed aws-chunked upload has no chunk-signature.")
        return size, signature.strip()

    async def _read_trailers(self) -> None:
        """Trailing headers up to the blank line (or the end of the body) that closes them."""
        lines = []
        while self._buffer or await self._more():
            line = await self._line()
            if not line:
                break
            lines.append(line)
        signature = None
        for line in lines:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "x-amz-trailer-signature":
                signature = value
            else:
                self.trailers[name] = value
        if self._verifier is not None and self.trailers:
            if signature is None:
                raise AWSError("InvalidRequest", "The signed aws-chunked upload's trailer is not signed.")
            canonical = "".join(f"{name}:{value}\n" for name, value in self.trailers.items())
            self._verifier.trailer(canonical.encode(), signature)
