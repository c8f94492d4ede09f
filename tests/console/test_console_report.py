"""The weekly report on the console: the text printed, the files saved and named."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from adapters.console.gateway import ConsoleGateway, base_name
from bot.files import ResultFile

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40


async def test_the_text_is_printed_and_the_files_saved(tmp_path: Path) -> None:
    out = io.StringIO()
    gateway = ConsoleGateway(out, files_dir=tmp_path / "reports")
    files = (
        ResultFile("traffic-2026-W47.png", "image/png", PNG),
        ResultFile("traffic.csv", "text/csv", b"day,new\n2026-11-23,4\n"),
    )
    text = "📊 Weekly traffic report\n\x1b]0;pwned\x07 12 new tickets"
    await gateway.post_report("console", text, files, "weekly-2026-11-23-console")

    saved = tmp_path / "reports"
    assert (saved / "traffic-2026-W47.png").read_bytes() == PNG
    assert (saved / "traffic.csv").read_bytes() == b"day,new\n2026-11-23,4\n"
    printed = out.getvalue()
    assert "\x1b" not in printed and "\x07" not in printed
    assert printed.splitlines() == [
        "📊 Weekly traffic report",
        "\ufffd]0;pwned\ufffd 12 new tickets",
        f"  📎 saved {saved / 'traffic-2026-W47.png'} (image/png, 48 bytes)",
        f"  📎 saved {saved / 'traffic.csv'} (text/csv, 21 bytes)",
    ]


async def test_file_names_are_reduced_to_their_base_name(tmp_path: Path) -> None:
    out = io.StringIO()
    folder = tmp_path / "a" / "reports"
    gateway = ConsoleGateway(out, files_dir=folder)
    files = (
        ResultFile("../../escape.png", "image/png", PNG),
        ResultFile("/etc/passwd", "text/plain", b"x"),
        ResultFile("..\\..\\windows.csv", "text/csv", b"y"),
        ResultFile("..", "text/plain", b"z"),
        ResultFile("sub/escape.png", "image/png", PNG + b"2"),  # same base name: kept apart
        ResultFile("bell\x07.txt", "text/plain", b"w"),
    )
    await gateway.post_report("console", "report", files, "k")
    assert sorted(p.name for p in folder.iterdir()) == [
        "bell_.txt",
        "escape-2.png",
        "escape.png",
        "file",
        "passwd",
        "windows.csv",
    ]
    assert [p for p in tmp_path.rglob("*") if p.is_file() and p.parent != folder] == []
    assert (folder / "escape-2.png").read_bytes() == PNG + b"2"
    assert "\x07" not in out.getvalue()


async def test_a_retry_writes_the_same_files_again(tmp_path: Path) -> None:
    gateway = ConsoleGateway(io.StringIO(), files_dir=tmp_path)
    chart = ResultFile("traffic.png", "image/png", PNG)
    await gateway.post_report("console", "report", (chart,), "k")
    await gateway.post_report("console", "report", (chart,), "k")
    assert [p.name for p in tmp_path.iterdir()] == ["traffic.png"]


async def test_without_files_nothing_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    await ConsoleGateway(out).post_report("console", "nothing this week", (), "k")
    assert out.getvalue() == "nothing this week\n"
    assert list(tmp_path.iterdir()) == []


async def test_the_default_folder_is_var_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    await ConsoleGateway(out).post_report(
        "console", "r", (ResultFile("t.csv", "text/csv", b"1"),), "k"
    )
    assert (tmp_path / "var" / "reports" / "t.csv").read_bytes() == b"1"
    assert "var/reports/t.csv" in out.getvalue()


def test_base_name() -> None:
    assert base_name("C:\\Users\\x\\chart.png") == "chart.png"
    assert base_name(".hidden") == "hidden"
    assert base_name("   ") == "file"
    assert len(base_name("é" * 300).encode()) <= 200
