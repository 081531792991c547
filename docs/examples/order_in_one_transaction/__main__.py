"""`python -m docs.examples.order_in_one_transaction [DATABASE_URL]`: the shop on
http://127.0.0.1:8000 with a worker in the same process (default database: shop.db)."""

from __future__ import annotations

import sys

import uvicorn

from .app import create_app

if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else "sqlite:///shop.db"
    uvicorn.run(create_app(url, worker=True), host="127.0.0.1", port=8000)
