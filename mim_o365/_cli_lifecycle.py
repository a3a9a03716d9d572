"""The ``status`` and ``unregister`` commands, registered on :data:`mim_o365.cli.main`.

``status`` exits with a code a monitoring system can act on (README.md, "Exit codes"): 0 healthy,
10 warning (the newest secret expires within ``--warn-days``), 11 broken. Errors keep the codes
every command uses (75 temporary, 78 configuration, ...).
"""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack
from enum import IntEnum
from pathlib import Path
from typing import Any

import click

from mim_o365._errors import ConfigurationError, MimO365Error
from mim_o365._status import (
    BROKEN,
    HEALTHY,
    WARNING,
    ApplicationNotFoundError,
    RegistrationSummary,
    Status,
    worst,
)
from mim_o365._unregister import Unregistration
from mim_o365.cli import ExitStatus, _client_for, _fail, _read_secret, main, target_options


class HealthStatus(IntEnum):
    """Exit codes of ``status`` (documented in README.md; 1-5, 75 and 78 keep their meaning)."""

    HEALTHY = 0
    WARNING = 10
    BROKEN = 11


_EXIT = {HEALTHY: HealthStatus.HEALTHY, WARNING: HealthStatus.WARNING, BROKEN: HealthStatus.BROKEN}


def _interactive() -> bool:
    """Whether a person can answer a confirmation prompt."""
    return sys.stdin.isatty()


def say(text: str) -> None:
    """One line for people, on stderr."""
    click.echo(text, err=True)


def _day(value: Any) -> str:
    return f"{value:%Y-%m-%d}" if value is not None else "never"


def _print_status(st: Status) -> None:
    say(f"Application '{st.display_name}' ({st.application_id}) in tenant {st.tenant_id}")
    kind = "adopted" if st.adopted else ("registered by mim-o365" if st.managed else "not managed")
    say(f"  {kind}; mailbox: {st.mailbox or 'unknown'}")
    say(f"  client secrets ({len(st.secrets)}):")
    for s in st.secrets:
        left = (
            f", {s.days_left} days left" if s.days_left is not None and s.state == "valid" else ""
        )
        say(
            f"    [{s.state}] {s.hint or '?'}... key {s.key_id}, made by {s.made_by}, "
            f"created {_day(s.created)}, expires {_day(s.expires)}{left}"
        )
    permission = {
        "granted": "full_access_as_app (admin consent)",
        "rbac": "RBAC for Applications (Application EWS.AccessAsApp)",
        "missing": "MISSING",
    }[st.consent]
    say(f"  permission: {permission}")
    if st.group is not None:
        exists = {True: "exists", False: "MISSING", None: "not checked"}[st.group_exists]
        member = {True: ", mailbox is a member", False: ", mailbox is NOT a member", None: ""}[
            st.mailbox_in_group
        ]
        say(f"  scope: {st.scope}, group '{st.group}' {exists}{member}")
    else:
        say(f"  scope: {st.scope}")
    if st.access_policy is not None:
        say(f"  access policy: {st.access_policy}{'' if st.access_policy_valid else ' (INVALID)'}")
    enabled = {True: "$true", False: "$false", None: "not set"}[st.ews_enabled]
    listed = {
        True: "on EwsAllowedAppIDs",
        False: "NOT on EwsAllowedAppIDs",
        None: "no allow list",
    }[st.ews_allow_listed]
    say(f"  EWS: EwsEnabled {enabled}, {listed}")
    if st.verification is not None:
        say("  EWS check with the secret:")
        for check in st.verification.checks:
            mark = {True: "ok  ", False: "FAIL", None: "--  "}[check.ok]
            say(f"    [{mark}] {check.name}: {check.detail}")
    for note in st.notes:
        say(f"  note: {note}")
    if st.problems:
        say("Problems:")
        for problem in st.problems:
            say(f"  - {problem}")


def _summary_line(st: Status) -> str:
    first = st.problems[0] if st.problems else "all checks passed"
    more = f" (+{len(st.problems) - 1} more)" if len(st.problems) > 1 else ""
    return f"{st.health.upper()}: {st.application_id} {st.display_name}: {first}{more}"


def _print_registrations(rows: list[RegistrationSummary]) -> None:
    click.echo(
        f"{'APPLICATION ID':36}  {'DISPLAY NAME':34}  {'MAILBOX':38}  SECRETS  NEXT EXPIRY  HEALTH",
        err=True,
    )
    for r in rows:
        click.echo(
            f"{r.application_id:36}  {r.display_name[:34]:34}  {(r.mailbox or '-')[:38]:38}  "
            f"{r.secrets:7}  {_day(r.next_expiry) if r.next_expiry else '-':11}  {r.health}"
        )
    counts = {h: sum(1 for r in rows if r.health == h) for h in (HEALTHY, WARNING, BROKEN)}
    click.echo(
        f"{len(rows)} registrations: {counts[HEALTHY]} healthy, {counts[WARNING]} warning, "
        f"{counts[BROKEN]} broken",
        err=True,
    )


@main.command()
@click.option("--app-id", help="The application (client) id to check.")
@click.option(
    "--all",
    "all_apps",
    is_flag=True,
    help="List every application mim-o365 registered in the tenant, one line each.",
)
@click.option("--mailbox", help="The MIM Service mailbox (default: the one the app's tag names).")
@target_options
@click.option(
    "--warn-days",
    type=click.IntRange(min=0),
    default=30,
    show_default=True,
    help="Warn (exit 10) when the newest valid secret expires within this many days.",
)
@click.option(
    "--verify",
    is_flag=True,
    help="Also check EWS access live with the app's secret (from MIM_O365_CLIENT_SECRET, "
    "--secret-file or --secret-stdin).",
)
@click.option(
    "--secret-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read the client secret from this file (implies --verify).",
)
@click.option(
    "--secret-stdin", is_flag=True, help="Read the client secret from stdin (implies --verify)."
)
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=120,
    show_default=True,
    help="Seconds to keep retrying throttled or failing reads.",
)
def status(
    app_id: str | None,
    all_apps: bool,
    mailbox: str | None,
    tenant: str | None,
    cloud_name: str,
    cloud_file: Path | None,
    sandbox: bool,
    sandbox_state: Path | None,
    auth: str,
    warn_days: int,
    verify: bool,
    secret_file: Path | None,
    secret_stdin: bool,
    output: str,
    timeout: float,
) -> None:
    """Report the health of a registration; exit 0 healthy, 10 warning, 11 broken."""
    from mim_o365._plan import check_mailbox

    if all_apps == bool(app_id):
        raise click.UsageError("give --app-id ID for one registration, or --all for every one")
    verify = verify or secret_file is not None or secret_stdin
    if all_apps and (verify or mailbox):
        raise click.UsageError("--verify, --secret-* and --mailbox need --app-id")
    single: Status | None = None
    rows: list[RegistrationSummary] = []
    try:
        if mailbox is not None:
            mailbox = check_mailbox(mailbox)
        secret = _read_secret(secret_file, secret_stdin) if verify else None
        with ExitStack() as stack:
            client = stack.enter_context(
                _client_for(
                    stack,
                    tenant=tenant,
                    cloud_name=cloud_name,
                    cloud_file=cloud_file,
                    sandbox=sandbox,
                    sandbox_state=sandbox_state,
                    auth=auth,
                )
            )
            if all_apps:
                rows = client.list_registrations(warn_days=warn_days, timeout=timeout)
            else:
                assert app_id is not None  # noqa: S101 - checked above
                single = client.get_status(
                    app_id, warn_days=warn_days, secret=secret, mailbox=mailbox, timeout=timeout
                )
    except ApplicationNotFoundError as exc:
        # For monitoring, a registration that is gone is the worst kind of broken.
        if output == "json":
            report = {"application_id": app_id, "health": BROKEN, "problems": [str(exc)]}
            click.echo(json.dumps(report, indent=2))
        else:
            click.echo(f"BROKEN: {app_id}: {exc}")
        sys.exit(int(HealthStatus.BROKEN))
    except MimO365Error as exc:
        _fail(exc)
        return
    if all_apps:
        if output == "json":
            click.echo(json.dumps([r.as_dict() for r in rows], indent=2))
        else:
            _print_registrations(rows)
        sys.exit(int(_EXIT[worst(r.health for r in rows)]))
    assert single is not None  # noqa: S101 - set in the branch above
    if output == "json":
        click.echo(json.dumps(single.as_dict(), indent=2))
    else:
        _print_status(single)
        click.echo(_summary_line(single))
    sys.exit(int(_EXIT[single.health]))


@main.command()
@click.option("--app-id", required=True, help="The application (client) id to remove.")
@target_options
@click.option("--dry-run", is_flag=True, help="List what would be removed; write nothing.")
@click.option(
    "--yes",
    "-y",
    is_flag=True,
    help="Do not ask for confirmation (required when there is no terminal).",
)
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=600,
    show_default=True,
    help="Seconds to keep retrying throttled or failing calls.",
)
def unregister(
    app_id: str,
    tenant: str | None,
    cloud_name: str,
    cloud_file: Path | None,
    sandbox: bool,
    sandbox_state: Path | None,
    auth: str,
    dry_run: bool,
    yes: bool,
    output: str,
    timeout: float,
) -> None:
    """Remove the application and what register created for it (an adopted app is kept)."""
    from mim_o365._status import check_app_id

    try:
        check_app_id(app_id)
        if not dry_run and not yes and not _interactive():
            raise ConfigurationError(
                "unregister deletes the application and what register created for it, and there "
                "is no terminal to confirm on: pass --yes to go ahead (see first what would be "
                "removed with --dry-run). Nothing was changed."
            )
        with ExitStack() as stack:
            client = stack.enter_context(
                _client_for(
                    stack,
                    tenant=tenant,
                    cloud_name=cloud_name,
                    cloud_file=cloud_file,
                    sandbox=sandbox,
                    sandbox_state=sandbox_state,
                    auth=auth,
                )
            )
            if not dry_run and not yes:
                preview = client.unregister(app_id, dry_run=True, timeout=timeout)
                _print_unregistration(preview)
                if preview.plan and not click.confirm(
                    "Remove these objects from the tenant?", default=False, err=True
                ):
                    click.echo("Nothing was changed.", err=True)
                    sys.exit(int(ExitStatus.ERROR))
            result = client.unregister(app_id, dry_run=dry_run, timeout=timeout)
    except MimO365Error as exc:
        _fail(exc)
        return
    if output == "json":
        click.echo(json.dumps(result.as_dict(), indent=2))
    _print_unregistration(result, kept=dry_run or yes)


def _print_unregistration(result: Unregistration, *, kept: bool = True) -> None:
    """The plan (dry run) or what was removed, then what was left and why; all on stderr."""
    if result.dry_run:
        say(
            "Would remove, in this order (nothing was changed):"
            if result.plan
            else f"Nothing to remove for {result.application_id}."
        )
        lines = result.plan
    else:
        say(
            "Removed:"
            if result.removed
            else f"Nothing to remove for {result.application_id}: it is already unregistered."
        )
        lines = result.removed
    for line in lines:
        say(f"  - {line}")
    if kept and result.kept:
        say("Left in place:")
        for item in result.kept:
            say(f"  - {item}")
    for note in result.notes:
        say(f"note: {note}")
