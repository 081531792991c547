"""Connecting the engine to message brokers: relays publish the change feed, consumers apply
events read from a stream or queue. `base.py` holds the loops; one module per broker holds
its publisher and its source, imported only when a URL names that broker."""

from .base import Consumer, Message, Publisher, Relay, Source, open_publisher, open_source

__all__ = ["Consumer", "Message", "Publisher", "Relay", "Source", "open_publisher", "open_source"]
