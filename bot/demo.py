"""``ticketbot demo``: the bot on the shipped config with sample mail, driven from the terminal.

The samples (several languages, an HTML-only mail, a follow-up, an auto-reply) are
copied into the configured Maildir the first time, when the database has no
tickets yet; later runs show the tickets already there.
"""

from __future__ import annotations

import shutil
import sys
import time
from importlib import resources
from pathlib import Path
from typing import TextIO

from bot.app import build_app
from bot.config import Config, ConfigError

BANNER = """\
ticketbot demo — you are {user} at the console.
Sample mail is read from {maildir}; replies are written as .eml files to {outgoing}.
Type !help for the commands (!claim, !reply TEXT, !note TEXT, !close, !show ...);
commands without a ticket number apply to the ticket you last named.
End input (Ctrl-D) to stop.
"""


def seed_samples(maildir: Path) -> int:
    """Copy the shipped sample mails into ``maildir/new``; returns how many."""
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    samples = sorted(
        (
            p
            for p in resources.files("bot").joinpath("demo_mail").iterdir()
            if p.name.endswith(".eml")
        ),
        key=lambda p: p.name,
    )
    stamp = int(time.time())
    for index, sample in enumerate(samples):
        target = maildir / "new" / f"{stamp}.demo{index:02d}.{sample.name}"
        with resources.as_file(sample) as path:
            shutil.copyfile(path, target)
    return len(samples)


async def run_demo(
    config: Config, stdin: TextIO | None = None, stdout: TextIO | None = None
) -> None:
    if config.mail.maildir is None:
        raise ConfigError("mail.maildir", "the demo reads its sample mail from a Maildir")
    if config.console is None or not config.console.enabled:
        raise ConfigError("console.enabled", "the demo needs the console adapter")
    out = stdout or sys.stdout
    app = await build_app(config, stdin=stdin, stdout=out)
    existing = await app.store.run(lambda repo: repo.count_tickets())
    if existing == 0:
        seed_samples(config.mail.maildir.path)
    outgoing = config.mail.files.path if config.mail.files else "SMTP"
    print(
        BANNER.format(
            user=config.console.user, maildir=config.mail.maildir.path, outgoing=outgoing
        ),
        file=out,
        flush=True,
    )
    if existing:
        print(
            f"The database already holds {existing} ticket(s) from an earlier run; "
            "use !show NUMBER, or delete the var/ folder for a fresh start.",
            file=out,
            flush=True,
        )
    await app.run()
