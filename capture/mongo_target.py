"""What to protect in one MongoDB deployment: which databases and collections.

The default is the chatbot's collections, in both the English and the Spanish names the
application has used; ``("*",)`` protects every collection. System databases (admin, local,
config) and ``system.*`` collections are never protected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_COLLECTIONS", "SYSTEM_DATABASES", "MongoTarget"]

DEFAULT_COLLECTIONS = (
    "conversations",
    "conversaciones",
    "quotes",
    "cotizaciones",
    "sessions",
    "context",
    "analytics",
    "users",
)
SYSTEM_DATABASES = frozenset({"admin", "local", "config"})


@dataclass(frozen=True)
class MongoTarget:
    """What to protect in one deployment: databases (empty: all user databases) and
    collections (``("*",)``: all)."""

    name: str
    databases: tuple[str, ...] = ()
    collections: tuple[str, ...] = DEFAULT_COLLECTIONS

    def wants_database(self, db: str) -> bool:
        """Whether collections of ``db`` may be protected."""
        return db in self.databases if self.databases else db not in SYSTEM_DATABASES

    def wants(self, namespace: str) -> bool:
        """Whether ``db.coll`` is protected."""
        db, _, coll = namespace.partition(".")
        if not coll or coll.startswith("system.") or not self.wants_database(db):
            return False
        return "*" in self.collections or coll in self.collections

    def pipeline(self) -> list[dict[str, Any]]:
        """A server-side filter for a deployment-wide stream: only what ``wants`` keeps."""
        dbs: dict[str, Any] = (
            {"$in": list(self.databases)} if self.databases else {"$nin": list(SYSTEM_DATABASES)}
        )
        if "*" in self.collections:
            return [{"$match": {"ns.db": dbs}}]
        colls = {"$in": list(self.collections)}
        either = [{"ns.coll": colls}, {"to.coll": colls}, {"ns.coll": {"$exists": False}}]
        return [{"$match": {"ns.db": dbs, "$or": either}}]
