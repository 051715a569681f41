"""The buffered access-log writer: whole JSON lines, flushed in time, never split mid-line."""

import asyncio
import io
import json

from service.access_log import MAX_WAITING_LINES, PIPE_BUF, AccessLogWriter


class RecordingStream(io.StringIO):
    def __init__(self):
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def test_lines_reach_the_stream_within_the_flush_interval():
    stream = RecordingStream()
    writer = AccessLogWriter(stream, flush_seconds=0.05)

    async def scenario():
        writer.write({"path": "/predict", "status": 200})
        writer.write({"path": "/models", "status": 200})
        assert stream.getvalue() == ""  # buffered
        await asyncio.sleep(0.2)

    asyncio.run(scenario())
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["path"] for line in lines] == ["/predict", "/models"]
    assert all(line["time"].endswith("Z") and len(line["time"]) == len("2026-01-01T00:00:00.000Z") for line in lines)


def test_a_full_buffer_is_written_at_once_in_pipe_sized_chunks_of_whole_lines():
    stream = RecordingStream()
    writer = AccessLogWriter(stream, flush_seconds=60)

    async def scenario():
        for index in range(MAX_WAITING_LINES):
            writer.write({"index": index, "padding": "x" * 100})

    asyncio.run(scenario())
    assert len(stream.getvalue().splitlines()) == MAX_WAITING_LINES
    assert len(stream.writes) > 1
    assert all(len(chunk.encode()) <= PIPE_BUF and chunk.endswith("\n") for chunk in stream.writes)


def test_a_line_longer_than_a_chunk_is_written_whole_and_non_ascii_text_is_escaped():
    stream = RecordingStream()
    writer = AccessLogWriter(stream)
    writer.write({"texts": ["é" * PIPE_BUF]})  # no event loop: written at once
    (chunk,) = stream.writes
    assert chunk.isascii() and json.loads(chunk)["texts"] == ["é" * PIPE_BUF]
