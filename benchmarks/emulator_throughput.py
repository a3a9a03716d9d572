"""Emulator throughput: a simple Graph GET and POST /applications, over HTTPS and in process.

Run: .venv/bin/python benchmarks/emulator_throughput.py [--requests N] [--clients C]

Not a test: it reports figures for this machine. Every loop is bounded by --requests.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import ssl
import statistics
import time
from collections.abc import Callable

import httpx

from mim_o365.emulator import Emulator, EmulatorServer


def _token(client: httpx.Client, em: Emulator) -> dict[str, str]:
    r = client.post(
        f"/{em.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": em.admin_client_id,
            "client_secret": em.admin_client_secret,
            "scope": "https://graph.microsoft.com/.default",
        },
    )
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _run(
    make_client: Callable[[], httpx.Client],
    em: Emulator,
    n: int,
    clients: int,
    call: Callable[[httpx.Client, dict[str, str], int], httpx.Response],
) -> tuple[float, float]:
    per = n // clients

    def worker(k: int) -> list[float]:
        latencies = []
        with make_client() as client:
            headers = _token(client, em)
            for i in range(per):
                t0 = time.perf_counter()
                r = call(client, headers, k * per + i)
                latencies.append(time.perf_counter() - t0)
                if r.status_code >= 400:
                    raise RuntimeError(f"unexpected {r.status_code}: {r.text[:200]}")
        return latencies

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        latencies = [x for part in pool.map(worker, range(clients)) for x in part]
    elapsed = time.perf_counter() - t0
    return len(latencies) / elapsed, statistics.median(latencies) * 1000


def get_org(client: httpx.Client, headers: dict[str, str], i: int) -> httpx.Response:
    return client.get("/v1.0/organization", headers=headers)


def post_app(client: httpx.Client, headers: dict[str, str], i: int) -> httpx.Response:
    return client.post(
        "/v1.0/applications",
        json={"displayName": f"bench {i}", "signInAudience": "AzureADMyOrg"},
        headers=headers,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per measurement")
    parser.add_argument("--clients", type=int, default=4, help="concurrent keep-alive clients")
    args = parser.parse_args()

    rows = []
    em = Emulator(seed=1)
    with EmulatorServer(em) as server:
        ctx = ssl.create_default_context(cafile=server.ca_file)
        for name, call in (
            ("GET /v1.0/organization", get_org),
            ("POST /v1.0/applications", post_app),
        ):
            for clients in (1, args.clients):
                rate, p50 = _run(
                    lambda: httpx.Client(base_url=server.base_url, verify=ctx),
                    em,
                    args.requests,
                    clients,
                    call,
                )
                rows.append((f"HTTPS, {clients} client(s)", name, rate, p50))
    em2 = Emulator(seed=1)
    for name, call in (("GET /v1.0/organization", get_org), ("POST /v1.0/applications", post_app)):
        rate, p50 = _run(
            lambda: httpx.Client(transport=em2.transport(), base_url="https://emulator.test"),
            em2,
            args.requests,
            1,
            call,
        )
        rows.append(("in-process transport", name, rate, p50))

    print(f"{'mode':<24} {'request':<26} {'req/s':>8} {'p50 ms':>8}")
    for mode, name, rate, p50 in rows:
        print(f"{mode:<24} {name:<26} {rate:>8.0f} {p50:>8.2f}")


if __name__ == "__main__":
    main()
