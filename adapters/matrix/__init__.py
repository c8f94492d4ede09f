"""Matrix chat adapter: tickets as threads in queue rooms, commands as ``!claim`` and ✋.

``MatrixAdapter`` (listener.py) owns the client and the sync loop, and follows the queue
rooms admins bind and unbind at run time; its ``gateway`` (``MatrixGateway``, gateway.py)
is what the outbox posts through, and its ``inspector`` (``MatrixRoomInspector``,
privacy.py) tells the core whether a room is public. render.py holds the pure rendering
rules that keep email text from pinging anyone or producing markup; media.py shows files,
direct.py finds the direct room a private answer goes to.
"""

from adapters.matrix.gateway import MatrixGateway
from adapters.matrix.listener import MatrixAdapter, MatrixStartError
from adapters.matrix.privacy import MatrixRoomInspector
from adapters.matrix.rooms import MatrixError

__all__ = [
    "MatrixAdapter",
    "MatrixError",
    "MatrixGateway",
    "MatrixRoomInspector",
    "MatrixStartError",
]
