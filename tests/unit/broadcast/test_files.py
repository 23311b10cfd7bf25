"""A version's files as one byte stream, and range requests over a shard."""

from __future__ import annotations

import pytest

from asyncrl.broadcast.files import Span, VersionFiles
from asyncrl.broadcast.transfer import RangeNotSatisfiable, parse_range

CONTENT = {"a.json": b"0123456789", "empty": b"", "dir/b.bin": b"abcdefghij" * 3, "c.txt": b"XYZ"}


def _layout() -> list[Span]:
    spans, offset = [], 0
    for path, data in CONTENT.items():
        spans.append(Span(path, len(data), offset))
        offset += len(data)
    return spans


def test_ranges_read_across_file_boundaries_and_skip_empty_files(tmp_path):
    for path, data in CONTENT.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(data)
    files = VersionFiles(tmp_path, _layout())
    stream = b"".join(CONTENT.values())
    for offset, size in [(0, 43), (5, 10), (9, 2), (38, 5), (10, 30), (42, 1)]:
        assert files.read(offset, size) == stream[offset : offset + size]
    assert list(files.chunks(8, 6, 3)) == [b"89", b"abc", b"d"]
    with pytest.raises(ValueError):
        files.read(40, 10)


def test_written_ranges_land_in_the_right_files(tmp_path):
    files = VersionFiles(tmp_path / "out", _layout())
    files.allocate()
    stream = b"".join(CONTENT.values())
    for offset in (20, 0, 7, 35):  # out of order, as parallel shards arrive
        end = {20: 35, 0: 7, 7: 20, 35: 43}[offset]
        files.write(offset, stream[offset:end])
    files.close()
    for path, data in CONTENT.items():
        assert (tmp_path / "out" / path).read_bytes() == data


def test_a_truncated_file_is_never_served_as_whole(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"short")
    files = VersionFiles(tmp_path, [Span("a.bin", 10, 0)])
    with pytest.raises(OSError, match="shorter"):
        files.read(0, 10)


@pytest.mark.parametrize(
    ("header", "span"),
    [(None, None), ("bytes=0-9", (0, 10)), ("bytes=5-", (5, 100)), ("bytes=-10", (90, 100)),
     ("bytes=95-500", (95, 100)), ("items=1-2", None), ("bytes=1-2,5-6", None), ("bytes=x-", None)],
)  # fmt: skip
def test_range_headers(header, span):
    assert parse_range(header, 100) == span


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=50-10"])
def test_ranges_outside_the_body_are_not_satisfiable(header):
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 100)
