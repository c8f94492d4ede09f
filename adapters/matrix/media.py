"""Files a command answers with (a chart, a CSV), as Matrix ``m.image`` and ``m.file`` events.

The bytes go to the homeserver's media repository first; the event then points at the
``mxc://`` address. Clients lay out an image before downloading it only when the event
says how large it is, so a PNG's width and height are read from its header (the IHDR
chunk, always first) rather than decoding the image.
"""

from __future__ import annotations

import struct

from adapters.matrix.render import Content
from adapters.matrix.text import safe, shorten
from bot.files import ResultFile

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Longest file name shown; a name cannot fill an event.
NAME_LIMIT = 200


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk; None when ``data`` is no PNG.

    The IHDR chunk must come first (PNG spec, 5.6): 8 bytes of signature, its length
    and type (8 bytes), then width and height as big-endian 32-bit numbers.
    """
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    if width == 0 or height == 0:
        return None
    return int(width), int(height)


def file_content(file: ResultFile, url: str, relates_to: Content | None) -> Content:
    """The event showing an uploaded file: ``m.image`` for images, ``m.file`` otherwise.

    Like every message of the bot it pings nobody (``m.mentions: {}``, and the name,
    chosen by the core from report names, is defanged anyway).
    """
    name = safe(shorten(file.name, NAME_LIMIT))
    info: Content = {"mimetype": file.content_type, "size": len(file.data)}
    msgtype = "m.file"
    if file.is_image:
        msgtype = "m.image"
        size = png_size(file.data) if file.content_type == "image/png" else None
        if size is not None:
            info["w"], info["h"] = size
    content: Content = {
        "msgtype": msgtype,
        "body": name,
        "filename": name,
        "url": url,
        "info": info,
        "m.mentions": {},
    }
    if relates_to is not None:
        content["m.relates_to"] = relates_to
    return content
