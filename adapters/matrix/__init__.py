"""Matrix chat adapter: tickets as threads in queue rooms, commands as ``!claim`` and ✋.

``MatrixAdapter`` (listener.py) owns the client and the sync loop; its ``gateway``
(``MatrixGateway``, gateway.py) is what the outbox posts through. render.py holds the
pure rendering rules that keep email text from pinging anyone or producing markup.
"""

from adapters.matrix.gateway import MatrixGateway
from adapters.matrix.listener import MatrixAdapter, MatrixStartError
from adapters.matrix.rooms import MatrixError

__all__ = ["MatrixAdapter", "MatrixError", "MatrixGateway", "MatrixStartError"]
