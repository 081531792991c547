"""The webhooks' delivery log on the command line: `turnout webhooks list` (what each
receiver URL got, is still being tried, or refused), `turnout webhooks resend` (the failed
deliveries, once the receiver is fixed) and `turnout webhooks prune` (old delivered rows).
The relay itself is `turnout relay URL`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from .common import (
    DELIVERY_STATUSES,
    MAX_LISTED_DELIVERIES,
    DbOption,
    JsonOption,
    app,
    note,
    open_engine,
    print_json,
    print_table,
    reports_errors,
    usage_error,
)

hooks = typer.Typer(
    name="webhooks",
    help="The webhooks' delivery log: list deliveries, send failed ones again.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(hooks)

UrlOption = Annotated[
    str | None, typer.Option("--url", help="Only the deliveries to this receiver URL.")
]
STATUSES = ", ".join(DELIVERY_STATUSES)


@hooks.command("list")
@reports_errors
def list_deliveries(
    failed: Annotated[
        bool, typer.Option("--failed", help="Only the failed deliveries (as --status failed).")
    ] = False,
    status: Annotated[
        str | None, typer.Option("--status", help=f"Only deliveries in this status: {STATUSES}.")
    ] = None,
    url: UrlOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=MAX_LISTED_DELIVERIES)] = 100,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """List the delivery log, per receiver URL in feed order."""
    from rich.table import Table

    from engine.brokers import webhooks
    from engine.brokers.delivery_log import DeliveryStatus

    if failed and status not in (None, str(DeliveryStatus.FAILED)):
        raise usage_error("--failed and --status name two statuses: give one")
    wanted = DeliveryStatus.FAILED if failed else status
    with open_engine(db) as engine:
        rows = webhooks.deliveries(engine, status=wanted, url=url, limit=limit)
    if json_output:
        print_json([row.to_json() for row in rows])
        return
    table = Table("change", "url", "status", "attempts", "last answer", "at", title="deliveries")
    for row in rows:
        moment = row.delivered_at if row.status is DeliveryStatus.DELIVERED else row.failed_at
        table.add_row(
            row.change_id,
            row.url,
            str(row.status),
            str(row.attempts),
            row.last_error or (str(row.last_status_code) if row.last_status_code else ""),
            (moment or row.last_attempt_at).isoformat(timespec="seconds"),
        )
    print_table(table)


@hooks.command()
@reports_errors
def resend(
    url: UrlOption = None,
    unsigned: Annotated[
        bool, typer.Option("--unsigned", help="Send without a signature (no secret).")
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", min=0.001, help="Seconds to wait for each answer (10)."),
    ] = None,
    retries: Annotated[
        int | None,
        typer.Option("--retries", min=1, help="Attempts per delivery while it is away (5)."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=MAX_LISTED_DELIVERIES)] = 1000,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Send the failed deliveries again (signed with TURNOUT_WEBHOOK_SECRET), to --url or
    to every receiver that has some; exit 1 if some are still failed."""
    from engine.brokers import webhooks

    # Not given: TURNOUT_WEBHOOK_TIMEOUT, TURNOUT_WEBHOOK_RETRIES, else the defaults.
    options: dict[str, object] = {"timeout": timeout, "retries": retries}
    if unsigned:
        options["unsigned"] = True
    with open_engine(db) as engine:
        outcomes = webhooks.resend_failed(engine, url, limit=limit, **options)
    if json_output:
        print_json([vars(outcome) for outcome in outcomes])
    else:
        if not outcomes:
            note("no failed deliveries")
        for outcome in outcomes:
            note(f"{outcome.url}: {outcome.delivered} delivered, {outcome.failed} still failed")
            for error in outcome.errors:
                note(f"  {error}")
    if any(outcome.failed for outcome in outcomes):
        raise typer.Exit(1)


@hooks.command()
@reports_errors
def prune(
    days: Annotated[
        float, typer.Option("--days", min=0, help="Delete deliveries made more than this ago.")
    ] = 7.0,
    db: DbOption = None,
) -> None:
    """Delete the log's delivered rows older than --days (failed and pending ones stay)."""
    from engine.brokers import webhooks

    with open_engine(db) as engine:
        gone = webhooks.prune_deliveries(engine, timedelta(days=days))
    note(f"{gone} deliveries pruned")
