"""Rotate the MIM mailbox app's client secret from a scheduled job, with app-only credentials.

The admin identity comes from the environment (AZURE_TENANT_ID, AZURE_CLIENT_ID and
AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH), as azure-identity's EnvironmentCredential
reads it. The new secret is written to a file (owner-only) and handed to a command that updates
MIM Service, on its standard input. Exit codes follow `mim-o365 rotate`: 0 done or not due,
75 try again later, anything else needs a person.

Run: MIM_O365_APP_ID=... MIM_O365_SECRET_FILE=/etc/mim/secret python examples/rotate_secret.py
"""

from __future__ import annotations

import logging
import os
import sys

from azure.identity import EnvironmentCredential

from mim_o365 import Client, Cloud, FileSink, MimO365Error, Rotation
from mim_o365.cli import exit_status_for

log = logging.getLogger("rotate_secret")


def main(client: Client, app_id: str, secret_file: str, update_command: str | None = None) -> Rotation:
    """Rotate when due; deliver to ``secret_file`` (and ``update_command`` on stdin)."""
    from mim_o365._sinks import ExecSink

    sinks: list[object] = [FileSink(secret_file)]
    if update_command:
        sinks.append(ExecSink(update_command))
    result = client.rotate_secret(app_id, secret_sinks=sinks)  # type: ignore[arg-type]
    if result.rotated:
        log.info("rotated %s: new secret %s expires %s, removed %s", app_id, result.new_key_id,
                 result.expires_at, ", ".join(result.removed_key_ids) or "nothing")
    else:
        log.info("%s: %s", app_id, result.reason)
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cloud_file = os.environ.get("MIM_O365_CLOUD_FILE")
    cloud = Cloud.from_file(cloud_file) if cloud_file else Cloud.named(os.environ.get("MIM_O365_CLOUD", "global"))
    credential = EnvironmentCredential(
        authority=cloud.authority, disable_instance_discovery=not cloud.instance_discovery,
        **({"connection_verify": str(cloud.ca_file)} if cloud.ca_file else {}),
    )
    try:
        with Client(credential, tenant=os.environ["AZURE_TENANT_ID"], cloud=cloud) as mim:
            outcome = main(mim, os.environ["MIM_O365_APP_ID"], os.environ["MIM_O365_SECRET_FILE"],
                           os.environ.get("MIM_O365_UPDATE_COMMAND"))
    except MimO365Error as exc:
        log.error("%s", exc)
        sys.exit(int(exit_status_for(exc)))
    sys.exit(75 if outcome.verified is False else 0)
