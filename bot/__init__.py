"""ticketbot core: tickets, queues and the commands volunteers use.

Nothing in this package imports a chat, mail or database library; adapters and
storage implement the protocols in :mod:`bot.ports`.
"""

__version__ = "0.1.0"
