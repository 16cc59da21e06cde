"""Store backends: local directory now; object stores (S3, GCS, Azure) join later."""

from journal.stores.local import LocalStore

__all__ = ["LocalStore"]
