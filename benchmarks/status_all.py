"""`status --all` over a fleet: HTTP requests and wall time to list N registrations.

Run: .venv/bin/python benchmarks/status_all.py [--apps 2000] [--runs 3]

The registrations are made through the emulator's backend (no HTTP), each with one or two
secrets; then `Client.list_registrations()` reads them over HTTPS on loopback with one Graph query
(`$filter=tags/any(...)`, `$top=999`, following `@odata.nextLink`), so the Graph requests should be
ceil(N / 999). The admin's sign-in happens before the clock starts. Not a test: it prints figures
for this machine.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections import Counter
from datetime import timedelta

from mim_o365 import Client, Cloud, Secret
from mim_o365._gateways import _clients
from mim_o365.emulator import Emulator, EmulatorServer
from mim_o365.emulator._directory import Caller


def fill(emulator: Emulator, n: int) -> None:
    """``n`` tagged applications, one in ten without a valid secret, one in ten expiring soon."""
    d = emulator.directory
    caller = Caller(emulator.admin_client_id, None, frozenset({"Application.ReadWrite.All"}))
    now = emulator.clock.now()
    for i in range(n):
        app = d.create_application(
            caller,
            {
                "displayName": f"MIM Service mailbox client access {i:05d}",
                "signInAudience": "AzureADMyOrg",
                "tags": ["mim-o365", f"mim-o365:mailbox:mim{i:05d}@contoso.onmicrosoft.com"],
            },
        )
        ends = [-5] if i % 10 == 0 else [10] if i % 10 == 1 else [-30, 120 + i % 50]
        for days in ends:
            d.add_password(
                caller,
                app,
                {
                    "passwordCredential": {
                        "displayName": "mim-o365 benchmark",
                        "startDateTime": (now - timedelta(days=400)).isoformat(),
                        "endDateTime": (now + timedelta(days=days)).isoformat(),
                    }
                },
            )


def sdk_models(client: Client, tag: str = "mim-o365") -> float:
    """Seconds for the same query read through msgraph-sdk's models (for comparison)."""
    from mim_o365._retry import Deadline

    aclient = client._aclient

    async def run() -> int:
        return len(await aclient._directory(Deadline(aclient._clock, 600)).applications_tagged(tag))

    t0 = time.perf_counter()
    client._run(run())
    return time.perf_counter() - t0


def one_run(
    apps: int, seed: int, compare: bool
) -> tuple[float, dict[str, int], Counter[str], float | None]:
    emulator = Emulator(seed=seed)
    fill(emulator, apps)
    with EmulatorServer(emulator) as server:
        cloud = Cloud.from_file(server.cloud_file)
        credential = _clients.client_secret_credential(
            cloud, server.tenant_id, server.admin_client_id, Secret(server.admin_client_secret)
        )
        credential.get_token(cloud.graph_scope)  # the admin's sign-in is not what we measure
        before = {s: emulator.count(s) for s in ("graph", "identity")}
        with Client(credential, tenant=server.tenant_id, cloud=cloud) as client:
            t0 = time.perf_counter()
            rows = client.list_registrations()
            elapsed = time.perf_counter() - t0
            requests = {s: emulator.count(s) - n for s, n in before.items()}
            models = sdk_models(client) if compare else None
    if len(rows) != apps or len({r.application_id for r in rows}) != apps:
        raise SystemExit(f"listed {len(rows)} registrations, expected {apps} distinct")
    return elapsed, requests, Counter(r.health for r in rows), models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--sdk-models",
        action="store_true",
        help="Also time the same query parsed into msgraph-sdk's models.",
    )
    args = parser.parse_args()
    print(
        f"{args.apps} registrations; expected Graph requests: ceil({args.apps}/999) = "
        f"{math.ceil(args.apps / 999)}"
    )
    times = []
    for i in range(args.runs):
        elapsed, requests, health, models = one_run(args.apps, seed=i, compare=args.sdk_models)
        times.append(elapsed)
        print(
            f"run {i + 1}: {elapsed:.2f}s, {requests['graph']} Graph requests, "
            f"{requests['identity']} identity requests (the admin token was cached before); "
            + ", ".join(f"{n} {h}" for h, n in sorted(health.items()))
            + (f"; through msgraph-sdk models: {models:.2f}s" if models is not None else "")
        )
    print(f"median wall time: {statistics.median(times):.2f}s over {args.runs} runs")


if __name__ == "__main__":
    main()
