"""The buttons under every root message and under notices (Undo, Approve), and the text
box that Reply and Note open.

The buttons are *persistent* views: no timeout and fixed custom ids
(``ticketbot:claim``, ``ticketbot:undo``, ...). The adapter registers one instance of
each view at start, so clicks on messages posted long ago, before any restart, still
arrive. The views hold no ticket state: the clicked root message, or the thread the
clicked notice is in, is the ticket.

A modal is shown to one user for one ticket, so it remembers what it is for (the
command, the ticket number if one was given, where it was opened) until submitted.
It lives in memory only: a modal still open while the bot restarts cannot be
submitted (Discord says the interaction failed), and one left open longer than
:data:`MODAL_TIMEOUT` is forgotten.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

import discord

from adapters.discord.mapping import ACTION_BUTTONS, BUTTON_PREFIX, BUTTONS
from bot.commands import CommandRequest

log = logging.getLogger(__name__)

#: Discord's longest text input.
TEXT_LIMIT = 4000
#: How long an open modal is remembered (seconds): time enough to write a reply.
MODAL_TIMEOUT = 3600.0
TITLE_LIMIT = 45  # Discord's limit for a modal title and a text input label

_STYLES = {
    "claim": discord.ButtonStyle.primary,
    "reply": discord.ButtonStyle.success,
    "note": discord.ButtonStyle.secondary,
    "close": discord.ButtonStyle.danger,
    "undo": discord.ButtonStyle.danger,
    "approve": discord.ButtonStyle.success,
}
_EMOJI = {"claim": "✋", "reply": "↩️", "note": "📝", "close": "✅", "undo": "🛑", "approve": "✅"}


class Actions(Protocol):
    """What the buttons and modals call: the adapter's interaction handler."""

    async def on_button(self, interaction: discord.Interaction[Any], action: str) -> None: ...

    async def on_modal(self, interaction: discord.Interaction[Any], modal: TextModal) -> None: ...


class _TicketButton(discord.ui.Button[discord.ui.View]):
    def __init__(self, action: str, label: str, actions: Actions) -> None:
        super().__init__(
            label=label,
            style=_STYLES.get(action, discord.ButtonStyle.secondary),
            emoji=_EMOJI.get(action),
            custom_id=f"{BUTTON_PREFIX}{action}",
        )
        self.action = action
        self._actions = actions

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await self._actions.on_button(interaction, self.action)


class TicketButtons(discord.ui.View):
    """Claim, Reply, Note, Close: the same view on every root message."""

    def __init__(self, actions: Actions) -> None:
        super().__init__(timeout=None)
        for action, label in BUTTONS.items():
            self.add_item(_TicketButton(action, label, actions))

    async def on_error(
        self, interaction: discord.Interaction[Any], error: Exception, item: discord.ui.Item[Any]
    ) -> None:
        log.error("discord: button %s failed", getattr(item, "custom_id", "?"), exc_info=error)


class ActionButtons(discord.ui.View):
    """Undo, Approve and the other one-click commands a notice in a ticket's thread may
    offer (the core names them in ``post_notice``'s ``actions``).

    Registered as persistent at start, with one button per :data:`ACTION_BUTTONS`
    entry, so a click on any notice's button arrives whatever the notice showed.
    """

    def __init__(self, actions: Actions, offered: Sequence[str] | None = None) -> None:
        super().__init__(timeout=None)
        for action in ACTION_BUTTONS if offered is None else offered:
            label = BUTTONS.get(action) or ACTION_BUTTONS[action]
            self.add_item(_TicketButton(action, label, actions))

    async def on_error(
        self, interaction: discord.Interaction[Any], error: Exception, item: discord.ui.Item[Any]
    ) -> None:
        log.error("discord: button %s failed", getattr(item, "custom_id", "?"), exc_info=error)


def offered_buttons(actions: Sequence[str]) -> list[str]:
    """The ``actions`` of a notice that have a button, once each (at most 5: one row)."""
    known = [a for a in dict.fromkeys(actions) if a in BUTTONS or a in ACTION_BUTTONS]
    return known[:5]


class TextModal(discord.ui.Modal):
    """Asks for the text of a reply or note; its submit carries out ``template`` with it.

    ``template`` is the request as it stood when the modal was opened (who, where,
    which command); ``number`` the ticket number given, if any.
    """

    def __init__(
        self, actions: Actions, template: CommandRequest, number: str | None, title: str
    ) -> None:
        super().__init__(
            title=title[:TITLE_LIMIT],
            timeout=MODAL_TIMEOUT,
            custom_id=f"{BUTTON_PREFIX}modal:{template.name}:{uuid.uuid4().hex}",
        )
        self.template = template
        self.number = number
        self._actions = actions
        if template.name == "reply":
            label = "Reply (emailed to the requester)"
            hint = "The email's text; may start with --template NAME or --force"
        else:
            label, hint = "Internal note (never emailed)", "Only volunteers see this"
        self.text: discord.ui.TextInput[TextModal]
        if hasattr(discord.ui, "Label"):  # discord.py 2.6+: the label is a component of its own
            self.text = discord.ui.TextInput(
                style=discord.TextStyle.paragraph,
                custom_id=f"{BUTTON_PREFIX}text",
                placeholder=hint,
                max_length=TEXT_LIMIT,
                required=True,
            )
            self.add_item(discord.ui.Label(text=label[:TITLE_LIMIT], component=self.text))
        else:  # pragma: no cover - older discord.py
            self.text = discord.ui.TextInput(
                label=label[:TITLE_LIMIT],
                style=discord.TextStyle.paragraph,
                custom_id=f"{BUTTON_PREFIX}text",
                placeholder=hint,
                max_length=TEXT_LIMIT,
                required=True,
            )
            self.add_item(self.text)

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        await self._actions.on_modal(interaction, self)
