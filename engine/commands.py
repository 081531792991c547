"""Database commands of the turnout CLI (added with the engine)."""
