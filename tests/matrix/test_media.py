"""Files shown with an answer: PNG sizes from the header, and the events that show them."""

from __future__ import annotations

import struct
import zlib

from adapters.matrix.media import PNG_SIGNATURE, file_content, png_size
from adapters.matrix.render import reply_relation, thread_relation
from adapters.matrix.text import ZWJ
from bot.files import ResultFile


def png(width: int, height: int) -> bytes:
    """A real (grey, 8-bit) PNG of the given size, as a chart renderer would write one."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (
        PNG_SIGNATURE
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_png_size_is_read_from_the_header() -> None:
    assert png_size(png(640, 480)) == (640, 480)
    assert png_size(png(1, 70_000)) == (1, 70_000)
    assert png_size(b"GIF89a" + b"\x00" * 30) is None
    assert png_size(PNG_SIGNATURE + b"\x00\x00\x00\x0dIHDR") is None  # cut short
    broken = bytearray(png(3, 3))
    broken[12:16] = b"IDAT"  # IHDR must come first
    assert png_size(bytes(broken)) is None
    assert png_size(PNG_SIGNATURE + b"\x00\x00\x00\x0dIHDR" + b"\x00" * 8) is None  # 0 x 0


def test_an_image_is_shown_as_m_image_with_its_size() -> None:
    data = png(800, 400)
    chart = ResultFile("tickets-per-week.png", "image/png", data)
    relation = thread_relation("$root:localhost", "$cmd:localhost")
    content = file_content(chart, "mxc://localhost/abc", relation)
    assert content == {
        "msgtype": "m.image",
        "body": "tickets-per-week.png",
        "filename": "tickets-per-week.png",
        "url": "mxc://localhost/abc",
        "info": {"mimetype": "image/png", "size": len(data), "w": 800, "h": 400},
        "m.mentions": {},
        "m.relates_to": relation,
    }
    jpeg = file_content(ResultFile("photo.jpg", "image/jpeg", b"\xff\xd8"), "mxc://x/y", None)
    assert jpeg["msgtype"] == "m.image"
    assert jpeg["info"] == {"mimetype": "image/jpeg", "size": 2}  # size unknown: not guessed
    assert "m.relates_to" not in jpeg


def test_other_files_are_m_file_and_their_names_ping_nobody() -> None:
    csv = ResultFile("@room tickets.csv", "text/csv", b"number,state\n1,open\n")
    content = file_content(csv, "mxc://localhost/csv", reply_relation("$cmd:localhost"))
    assert content["msgtype"] == "m.file"
    assert content["info"] == {"mimetype": "text/csv", "size": 20}
    assert content["body"] == content["filename"] == f"@{ZWJ}room tickets.csv"
    assert content["m.mentions"] == {}
    svg = file_content(ResultFile("chart.svg", "image/svg+xml", b"<svg/>"), "mxc://x/y", None)
    assert svg["msgtype"] == "m.file"  # not an image clients may inline safely
    long = file_content(ResultFile("x" * 500 + ".csv", "text/csv", b""), "mxc://x/y", None)
    assert len(long["body"]) == 200
