"""The `turnout` command line: `app` with every command registered, and `main`, the console
script. The commands live by what they act on: `definitions`, `instances`, `migrations`
(moving instances between versions), `repairs` (an operator's redrive and reset),
`histories` (as files), `retention` (purging finished instances), `feed` (the change
feed), `work` (long runs), `brokers` (relaying the change feed to a broker, consuming events
from one), `webhooks` (their delivery log), `database` (`turnout db`: the database's schema)
and `schedules` (instances started on a cron expression or an interval); what they share
(the app, options, error answers) is in `common`, which imports none of them.
"""

from __future__ import annotations

# Importing a command module registers its commands on `app`; `turnout --help` lists them in
# this order.
from . import definitions, feed, histories, instances, migrations, repairs, retention, work

# isort: split
from . import brokers, database, schedules, webhooks
from .common import app

__all__ = ["app", "main"]
COMMAND_MODULES = (
    definitions,
    instances,
    migrations,
    repairs,
    histories,
    retention,
    feed,
    work,
    brokers,
    webhooks,
    database,
    schedules,
)


def main() -> None:
    """Entry point of the `turnout` console script."""
    app()
