"""The ``mim-o365`` command line: a thin renderer over the public API.

Everything meant for people goes to stderr; stdout carries only what scripts consume.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from enum import IntEnum
from pathlib import Path
from types import FrameType
from typing import Any

import click

from mim_o365 import __version__
from mim_o365._errors import (
    AuthenticationError,
    ConfigurationError,
    MimO365Error,
    PermissionDeniedError,
    PlanConflictError,
    PropagationTimeoutError,
    ThrottledError,
    TransportError,
)


class ExitStatus(IntEnum):
    """Exit codes: stable, documented in README.md."""

    OK = 0
    ERROR = 1
    USAGE = 2
    AUTHENTICATION = 3
    PERMISSION = 4
    CONFLICT = 5
    TEMPORARY = 75  # EX_TEMPFAIL: a cron job may retry
    CONFIGURATION = 78  # EX_CONFIG
    INTERRUPTED = 130


def exit_status_for(exc: BaseException) -> ExitStatus:
    """The exit code for an error."""
    if isinstance(exc, ConfigurationError):
        return ExitStatus.CONFIGURATION
    if isinstance(exc, AuthenticationError):
        return ExitStatus.AUTHENTICATION
    if isinstance(exc, PermissionDeniedError):
        return ExitStatus.PERMISSION
    if isinstance(exc, PlanConflictError):
        return ExitStatus.CONFLICT
    if isinstance(exc, TransportError | ThrottledError | PropagationTimeoutError):
        return ExitStatus.TEMPORARY
    if isinstance(exc, KeyboardInterrupt):
        return ExitStatus.INTERRUPTED
    return ExitStatus.ERROR


_SECRET_PATTERNS = (
    re.compile(r"(client_secret[\"']?\s*[:=]\s*[\"']?)[^&\"',}\s]+", re.I),
    re.compile(r"(client_assertion[\"']?\s*[:=]\s*[\"']?)[^&\"',}\s]+", re.I),
    re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(secretText[\"']?\s*[:=]\s*[\"']?)[^\"',}\s]+"),
)


class RedactingFilter(logging.Filter):
    """Scrubs credentials from every record a handler emits (libraries log request bodies at DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the message with its redacted text."""
        text = record.getMessage()
        for pattern in _SECRET_PATTERNS:
            text = pattern.sub(r"\1***", text)
        record.msg, record.args = text, None
        return True


def _setup_logging(verbose: int) -> None:
    """-v: our INFO on stderr; -vv: DEBUG from every library too (the HTTP conversation)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    ours = logging.getLogger("mim_o365")
    ours.handlers[:] = [handler]
    ours.propagate = False
    ours.setLevel(logging.WARNING - 10 * min(verbose, 2))
    if verbose >= 2:
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(logging.DEBUG)


def _fail(exc: MimO365Error) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(int(exit_status_for(exc)))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mim-o365")
@click.option("-v", "--verbose", count=True, help="More detail on stderr (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Register and maintain the Entra ID app MIM Service uses to send mail through Exchange Online."""
    _setup_logging(verbose)


@main.group()
def emulator() -> None:
    """An emulated Microsoft 365 tenant for trying the tool and for tests."""


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


@emulator.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to bind.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="0 picks a free port.",
)
@click.option(
    "--info-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write base_url, ca_file, tenant_id, cloud_file, admin credentials (owner-only) here.",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the CA and cloud file (default: a temporary folder).",
)
@click.option(
    "--state",
    "state_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Load the tenant from this file and save it after every change.",
)
@click.option("--seed", type=int, help="Make ids and random faults reproducible.")
@click.option(
    "--replication-delay",
    type=click.FloatRange(0),
    default=0.0,
    help="Seconds before new apps and service principals are visible.",
)
@click.option(
    "--secret-delay",
    type=click.FloatRange(0),
    default=0.0,
    help="Seconds before a new client secret is accepted.",
)
@click.option(
    "--consent-delay",
    type=click.FloatRange(0),
    default=0.0,
    help="Seconds before granted roles appear in tokens.",
)
@click.option(
    "--policy-delay",
    type=click.FloatRange(0),
    default=0.0,
    help="Seconds before Exchange policy changes take effect.",
)
@click.option(
    "--throttle-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Share of requests answered 429.",
)
@click.option(
    "--error-rate", type=click.FloatRange(0, 1), default=0.0, help="Share of requests answered 503."
)
@click.option(
    "--drop-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Share of connections closed without an answer.",
)
@click.option(
    "--secret-max-lifetime-days",
    type=click.FloatRange(min=1),
    help="App-management policy cap on secret lifetime.",
)
def serve(
    host: str,
    port: int,
    info_file: Path | None,
    workdir: Path | None,
    state_path: Path | None,
    seed: int | None,
    replication_delay: float,
    secret_delay: float,
    consent_delay: float,
    policy_delay: float,
    throttle_rate: float,
    error_rate: float,
    drop_rate: float,
    secret_max_lifetime_days: float | None,
) -> None:
    """Serve the emulated tenant over HTTPS until interrupted."""
    from mim_o365.emulator import EmulatorServer, Knobs, Lag

    if throttle_rate + error_rate + drop_rate > 1:
        raise click.UsageError(
            "--throttle-rate, --error-rate and --drop-rate must add up to at most 1"
        )
    knobs = Knobs(
        replication=Lag(seconds=replication_delay),
        secret=Lag(seconds=secret_delay),
        consent=Lag(seconds=consent_delay),
        policy=Lag(seconds=policy_delay),
        throttle_rate=throttle_rate,
        error_rate=error_rate,
        drop_rate=drop_rate,
        secret_max_lifetime_days=secret_max_lifetime_days,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, on_signal)
    try:
        server = EmulatorServer(
            host=host, port=port, state_path=state_path, workdir=workdir, seed=seed, knobs=knobs
        )
    except ValueError as exc:
        _fail(ConfigurationError(f"--state {state_path}: {exc}"))
        return
    with server:
        info: dict[str, Any] = server.info()
        if info_file is not None:
            _write_private(info_file, json.dumps(info, indent=2) + "\n")
        public = {k: v for k, v in info.items() if k != "admin_client_secret"}
        click.echo("mim-o365 emulator serving:", err=True)
        for key, value in public.items():
            click.echo(f"  {key}: {value}", err=True)
        if info_file is not None:
            click.echo(f"  admin_client_secret: in {info_file}", err=True)
        click.echo("Press Ctrl-C to stop.", err=True)
        stop.wait()
    click.echo("emulator stopped", err=True)


OUTPUTS = ("text", "json", "env")
AUTH_CHOICES = ("auto", "device-code", "browser", "azure-cli", "environment", "managed-identity")


def _credential(auth: str, cloud: Any, tenant: str) -> Any:
    """An azure-identity credential for the admin, for ``cloud``."""
    import azure.identity as ai

    common: dict[str, Any] = {
        "authority": cloud.authority,
        "disable_instance_discovery": not cloud.instance_discovery,
    }
    if cloud.ca_file is not None:
        common["connection_verify"] = str(cloud.ca_file)
    env_ready = bool(
        os.environ.get("AZURE_CLIENT_ID")
        and os.environ.get("AZURE_TENANT_ID")
        and (
            os.environ.get("AZURE_CLIENT_SECRET") or os.environ.get("AZURE_CLIENT_CERTIFICATE_PATH")
        )
    )
    if auth == "auto":
        if env_ready:
            auth = "environment"
        elif _azure_cli_signed_in(cloud, tenant):
            auth = "azure-cli"
        elif sys.stdin.isatty():
            auth = "device-code"
        else:
            raise ConfigurationError(
                "no admin identity: set AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET (or "
                "AZURE_CLIENT_CERTIFICATE_PATH) for app-only use, or choose --auth device-code | browser | "
                "azure-cli | managed-identity, or try --sandbox"
            )
    # Key Vault's challenge names the tenant by id; the admin may have given a domain name.
    multi: dict[str, Any] = {"additionally_allowed_tenants": ["*"]}
    if auth == "environment":
        if not env_ready:
            raise ConfigurationError(
                "--auth environment needs AZURE_CLIENT_ID, AZURE_TENANT_ID and a secret or certificate"
            )
        return ai.EnvironmentCredential(**common, **multi)
    if auth == "device-code":

        def prompt(uri: str, code: str, expires: Any) -> None:
            click.echo(
                f"To sign in as a tenant administrator, open {uri} and enter the code {code}",
                err=True,
            )

        return ai.DeviceCodeCredential(tenant_id=tenant, prompt_callback=prompt, **common, **multi)
    if auth == "browser":
        return ai.InteractiveBrowserCredential(tenant_id=tenant, **common, **multi)
    if auth == "azure-cli":
        return ai.AzureCliCredential(tenant_id=tenant, **multi)
    return ai.ManagedIdentityCredential()


def _azure_cli_signed_in(cloud: Any, tenant: str) -> bool:
    """Whether the Azure CLI is installed and holds a session that can get a Graph token."""
    import shutil

    if shutil.which("az") is None:
        return False
    import azure.identity as ai
    from azure.core.exceptions import ClientAuthenticationError

    try:
        ai.AzureCliCredential(tenant_id=tenant, process_timeout=20).get_token(cloud.graph_scope)
    except (ClientAuthenticationError, ai.CredentialUnavailableError):
        return False
    return True


def _shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def _print_registration(reg: Any, output: str) -> None:
    secret = reg.client_secret
    if output == "json":
        click.echo(json.dumps(reg.as_dict(reveal_secret=True), indent=2))
        return
    if output == "env":
        click.echo(f"MIM_O365_APPLICATION_ID={_shell_quote(reg.application_id)}")
        click.echo(f"MIM_O365_TENANT_ID={_shell_quote(reg.tenant_id)}")
        if secret is not None:
            click.echo(f"MIM_O365_CLIENT_SECRET={_shell_quote(secret.reveal())}")
        return
    click.echo(f"ApplicationId: {reg.application_id}")
    click.echo(f"TenantId: {reg.tenant_id}")
    if secret is not None:
        click.echo(f"ClientSecret: {secret.reveal()}")
    elif reg.secret_destination:
        click.echo(f"ClientSecret: (written to {reg.secret_destination})")
    else:
        click.echo(
            "ClientSecret: (unchanged; an existing secret is in use, --new-secret mints another)"
        )


def target_options(func: Any) -> Any:
    """Options that say which tenant, cloud and admin identity to use."""
    options = [
        click.option("--tenant", help="Tenant id or verified domain (not needed with --sandbox)."),
        click.option(
            "--cloud",
            "cloud_name",
            type=click.Choice(["global", "usgov", "usgov-dod", "china"]),
            default="global",
            show_default=True,
            envvar="MIM_O365_CLOUD",
            help="Microsoft cloud [env MIM_O365_CLOUD].",
        ),
        click.option(
            "--cloud-file",
            type=click.Path(dir_okay=False, path_type=Path),
            envvar="MIM_O365_CLOUD_FILE",
            help="A described cloud, e.g. an emulator's [env MIM_O365_CLOUD_FILE].",
        ),
        click.option(
            "--sandbox",
            is_flag=True,
            help="Use the embedded emulated tenant (state kept between runs).",
        ),
        click.option(
            "--sandbox-state",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Where the sandbox keeps its tenant.",
        ),
        click.option(
            "--auth",
            type=click.Choice(AUTH_CHOICES),
            default="auto",
            show_default=True,
            help="Admin sign-in.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@contextmanager
def _client_for(
    stack: Any,
    *,
    tenant: str | None,
    cloud_name: str,
    cloud_file: Path | None,
    sandbox: bool,
    sandbox_state: Path | None,
    auth: str,
    admin: bool = True,
) -> Iterator[Any]:
    """A mim_o365.Client for the chosen target (the sandbox is served for the block's duration)."""
    from mim_o365 import Client, Cloud
    from mim_o365._gateways import _clients
    from mim_o365._sandbox import sandbox as open_sandbox

    def progress(message: str, elapsed: float) -> None:
        click.echo(f"[{elapsed:5.1f}s] {message}", err=True)

    credential: Any = None
    if sandbox:
        box = stack.enter_context(open_sandbox(sandbox_state))
        click.echo(f"sandbox tenant {box.tenant_id} (state in {box.state_path})", err=True)
        cloud, tenant_id = box.cloud, box.tenant_id
        credential = _clients.client_secret_credential(
            cloud, tenant_id, box.admin_client_id, box.admin_client_secret
        )
    else:
        cloud = Cloud.from_file(cloud_file) if cloud_file else Cloud.named(cloud_name)
        tenant_id = tenant or os.environ.get("AZURE_TENANT_ID") or ""
        if not tenant_id:
            raise ConfigurationError(
                "--tenant is required (tenant id or verified domain), or use --sandbox"
            )
        if admin:
            credential = _credential(auth, cloud, tenant_id)
    client = stack.enter_context(
        Client(credential, tenant=tenant_id, cloud=cloud, on_progress=progress)
    )
    yield client


def _print_verification(verification: Any) -> None:
    for check in verification.checks:
        mark = {True: "ok  ", False: "FAIL", None: "--  "}[check.ok]
        click.echo(f"  [{mark}] {check.name}: {check.detail}", err=True)
    if not verification.ok:
        click.echo(f"EWS access is denied: {verification.explanation}", err=True)


@main.command()
@click.option(
    "--mailbox",
    required=True,
    help="The MIM Service mailbox, e.g. MIMService@contoso.onmicrosoft.com.",
)
@target_options
@click.option(
    "--app-id",
    help="Adopt an existing application (client id) instead of finding or creating ours.",
)
@click.option("--display-name", default="MIM Service mailbox client access", show_default=True)
@click.option("--secret-lifetime-days", type=int, default=180, show_default=True)
@click.option("--new-secret", is_flag=True, help="Mint a new secret even when one exists.")
@click.option(
    "--secret-out",
    help="Deliver the secret here instead of stdout: a file (owner-only) or keyvault://VAULT/NAME.",
)
@click.option(
    "--scope",
    type=click.Choice(["policy", "rbac", "none"]),
    default="policy",
    show_default=True,
    help="Restrict the app to the mailbox: application access policy, RBAC for Applications, or not at all.",
)
@click.option("--policy-group", help="Name of the mail-enabled security group that scopes the app.")
@click.option(
    "--allow-list/--no-allow-list",
    default=True,
    show_default=True,
    help="Put the app on the organization's EwsAllowedAppIDs.",
)
@click.option(
    "--enable-ews",
    is_flag=True,
    help="Set EwsEnabled=$true when the organization has EWS off or unset.",
)
@click.option(
    "--verify/--no-verify",
    default=True,
    show_default=True,
    help="Check EWS access as the MIM installer does.",
)
@click.option("--output", type=click.Choice(OUTPUTS), default="text", show_default=True)
@click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=600,
    show_default=True,
    help="Seconds to wait for Microsoft's services to catch up.",
)
def register(
    mailbox: str,
    tenant: str | None,
    cloud_name: str,
    cloud_file: Path | None,
    sandbox: bool,
    sandbox_state: Path | None,
    auth: str,
    app_id: str | None,
    display_name: str,
    secret_lifetime_days: int,
    new_secret: bool,
    secret_out: str | None,
    scope: str,
    policy_group: str | None,
    allow_list: bool,
    enable_ews: bool,
    verify: bool,
    output: str,
    dry_run: bool,
    timeout: float,
) -> None:
    """Register (or converge) the app MIM Service uses to send mail as MAILBOX."""
    from mim_o365 import FileSink
    from mim_o365._keyvault import parse_secret_out
    from mim_o365._plan import check_lifetime, check_mailbox

    try:
        check_mailbox(mailbox)
        check_lifetime(secret_lifetime_days)
        if secret_out and parse_secret_out(secret_out) is None:
            FileSink(secret_out).check()  # before signing in: a bad path is the cheapest error
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
            sink = client.secret_sink(secret_out) if secret_out else None
            reg = client.register_mailbox_app(
                mailbox,
                display_name=display_name,
                app_id=app_id,
                secret_lifetime_days=secret_lifetime_days,
                new_secret=new_secret,
                secret_sink=sink,
                dry_run=dry_run,
                timeout=timeout,
                scope=scope,
                policy_group=policy_group,
                allow_list=allow_list,
                enable_ews=enable_ews,
                verify=verify,
            )
    except MimO365Error as exc:
        _fail(exc)
        return
    if dry_run:
        click.echo(
            "Plan (nothing was changed):"
            if reg.plan
            else "Nothing to do: the registration is complete.",
            err=True,
        )
        for step in reg.plan:
            click.echo(f"  - {step}", err=True)
        if output == "json":
            click.echo(json.dumps(reg.as_dict(), indent=2))
        return
    click.echo(
        f"created: {', '.join(reg.created) or 'nothing'}; changed: {', '.join(reg.changed) or 'nothing'}",
        err=True,
    )
    if reg.client_secret is None and not reg.secret_destination:
        for s in reg.existing_secrets:
            when = f" expires {s.end:%Y-%m-%d}" if s.end else ""
            click.echo(f"existing secret {s.hint}...{when}", err=True)
    if reg.access_policy:
        ap = reg.access_policy
        if ap.get("mode") == "policy":
            click.echo(
                f"access policy: group {ap['group']}; {reg.mailbox}: {ap['mailbox_test']}; "
                f"{ap.get('other_mailbox')}: {ap.get('other_mailbox_test')}",
                err=True,
            )
        else:
            click.echo(
                f"RBAC for Applications: {ap['role']} scoped to group {ap['group']}", err=True
            )
    if reg.consent == "pending":
        click.echo(
            "Admin consent is still missing. A Global Administrator or Privileged Role Administrator must "
            f"open:\n  {reg.admin_consent_url}",
            err=True,
        )
    if reg.ews_problem:
        click.echo(reg.ews_problem, err=True)
    if reg.verification is not None:
        click.echo("EWS verification:", err=True)
        _print_verification(reg.verification)
    elif (
        verify and reg.client_secret is None and not reg.secret_destination and not reg.ews_problem
    ):
        click.echo(
            "EWS access was not re-checked (the secret is not at hand): run `mim-o365 verify`.",
            err=True,
        )
    _print_registration(reg, output)
    if reg.consent == "pending":
        sys.exit(int(ExitStatus.PERMISSION))
    if reg.ews_problem:
        sys.exit(int(ExitStatus.CONFIGURATION))
    if reg.verified is False:
        permanent = reg.verification is not None and reg.verification.layer in (
            "mailbox_missing",
            "tenant",
            "credentials",
        )
        sys.exit(int(ExitStatus.CONFIGURATION if permanent else ExitStatus.TEMPORARY))


def _read_secret(secret_file: Path | None, secret_stdin: bool) -> Any:
    from mim_o365 import Secret

    if secret_file is not None:
        try:
            text = secret_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigurationError(f"--secret-file {secret_file}: {exc.strerror}") from None
    elif secret_stdin:
        text = sys.stdin.readline().strip()
    else:
        text = os.environ.get("MIM_O365_CLIENT_SECRET", "").strip()
    if not text:
        raise ConfigurationError(
            "no client secret: set MIM_O365_CLIENT_SECRET, or pass --secret-file PATH or --secret-stdin "
            "(never on the command line)"
        )
    return Secret(text)


@main.command()
@click.option("--app-id", required=True, help="The application (client) id MIM Service uses.")
@click.option("--mailbox", required=True, help="The MIM Service mailbox.")
@target_options
@click.option(
    "--secret-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read the client secret from this file.",
)
@click.option("--secret-stdin", is_flag=True, help="Read the client secret from standard input.")
@click.option(
    "--rbac",
    is_flag=True,
    help="The app is scoped with RBAC for Applications (no tenant-wide role).",
)
@click.option(
    "--diagnose/--no-diagnose",
    default=None,
    help="Read the organization's settings with the admin identity to explain a denial "
    "(default: on with --sandbox, off otherwise).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    help="Keep checking this many seconds while a change may still be propagating.",
)
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def verify(
    app_id: str,
    mailbox: str,
    tenant: str | None,
    cloud_name: str,
    cloud_file: Path | None,
    sandbox: bool,
    sandbox_state: Path | None,
    auth: str,
    secret_file: Path | None,
    secret_stdin: bool,
    rbac: bool,
    diagnose: bool | None,
    timeout: float,
    output: str,
) -> None:
    """Check, as the MIM installer does, that the app reaches MAILBOX through EWS (exit 0 only if it does)."""
    from mim_o365._plan import check_mailbox

    diagnose = sandbox if diagnose is None else diagnose
    try:
        check_mailbox(mailbox)
        secret = _read_secret(secret_file, secret_stdin)
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
                    admin=diagnose,
                )
            )
            result = client.verify_mailbox_access(
                app_id, mailbox, secret, rbac=rbac, diagnose=diagnose, timeout=timeout
            )
    except MimO365Error as exc:
        _fail(exc)
        return
    if output == "json":
        click.echo(
            json.dumps({"application_id": app_id, "mailbox": mailbox, **result.as_dict()}, indent=2)
        )
    click.echo(f"Verifying {app_id} on {mailbox}:", err=True)
    _print_verification(result)
    if result.ok:
        click.echo("EWS access works.", err=True)
        return
    permanent = result.layer in (
        "mailbox_missing",
        "tenant",
        "credentials",
        "ews_disabled",
        "ews_not_configured",
    )
    sys.exit(int(ExitStatus.CONFIGURATION if permanent else ExitStatus.TEMPORARY))


@main.command()
@click.option("--app-id", required=True, help="The application (client) id whose secret to rotate.")
@target_options
@click.option("--before-expiry", "before_expiry", type=click.FloatRange(min=0), default=30, show_default=True,
              help="Rotate when the newest secret expires within this many days.")
@click.option("--max-age", type=click.FloatRange(min=1), help="Also rotate when the newest secret is older than this many days.")
@click.option("--force", is_flag=True, help="Rotate now, due or not.")
@click.option("--keep", type=click.IntRange(min=1), default=2, show_default=True,
              help="Secrets to keep afterwards, the new one included (2: the consumer can switch over).")
@click.option("--include-foreign", is_flag=True, help="Secrets not made by mim-o365 may be removed too.")
@click.option("--secret-out", "secret_outs", multiple=True,
              help="Deliver the new secret here: a file path (owner-only) or keyvault://VAULT/NAME; repeatable.")
@click.option("--exec", "exec_command", help="Run this command with the new secret on its stdin (never in its arguments).")
@click.option("--secret-lifetime-days", type=int, default=180, show_default=True)
@click.option("--mailbox", help="Mailbox for the end-to-end check (default: the one the app was registered for).")
@click.option("--verify/--no-verify", default=True, show_default=True, help="Check the new secret end to end first.")
@click.option("--rbac", is_flag=True, help="The app is scoped with RBAC for Applications (no tenant-wide role).")
@click.option("--output", type=click.Choice(OUTPUTS), default="text", show_default=True)
@click.option("--timeout", type=click.FloatRange(min=1), default=600, show_default=True)
def rotate(app_id: str, tenant: str | None, cloud_name: str, cloud_file: Path | None, sandbox: bool,
           sandbox_state: Path | None, auth: str, before_expiry: float, max_age: float | None, force: bool, keep: int,
           include_foreign: bool, secret_outs: tuple[str, ...], exec_command: str | None, secret_lifetime_days: int,
           mailbox: str | None, verify: bool, rbac: bool, output: str, timeout: float) -> None:
    """Rotate the app's client secret when it is due (safe to run from cron daily)."""
    from mim_o365._plan import check_lifetime
    from mim_o365._sinks import ExecSink

    try:
        check_lifetime(secret_lifetime_days)
        with ExitStack() as stack:
            client = stack.enter_context(_client_for(
                stack, tenant=tenant, cloud_name=cloud_name, cloud_file=cloud_file, sandbox=sandbox,
                sandbox_state=sandbox_state, auth=auth))
            sinks: list[Any] = [_sink_for(spec, client) for spec in secret_outs]
            if exec_command:
                sinks.append(ExecSink(exec_command))
            for sink in sinks:
                sink.check()
            result = client.rotate_secret(
                app_id, before_expiry_days=before_expiry, max_age_days=max_age, force=force, keep=keep,
                include_foreign=include_foreign, secret_sinks=sinks, lifetime_days=secret_lifetime_days,
                mailbox=mailbox, verify=verify, rbac=rbac, timeout=timeout)
    except MimO365Error as exc:
        _fail(exc)
        return
    if not result.rotated:
        click.echo(result.reason, err=True)
        if output == "json":
            click.echo(json.dumps(result.as_dict(), indent=2))
        return
    click.echo(f"rotated ({result.reason}): new secret {result.new_key_id}, expires {result.expires_at:%Y-%m-%d}; "
               f"delivered to {', '.join(result.delivered_to)}", err=True)
    if result.removed_key_ids:
        click.echo(f"removed old secrets: {', '.join(result.removed_key_ids)}", err=True)
    if result.verification is not None:
        click.echo("end-to-end check:", err=True)
        _print_verification(result.verification)
    secret = result.client_secret
    if output == "json":
        click.echo(json.dumps(result.as_dict(reveal_secret=True), indent=2))
    elif output == "env":
        click.echo(f"MIM_O365_APPLICATION_ID={_shell_quote(result.application_id)}")
        if secret is not None:
            click.echo(f"MIM_O365_CLIENT_SECRET={_shell_quote(secret.reveal())}")
    elif secret is not None:
        click.echo(f"ClientSecret: {secret.reveal()}")
    if result.verified is False:
        click.echo("The new secret does not work end to end yet; old secrets were kept. Run again later.", err=True)
        sys.exit(int(ExitStatus.TEMPORARY))


def _sink_for(spec: str, client: Any) -> Any:
    """A destination for ``--secret-out``: a file path or keyvault://VAULT/NAME."""
    return client.secret_sink(spec)


from mim_o365 import _cli_lifecycle  # noqa: E402, F401  (registers status and unregister)

if __name__ == "__main__":  # pragma: no cover
    main()
