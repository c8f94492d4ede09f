"""Shared test configuration: the real-server fixtures live in tests/servers/."""

pytest_plugins = [
    "tests.servers.dovecot",
    "tests.servers.smtp",
    "tests.servers.synapse",
    "tests.servers.postgres",
    "tests.servers.discord_double",
]
