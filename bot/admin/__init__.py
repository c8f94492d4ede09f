"""What admins change at run time: queues, access, admins and rules, kept in the database.

``bot.toml`` gives the starting point; every change an admin makes by command is stored
(:mod:`bot.admin.overlay` says how the two combine, and the database wins where both
speak) and takes effect at once through :class:`bot.admin.live.LiveConfig`.
"""
