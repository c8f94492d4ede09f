"""Reading volunteers' ``!`` commands from standard input.

The console has no threads, so it remembers the ticket you last named (or the
newest one shown) and commands without a number apply to it, the way a command in
a Matrix thread applies to that thread's ticket.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TextIO

from adapters.console.render import safe
from bot.commands import ChatContext, CommandRequest, CommandResult, parse_command
from bot.domain import Actor
from bot.files import ResultFile

Execute = Callable[[CommandRequest], Awaitable[CommandResult]]


class ConsoleRepl:
    def __init__(
        self,
        execute: Execute,
        actor: Actor,
        *,
        after_command: Callable[[], Awaitable[object]] | None = None,
        stdin: TextIO | None = None,
        out: TextIO | None = None,
        files_dir: Path | None = None,
    ) -> None:
        self._execute = execute
        #: Where files a command answers with (charts, CSV) are saved: a terminal
        #: cannot show them.
        self._files_dir = files_dir or Path("var/reports")
        self._actor = actor
        self._after = after_command
        self._in = stdin or sys.stdin
        self._out = out or sys.stdout
        self.current: str | None = None

    def _print(self, text: str) -> None:
        print(text, file=self._out, flush=True)

    async def run(self) -> None:
        """Read commands until end of input."""
        interactive = self._in.isatty()
        lines = self._start_reader()
        while True:
            if interactive:
                where = f"[{self.current}]" if self.current else ""
                print(f"ticketbot{where}> ", end="", file=self._out, flush=True)
            line = await lines.get()
            if not line:
                return
            await self.handle_line(line)

    def _start_reader(self) -> asyncio.Queue[str]:
        """Read standard input on a daemon thread.

        A blocking ``readline`` cannot be cancelled; on the default executor it would
        keep the process from exiting on SIGTERM until someone pressed Enter.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str] = asyncio.Queue()

        def read() -> None:
            while True:
                try:
                    line = self._in.readline()
                except (OSError, ValueError):
                    line = ""
                try:
                    loop.call_soon_threadsafe(queue.put_nowait, line)
                except RuntimeError:  # the loop is closed: we are shutting down
                    return
                if not line:
                    return

        threading.Thread(target=read, name="console-stdin", daemon=True).start()
        return queue

    async def handle_line(self, line: str) -> None:
        line = line.strip()
        if not line or line.startswith("#"):
            return
        parsed = parse_command(line, "!")
        if parsed is None:
            self._print("Commands start with !, for example !help")
            return
        name, args = parsed
        request = CommandRequest(
            self._actor, name, args, ChatContext("console", None, None, self.current)
        )
        result = await self._execute(request)
        if self._after is not None:
            await self._after()  # print what the command caused before the next prompt
        if result.ok and result.ticket_number:
            self.current = result.ticket_number
        if not result.ok:
            self._print(f"  ✖ {safe(result.message)}")
        elif not result.shown_in_thread:
            self._print(safe(result.message))
        for file in result.files:
            self._print(f"  saved {file.content_type}: {self._save(file)}")

    def _save(self, file: ResultFile) -> Path:
        self._files_dir.mkdir(parents=True, exist_ok=True)
        name = Path(file.name).name or "file"  # never a path from elsewhere
        target = self._files_dir / name
        target.write_bytes(file.data)
        return target
