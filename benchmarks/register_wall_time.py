"""Wall time of a fresh `register` against an emulator that serves real propagation delays.

Run: .venv/bin/python benchmarks/register_wall_time.py [--replication-delay 2] [--secret-delay 3]
     [--consent-delay 3] [--policy-delay 5] [--runs 3]

The critical path of the delays: the service principal can be created once the application has
replicated, consent can be granted once the service principal has, and the new secret must be
accepted and carry the consented role; the access policy and the allow list (written at once,
beside the directory work) take effect after the policy delay, and EWS verification needs all:
    max(2 * replication + consent, replication + secret, policy)
Not a test: it prints figures for this machine. Every loop is bounded.
"""

from __future__ import annotations

import argparse
import statistics
import time

from mim_o365 import Client, Cloud, Secret
from mim_o365._gateways import _clients
from mim_o365.emulator import Emulator, EmulatorServer, Knobs, Lag


def one_run(
    replication: float, secret: float, consent: float, policy: float, seed: int
) -> tuple[float, int, dict[str, int]]:
    knobs = Knobs(
        replication=Lag(seconds=replication),
        secret=Lag(seconds=secret),
        consent=Lag(seconds=consent),
        policy=Lag(seconds=policy),
    )
    emulator = Emulator(seed=seed, knobs=knobs)
    with EmulatorServer(emulator) as server:
        cloud = Cloud.from_file(server.cloud_file)
        credential = _clients.client_secret_credential(
            cloud, server.tenant_id, server.admin_client_id, Secret(server.admin_client_secret)
        )
        credential.get_token(
            cloud.graph_scope
        )  # sign-in of the admin is not part of what we measure
        before = emulator.count()
        with Client(credential, tenant=server.tenant_id, cloud=cloud) as client:
            t0 = time.perf_counter()
            reg = client.register_mailbox_app(server.mailbox, timeout=120)
            elapsed = time.perf_counter() - t0
        if not reg.verified:
            raise SystemExit(f"register did not end verified: {reg.verification}")
        by_service = {s: emulator.count(s) for s in ("graph", "identity", "exchange-admin", "ews")}
        return elapsed, emulator.count() - before, by_service


def _split(by_service: dict[str, int]) -> str:
    return ", ".join(f"{n} {name}" for name, n in by_service.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replication-delay", type=float, default=2.0)
    parser.add_argument("--secret-delay", type=float, default=3.0)
    parser.add_argument("--consent-delay", type=float, default=3.0)
    parser.add_argument("--policy-delay", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    critical = max(
        2 * args.replication_delay + args.consent_delay,
        args.replication_delay + args.secret_delay,
        args.policy_delay,
    )
    print(
        f"delays: replication {args.replication_delay}s, secret {args.secret_delay}s, "
        f"consent {args.consent_delay}s, policy {args.policy_delay}s"
    )
    print(f"critical path of the delays: {critical:.2f}s")
    times = []
    for i in range(args.runs):
        elapsed, requests, by_service = one_run(
            args.replication_delay, args.secret_delay, args.consent_delay, args.policy_delay, seed=i
        )
        times.append(elapsed)
        print(
            f"run {i + 1}: {elapsed:.2f}s (+{elapsed - critical:.2f}s over the critical path), "
            f"{requests} HTTP requests ({_split(by_service)})"
        )
    print(
        f"median: {statistics.median(times):.2f}s, +{statistics.median(times) - critical:.2f}s over the critical path"
    )
    zero, requests, by_service = one_run(0, 0, 0, 0, seed=99)
    print(f"no delays: {zero:.2f}s, {requests} HTTP requests ({_split(by_service)})")


if __name__ == "__main__":
    main()
