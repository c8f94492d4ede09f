"""Turn the HTML body of an email into plain text a volunteer can read in a chat room.

Mail is untrusted input, so this module has two jobs besides the conversion itself:

* It must never raise. Anything :class:`html.parser.HTMLParser` chokes on falls back to a
  crude tag stripper, because a ticket with rough text beats a lost ticket.
* It must stay linear in the input size. The stdlib parser rescans the rest of the
  document for every ``<`` that does not complete a tag, so a 25 kB mail of ``"<a "``
  repeated takes seconds and a megabyte takes hours. :func:`_canonicalize` therefore
  re-tokenizes the markup first in a single pass and hands the parser only well-formed
  tags and text that contains no stray ``<``.

What is rendered follows what a person sees in a mail client: hidden content (head,
scripts, styles, ``display:none`` preheaders) is dropped, images are dropped (they are
mostly logos and tracking pixels), and links keep their target so nothing that was
clickable gets lost.
"""

from __future__ import annotations

import re
from collections import Counter
from html import unescape
from html.parser import HTMLParser

__all__ = ["MAX_HTML_CHARS", "html_to_text"]

#: Bigger HTML bodies are cut before conversion: nobody reads megabytes of text in a
#: chat room, and this keeps the pure-Python tokenizer comfortably fast.
MAX_HTML_CHARS = 1_000_000

# Elements whose content is never shown to the reader.
_SKIP_CONTENT = frozenset({"script", "style", "head", "title", "template", "svg", "object"})
# Elements without an end tag; they are never pushed on the open-element stack.
_VOID = frozenset(
    {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "keygen",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
    }
)
# Elements that start and end on their own line.
_LINE_BLOCKS = frozenset(
    {
        "address",
        "article",
        "aside",
        "caption",
        "center",
        "dd",
        "details",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "section",
        "summary",
        "table",
        "tr",
        "ul",
    }
)
# Elements separated from their surroundings by a blank line.
_PARAGRAPHS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre"})
# A new one of these implicitly closes an open one at the top of the stack (as browsers do),
# so that a hidden <p> without an end tag does not hide the rest of the mail.
_SELF_CLOSING_SIBLINGS = frozenset({"p", "li", "tr", "td", "th", "dt", "dd", "option"})
_CELLS = frozenset({"td", "th"})
_LINK_SCHEMES = ("http://", "https://", "ftp://", "mailto:")

# Characters that are invisible but used in mail to pad preheaders or hide text.
_INVISIBLE = re.compile("[\u00ad\u034f\u200b\u2060\ufeff]")
# Private-use placeholders for whitespace that must survive whitespace collapsing.
_HARD_SPACE = "\ue000"
_HARD_TAB = "\ue001"
_PLACEHOLDERS = re.compile("[\ue000\ue001]")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_WHITESPACE = re.compile(r"\s+")

# Tokenizer pieces for _canonicalize. Each one only ever moves forward.
_TAG_NAME = re.compile(r"[a-zA-Z][^\s/>\x00]*")
_CLEAN_NAME = re.compile(r"[a-z][a-z0-9:_-]*")
_ATTR_NAME = re.compile(r"[^\s/>=\x00][^\s/>=\x00]*")
_VALID_ATTR = re.compile(r"[a-z_:][-a-z0-9_:.]*\Z")
_WS_SLASH = re.compile(r"[\s/]*")
_EQUALS = re.compile(r"\s*=\s*")
_BARE_VALUE = re.compile(r"[^\s>]*")


class _Finder:
    """``str.find`` / ``re.search`` that remember failures.

    Once a search from position *p* finds nothing, every search from a later position
    fails too, so it is answered at once. This is what keeps malformed markup linear.
    """

    def __init__(self, text: str) -> None:
        self._text = text
        self._failed_from: dict[str, int] = {}

    def find(self, needle: str, start: int) -> int:
        failed = self._failed_from.get(needle)
        if failed is not None and start >= failed:
            return -1
        found = self._text.find(needle, start)
        if found < 0:
            self._failed_from[needle] = start
        return found

    def find_end_tag(self, name: str, start: int) -> int:
        key = "</" + name
        failed = self._failed_from.get(key)
        if failed is not None and start >= failed:
            return -1
        match = re.compile(re.escape(key), re.IGNORECASE).search(self._text, start)
        if match is None:
            self._failed_from[key] = start
            return -1
        return match.start()


def _scan_start_tag(
    html: str, pos: int, finder: _Finder
) -> tuple[list[tuple[str, str]], int] | None:
    """Read the attributes of a start tag whose name ends at *pos*.

    Returns the attributes and the position after ``>``, or None when the document ends
    inside the tag.
    """
    attrs: list[tuple[str, str]] = []
    size = len(html)
    while True:
        skipped = _WS_SLASH.match(html, pos)
        pos = skipped.end() if skipped else pos
        if pos >= size:
            return None
        if html[pos] == ">":
            return attrs, pos + 1
        name_match = _ATTR_NAME.match(html, pos)
        if name_match is None:  # a stray "=" where a name should be
            pos += 1
            continue
        name = name_match.group().lower()
        pos = name_match.end()
        value = ""
        equals = _EQUALS.match(html, pos)
        if equals is not None:
            pos = equals.end()
            if pos < size and html[pos] in "\"'":
                close = finder.find(html[pos], pos + 1)
                if close < 0:
                    return None
                value = html[pos + 1 : close]
                pos = close + 1
            else:
                bare = _BARE_VALUE.match(html, pos)
                if bare is not None:  # always: the pattern matches the empty string
                    value = bare.group()
                    pos = bare.end()
        if _VALID_ATTR.match(name):
            attrs.append((name, value))


def _canonicalize(html: str) -> str:
    """Rewrite *html* into markup that :class:`HTMLParser` can parse in linear time.

    Comments, declarations and processing instructions are dropped, script and style
    contents are dropped, CDATA becomes text, every ``<`` that does not open a complete
    tag becomes ``&lt;``, and tags are re-emitted with clean names and quoted attributes.
    """
    finder = _Finder(html)
    out: list[str] = []
    size = len(html)
    i = 0
    while i < size:
        j = html.find("<", i)
        if j < 0:
            out.append(html[i:])
            break
        out.append(html[i:j])
        i = j
        if html.startswith("<!--", i):
            end = finder.find("-->", i + 4)
            if end < 0:
                break  # an unclosed comment swallows the rest, as in browsers
            i = end + 3
            continue
        if html.startswith("<![CDATA[", i):
            end = finder.find("]]>", i + 9)
            if end < 0:
                out.append("&lt;")
                i += 1
                continue
            out.append(html[i + 9 : end].replace("&", "&amp;").replace("<", "&lt;"))
            i = end + 3
            continue
        if html.startswith(("<!", "<?"), i):
            end = finder.find(">", i + 2)
            if end < 0:
                out.append("&lt;")
                i += 1
                continue
            i = end + 1
            continue
        if html.startswith("</", i):
            name_match = _TAG_NAME.match(html, i + 2)
            end = finder.find(">", i + 2)
            if end < 0:
                out.append("&lt;")
                i += 1
                continue
            if name_match is not None:
                clean = _CLEAN_NAME.match(name_match.group().lower())
                if clean is not None:
                    out.append(f"</{clean.group()}>")
            i = end + 1  # end tags without a name are bogus comments: dropped
            continue
        name_match = _TAG_NAME.match(html, i + 1)
        clean = _CLEAN_NAME.match(name_match.group().lower()) if name_match else None
        if name_match is None or clean is None:
            out.append("&lt;")
            i += 1
            continue
        scanned = _scan_start_tag(html, name_match.end(), finder)
        if scanned is None:
            # The document ends inside this tag: keep the rest as text so nothing is lost.
            out.append(html[i:].replace("<", "&lt;"))
            break
        attrs, i = scanned
        name = clean.group()
        rendered = "".join(f' {key}="{value.replace(chr(34), "&quot;")}"' for key, value in attrs)
        out.append(f"<{name}{rendered}>")
        if name in ("script", "style"):
            # Raw text elements: skip to their end tag; HTMLParser never sees the body.
            end_tag = finder.find_end_tag(name, i)
            if end_tag < 0:
                break
            close = finder.find(">", end_tag)
            if close < 0:
                break
            out.append(f"</{name}>")
            i = close + 1
    return "".join(out)


def _is_hidden(attrs: list[tuple[str, str | None]]) -> bool:
    """True for elements a mail client would not display (preheaders, Outlook-only parts)."""
    for key, value in attrs:
        if key == "hidden":
            return True
        if key == "style" and value:
            style = _WHITESPACE.sub("", value.lower())
            if "display:none" in style or "visibility:hidden" in style or "mso-hide:all" in style:
                return True
    return False


def _same_target(text: str, url: str) -> bool:
    """Whether showing *url* after the link *text* would only repeat it."""

    def norm(value: str) -> str:
        value = value.strip().lower()
        for prefix in _LINK_SCHEMES:
            if value.startswith(prefix):
                value = value[len(prefix) :]
                break
        if value.startswith("www."):
            value = value[4:]
        return value.split("?", 1)[0].rstrip("/") if "@" in value else value.rstrip("/")

    return norm(text) == norm(url)


class _TextBuilder(HTMLParser):
    """Collects readable text from parser events.

    Line breaks are requested rather than written: the strongest request since the last
    text wins, and it is only written when more text follows. That is what keeps
    ``<div><p>a</p></div><p>b</p>`` to a single blank line and drops leading and trailing
    blank lines for free.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._stack: list[tuple[str, bool]] = []
        self._open: Counter[str] = Counter()
        self._hidden = 0
        self._pending_breaks = 0
        self._pending_space = False
        self._line_prefix = ""
        self._at_line_start = True
        self._quote_depth = 0
        self._links: list[tuple[str, int]] = []

    # Stack bookkeeping -----------------------------------------------------------------

    def _push(self, tag: str, hides: bool) -> None:
        self._stack.append((tag, hides))
        self._open[tag] += 1
        self._hidden += hides

    def _pop_to(self, tag: str) -> None:
        """Close *tag* and everything opened inside it that was left unclosed."""
        while self._stack:
            name, hides = self._stack.pop()
            self._open[name] -= 1
            self._hidden -= hides
            self._element_ended(name)
            if name == tag:
                return

    # Output ------------------------------------------------------------------------------

    def _request_break(self, count: int) -> None:
        self._pending_breaks = max(self._pending_breaks, count)
        self._pending_space = False

    def _emit(self, text: str) -> None:
        """Append inline *text*, writing any pending line break and prefixes first."""
        if not text.strip(" "):
            # Pure whitespace only matters as a gap between two words on one line.
            if text and not self._pending_breaks and not self._at_line_start:
                self._pending_space = True
            return
        depth = self._open["blockquote"]
        if self._pending_breaks and self.parts:
            blank = "\n" + ("> " * min(depth, self._quote_depth)).rstrip()
            self.parts.append(blank * (min(self._pending_breaks, 3) - 1) + "\n")
            self._at_line_start = True
        self._pending_breaks = 0
        self._quote_depth = depth
        if self._at_line_start:
            self.parts.append("> " * depth + self._line_prefix)
            self._line_prefix = ""
            text = text.lstrip(" ")
        elif self._pending_space or (text.startswith(" ") and self.parts[-1].endswith(" ")):
            text = " " + text.lstrip(" ")
            if self.parts[-1].endswith(" "):
                text = text[1:]
        self._pending_space = False
        self.parts.append(text)
        self._at_line_start = False

    # Parser callbacks --------------------------------------------------------------------

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body" and self._open["head"]:
            self._pop_to("head")  # a missing </head> must not hide the whole body
        if tag in _SELF_CLOSING_SIBLINGS and self._stack and self._stack[-1][0] == tag:
            self._pop_to(tag)
        if tag == "a" and self._open["a"]:
            self._pop_to("a")
        hides = tag in _SKIP_CONTENT or _is_hidden(attrs)
        if tag not in _VOID:
            self._push(tag, hides)
        if self._hidden:
            return
        if tag == "br":
            self._pending_breaks = min(self._pending_breaks + 1, 3)
            self._pending_space = False
        elif tag in _PARAGRAPHS:
            self._request_break(2)
        elif tag in _LINE_BLOCKS:
            self._request_break(1)
        if tag == "li":
            depth = self._open["ul"] + self._open["ol"]
            self._line_prefix = "  " * max(depth - 1, 0) + "- "
        elif tag in _CELLS and not self._at_line_start:
            self._pending_space = True
        elif tag == "a":
            href = next((value for key, value in attrs if key == "href" and value), "")
            self._links[-1:] = []  # only ever one open link
            self._links.append((_WHITESPACE.sub("", href), len(self.parts)))

    def handle_endtag(self, tag: str) -> None:
        if tag == "br":  # browsers treat </br> as <br>
            self.handle_starttag(tag, [])
        elif self._open[tag]:
            self._pop_to(tag)

    def _element_ended(self, tag: str) -> None:
        if self._hidden:
            if tag == "a":
                self._links.clear()
            return
        if tag in _PARAGRAPHS:
            self._request_break(2)
        elif tag in _LINE_BLOCKS:
            self._request_break(1)
        elif tag in _CELLS:
            self._pending_space = True
        elif tag == "a" and self._links:
            href, start = self._links.pop()
            text = "".join(self.parts[start:]).strip()
            if text and href.lower().startswith(_LINK_SCHEMES) and not _same_target(text, href):
                self._emit(f" ({href})")
        if tag == "li":
            self._line_prefix = ""

    def handle_data(self, data: str) -> None:
        if self._hidden or not data:
            return
        data = _PLACEHOLDERS.sub(" ", _INVISIBLE.sub("", data))
        if self._open["pre"]:
            data = data.replace("\r\n", "\n").replace("\r", "\n")
            for number, line in enumerate(data.split("\n")):
                if number:
                    self._pending_breaks = min(self._pending_breaks + 1, 3)
                self._emit(line.replace(" ", _HARD_SPACE).replace("\t", _HARD_TAB))
            return
        self._emit(_WHITESPACE.sub(" ", data))


def _finish(text: str) -> str:
    """Tidy assembled text: trailing spaces, placeholders, control characters, blank runs."""
    text = _CONTROL.sub("", text).replace(_HARD_SPACE, " ").replace(_HARD_TAB, "\t")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{4,}", "\n\n\n", text).strip("\n")


def _crude_text(html: str) -> str:
    """Last-resort conversion used only if the real parser fails: drop tags, keep words."""
    text = re.sub(r"<[^<>]*>", " ", html)
    return _finish(_WHITESPACE.sub(" ", unescape(text)).strip())


def html_to_text(html: str) -> str:
    """Convert an HTML mail body to readable plain text (see the module docstring).

    Block elements become line breaks, list items get a ``- `` prefix, quoted mail
    (``<blockquote>``) gets ``> `` prefixes, links render as ``text (url)``, and at most two
    consecutive blank lines remain. Never raises for any input string.
    """
    html = html[:MAX_HTML_CHARS]
    try:
        canonical = _canonicalize(html)
    except Exception:  # pragma: no cover - defensive: the tokenizer is total by design
        return _crude_text(html)
    builder = _TextBuilder()
    try:
        builder.feed(canonical)
        builder.close()
    except Exception:  # pragma: no cover - defensive: canonical markup parses cleanly
        return _crude_text(canonical)
    return _finish("".join(builder.parts))
