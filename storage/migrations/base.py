"""What a migration step is handed: the dialect and a way to run SQL."""

from __future__ import annotations

from dataclasses import dataclass

from peewee import Database


@dataclass(frozen=True)
class Migrator:
    db: Database
    dialect: str  # "sqlite" | "postgresql"

    def execute(self, sql: str) -> None:
        self.db.execute_sql(sql)  # type: ignore[no-untyped-call]
