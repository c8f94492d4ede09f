"""``rule ...``: admins read, add, order, switch off and dry-run the routing rules.

The first edit copies the rules from ``bot.toml`` into the database; from then on the
stored list is the one in force (``rule list`` says which) and ``[[rule]]`` in the
file is no longer read, so a file edit can never silently reorder what admins set.
"""

from __future__ import annotations

import json
from typing import Any

from bot.admin.action import AdminAction, take_option
from bot.config import ConfigError
from bot.domain import ArticleKind, TicketError
from bot.mail import Address, InboundEmail
from bot.rules import FIELDS, Rule, RuleInput, explain, parse_rules

USAGE = """\
rule list
rule add [--name NAME] FIELD=TEXT ... => queue=Q priority=N tags=a,b spam
         (FIELD: subject body from to language sender_mark header:Name; add _regex for a regex)
rule move N M
rule disable N  ·  rule enable N  ·  rule remove N
rule test N|all --ticket NUMBER      (a dry run on the ticket's first mail; nothing changes)"""


def run(act: AdminAction) -> str:
    if not act.words:
        raise TicketError("Usage:\n" + USAGE)
    sub = act.words.pop(0).lower()
    handler = _HANDLERS.get(sub)
    if handler is None:
        raise TicketError(f"Unknown rule command {sub!r}. Usage:\n{USAGE}")
    return handler(act)


def _tables(act: AdminAction) -> list[dict[str, Any]]:
    return [dict(t) for t in act.config.rule_tables]


def _save(act: AdminAction, tables: list[dict[str, Any]], action: str, detail: str) -> None:
    before = json.dumps(_tables(act), ensure_ascii=False)
    try:
        parse_rules(tables, {q.name for q in act.config.queues})
    except ConfigError as exc:
        raise TicketError(f"That rule is not valid: {exc}") from None
    act.repo.set_desk_setting("rules", tables, act.now, act.actor.user_id)
    act.audit(action, detail, before=before, after=json.dumps(tables, ensure_ascii=False))
    act.check()


def _number(act: AdminAction, text: str, count: int) -> int:
    if not text.isdigit() or not 1 <= int(text) <= count:
        raise TicketError(f"{text!r} is not a rule number (1-{count}); see rule list")
    return int(text)


def describe(rule: Rule) -> str:
    conditions = " and ".join(f"{c.label} {c.operator} {c.value!r}" for c in rule.conditions)
    state = "" if rule.enabled else " [disabled]"
    return f"{rule.title}{state}: if {conditions} => {rule.actions()}"


def list_rules(act: AdminAction) -> str:
    stored = act.repo.desk_setting("rules") is not None
    source = (
        "set by admins' commands (bot.toml's [[rule]] is not read)" if stored else "from bot.toml"
    )
    if not act.config.rules:
        return f"No routing rules ({source}). Add one: rule add subject=invoice => queue=finance"
    lines = [describe(rule) for rule in act.config.rules]
    return f"Routing rules, first match wins ({source}):\n" + "\n".join(lines)


def add(act: AdminAction) -> str:
    name = take_option(act.words, "--name") or ""
    if "=>" not in act.words:
        raise TicketError("Usage: " + USAGE.splitlines()[1])
    split = act.words.index("=>")
    conditions, actions = act.words[:split], act.words[split + 1 :]
    if not conditions or not actions:
        raise TicketError("A rule needs conditions before => and actions after it.")
    match: dict[str, str] = {}
    for word in conditions:
        field, sep, value = word.partition("=")
        if not sep or not value:
            raise TicketError(f"{word!r}: write FIELD=TEXT (quote text with spaces)")
        base = field.removesuffix("_regex")
        if base not in FIELDS and not base.startswith("header:"):
            raise TicketError(
                f"unknown field {field!r}: {', '.join(FIELDS)}, header:Name "
                "(add _regex for a regex)"
            )
        match[field] = value
    table: dict[str, Any] = {"match": match}
    if name:
        table["name"] = name
    for word in actions:
        key, sep, value = word.partition("=")
        if key == "spam" and not sep:
            table["spam"] = True
        elif key == "queue" and value:
            queue = act.queue(value)
            table["queue"] = queue.name
        elif key == "priority" and value.isdigit():
            table["priority"] = int(value)
        elif key == "tags" and value:
            table["tags"] = [t for t in value.split(",") if t]
        else:
            raise TicketError(f"{word!r}: actions are queue=Q, priority=1-5, tags=a,b or spam")
    tables = [*_tables(act), table]
    _save(act, tables, "rule.add", f"rule {len(tables)}")
    rule = parse_rules(tables, {q.name for q in act.config.queues})[-1]
    return f"Added {describe(rule)}. Try it: rule test {len(tables)} --ticket NUMBER"


def move(act: AdminAction) -> str:
    tables = _tables(act)
    if len(act.words) != 2:
        raise TicketError("Usage: rule move N M")
    source = _number(act, act.words[0], len(tables))
    target = _number(act, act.words[1], len(tables))
    table = tables.pop(source - 1)
    tables.insert(target - 1, table)
    _save(act, tables, "rule.move", f"rule {source} -> {target}")
    return f"Rule {source} is now rule {target}.\n" + list_rules_after(act, tables)


def list_rules_after(act: AdminAction, tables: list[dict[str, Any]]) -> str:
    rules = parse_rules(tables, {q.name for q in act.config.queues})
    return "\n".join(describe(r) for r in rules)


def _switch(act: AdminAction, enabled: bool) -> str:
    tables = _tables(act)
    verb = "enable" if enabled else "disable"
    if len(act.words) != 1:
        raise TicketError(f"Usage: rule {verb} N")
    number = _number(act, act.words[0], len(tables))
    tables[number - 1]["enabled"] = enabled
    _save(act, tables, f"rule.{verb}", f"rule {number}")
    return f"Rule {number} is {verb}d."


def disable(act: AdminAction) -> str:
    return _switch(act, False)


def enable(act: AdminAction) -> str:
    return _switch(act, True)


def remove(act: AdminAction) -> str:
    tables = _tables(act)
    if len(act.words) != 1:
        raise TicketError("Usage: rule remove N")
    number = _number(act, act.words[0], len(tables))
    gone = tables.pop(number - 1)
    _save(act, tables, "rule.remove", f"rule {number}: {json.dumps(gone, ensure_ascii=False)}")
    return f"Rule {number} removed; the rules after it moved up."


def test(act: AdminAction) -> str:
    number_text = take_option(act.words, "--ticket")
    if number_text is None or len(act.words) != 1:
        raise TicketError("Usage: rule test N|all --ticket NUMBER")
    ticket = act.repo.ticket_by_number(number_text.lstrip("#"))
    if ticket is None or ticket.id is None:
        raise TicketError(f"There is no ticket {number_text}.")
    item = _rule_input(act, ticket.id, ticket.language)
    rules = act.config.rules
    head = f"Dry run on ticket {ticket.number} (nothing changes):"
    if act.words[0].lower() == "all":
        return "\n".join([head, *explain(rules, item)])
    number = _number(act, act.words[0], len(rules))
    rule = rules[number - 1]
    ok, reasons = rule.check(item)
    state = "" if rule.enabled else " (it is disabled, so it would not be used)"
    if ok:
        return f"{head}\n{rule.title} would fire{state}: {', '.join(reasons)} => {rule.actions()}"
    return f"{head}\n{rule.title} would not fire: {reasons[0]}"


def _rule_input(act: AdminAction, ticket_id: int, language: str) -> RuleInput:
    first = next((a for a in act.repo.articles(ticket_id) if a.kind is ArticleKind.INBOUND), None)
    if first is None or first.id is None:
        raise TicketError("That ticket has no received mail to test the rules on.")
    raw = act.repo.raw_message_of(first.id) or b""
    email = InboundEmail(
        raw=raw,
        message_id=first.message_id or "",
        subject=first.subject,
        sender=Address(first.author, first.author_name),
        to=tuple(Address(a) for a in first.to),
        cc=tuple(Address(a) for a in first.cc),
        text=first.body,
        auto_kind=first.auto_kind,
    )
    return RuleInput(email, language, frozenset(act.repo.sender_marks(first.author)))


_HANDLERS = {
    "list": list_rules,
    "add": add,
    "move": move,
    "disable": disable,
    "enable": enable,
    "remove": remove,
    "test": test,
}
