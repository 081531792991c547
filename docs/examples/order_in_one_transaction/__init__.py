"""An example application: a FastAPI + SQLModel shop whose order row and order workflow are
written in one database transaction, so that they commit together or not at all (`app.py`).
Run it with `python -m docs.examples.order_in_one_transaction`."""

from .app import Order, create_app

__all__ = ["Order", "create_app"]
