"""9. Security: the data-plane cost of SecurityPolicy (issue 29's closing note).

One `portico run`, one nginx static backend (as the traffic benchmark), routes differing
only in their SecurityPolicy, each on its own Host:
  open        no policy: the baseline
  jwt         jwt (an RS256 token, verified against a local JWKS by jwt_authn)
  jwt+authz   jwt and an authorization rule on the token's scope (RBAC reading the payload)
  api-key     apiKeyAuth (one key in the x-api-key header)
  basic       basicAuth (an htpasswd user, {SHA})
wrk loads each in turn with valid credentials (every answer must be 200), interleaved
over `rounds` rounds at each connection count; each run also measures the CPU seconds
Portico's Envoy (with its workers) spent per request, from /proc/<pid>/stat. Ratios are
medians of per-round ratios against the open route of the same round. wrk sends the
same token with every request; Portico configures no jwt_authn token cache, so each
request's RS256 signature is checked (what a token cache would save is not measured).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import statistics
import time
from functools import partial
from pathlib import Path
from typing import Any

from bench import manifests as m
from bench import tools
from bench.common import BenchError, Client, Portico, Report, ratio, wait_until, workdir, write_docs
from bench.traffic import BODY, start_backend, tree_cpu, wrk

NS = "default"
ISSUER = "https://idp.security.bench"
AUDIENCE = "bench"
API_KEY = "k-bench-security-0001"
PASSWORD = "bench-password"


def credentials() -> tuple[str, str]:
    """(a local JWKS, a token it verifies: RS256, scope orders:read, valid for a day)."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": "b1", "alg": "RS256"}
    now = int(time.time())
    token = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "bench", "scope": "orders:read", "iat": now,
                        "exp": now + 86400}, key, algorithm="RS256", headers={"kid": "b1"})
    return json.dumps({"keys": [jwk]}), token


def policy(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "gateway.portico.dev/v1alpha1", "kind": "SecurityPolicy",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": name}],
                     **spec}}


def variants(jwks: str, token: str) -> dict[str, tuple[list[dict[str, Any]], tuple[str, ...]]]:
    """name -> (its SecurityPolicy and Secrets, the request headers that pass it)."""
    provider = {"name": "idp", "issuer": ISSUER, "audiences": [AUDIENCE], "localJWKS": {"inline": jwks}}
    sha = base64.b64encode(hashlib.sha1(PASSWORD.encode()).digest()).decode()
    basic = base64.b64encode(f"bench:{PASSWORD}".encode()).decode()
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bench-security", "namespace": NS},
              "stringData": {".htpasswd": f"bench:{{SHA}}{sha}\n"}}
    keys = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bench-keys", "namespace": NS},
            "stringData": {"bench": API_KEY}}
    bearer = (f"Authorization: Bearer {token}",)
    return {
        "open": ([], ()),
        "jwt": ([policy("jwt", jwt={"providers": [provider]})], bearer),
        "jwt+authz": ([policy("jwt-authz", jwt={"providers": [provider]}, authorization={"rules": [
            {"action": "Allow", "principal": {"jwt": {"provider": "idp", "scopes": ["orders:read"]}}}]})], bearer),
        "api-key": ([keys, policy("api-key", apiKeyAuth={"credentialRefs": [{"name": "bench-keys"}]})],
                    (f"x-api-key: {API_KEY}",)),
        "basic": ([secret, policy("basic", basicAuth={"users": {"name": "bench-security"}})],
                  (f"Authorization: Basic {basic}",)),
    }


def host_of(name: str) -> str:
    return f"{name.replace('+', '-')}.security.bench"


def start_portico(root: Path, backend: int, chosen: dict[str, tuple[list[dict[str, Any]], tuple[str, ...]]]
                  ) -> Portico:
    manifests_dir = root / "manifests"
    write_docs(manifests_dir / "00-gateway.yaml", m.gateway_docs())
    write_docs(manifests_dir / "10-backend.yaml", m.service_docs("static", NS, backend))
    docs: list[dict[str, Any]] = []
    for name, (extra, _) in chosen.items():
        route = m.http_route(name.replace("+", "-"), NS, host_of(name), [("static", 1)])
        docs += [route, *extra]
    write_docs(manifests_dir / "20-routes.yaml", docs)
    portico = Portico(root, manifests_dir)
    try:
        portico.wait_ready()
        portico.wait_programmed(len(chosen))
        for name, (_, headers) in chosen.items():
            host = host_of(name)
            wait_until(f"route {name}", partial(_answers, portico, host, headers, (200,)), 60)
            if headers:  # and the policy is enforced: without its credentials, refused
                wait_until(f"route {name} refusing", partial(_answers, portico, host, (), (401, 403)), 60)
    except BaseException:
        portico.stop()
        raise
    return portico


def _answers(portico: Portico, host: str, headers: tuple[str, ...], statuses: tuple[int, ...]) -> bool:
    return _get(portico, host, headers) in statuses


def _get(portico: Portico, host: str, headers: tuple[str, ...]) -> int:
    client = Client(portico.address, portico.listener_port, timeout=2)
    try:
        status, _, body = client.get("/", host, headers=dict(h.split(": ", 1) for h in headers))
        return status if status != 200 or body == BODY else -status
    finally:
        client.close()


def run(connections: list[int], seconds: float, rounds: int) -> Report:
    tools.ensure(("nginx", "wrk"))
    jwks, token = credentials()
    chosen = variants(jwks, token)
    report = Report("security", f"9. Security policies (wrk, {seconds:g} s x {rounds} rounds, median; "
                                "ratios against the open route of the same round)",
                    ["connections", "route", "requests/s", "p50 ms", "p99 ms", "errors", "x open",
                     "Envoy CPU µs/req", "CPU x open"])
    with workdir("security") as root, contextlib.ExitStack() as stack:
        backend, backend_port = start_backend(root)
        stack.callback(backend.stop)
        portico = start_portico(root, backend_port, chosen)
        stack.callback(portico.stop)
        envoy = portico.envoy_pid()
        if envoy is None:
            raise BenchError("portico's Envoy not found")
        cpu = tree_cpu(envoy)
        for name, (_, headers) in chosen.items():  # warm-up (and jwt_authn's token cache)
            wrk(portico.address, portico.listener_port, max(connections), 1, host_header=host_of(name),
                headers=headers)
        runs: dict[tuple[int, str], list[dict[str, Any]]] = {}
        for _ in range(rounds):
            for c in connections:
                for name, (_, headers) in chosen.items():
                    runs.setdefault((c, name), []).append(wrk(
                        portico.address, portico.listener_port, c, seconds, cpu, host_header=host_of(name),
                        headers=headers))
    results: dict[str, Any] = {}
    for c in connections:
        base = runs[(c, "open")]
        for name in chosen:
            mine = runs[(c, name)]
            rps = statistics.median(r["rps"] for r in mine)
            cpu_us = statistics.median(r["cpu_us_per_req"] for r in mine)
            x_open = statistics.median(ratio(a["rps"], b["rps"]) for a, b in zip(mine, base, strict=True))
            cpu_x = statistics.median(ratio(a["cpu_us_per_req"], b["cpu_us_per_req"])
                                      for a, b in zip(mine, base, strict=True))
            errors = sum(r["errors"] for r in mine)
            report.rows.append([c, name, rps, statistics.median(r["p50_ms"] for r in mine),
                                statistics.median(r["p99_ms"] for r in mine), errors, x_open, cpu_us, cpu_x])
            results[f"{c}/{name}"] = {"rps": rps, "cpu_us_per_req": cpu_us, "x_open": x_open, "cpu_x_open": cpu_x,
                                      "errors": errors, "runs": mine}
    report.data = {"results": results, "connections": connections, "seconds": seconds, "rounds": rounds}
    top = max(connections)
    errors = sum(v["errors"] for v in results.values())
    report.target("every request answered 200 (valid credentials)", "0 errors", errors, errors == 0)
    jwt = results[f"{top}/jwt"]
    report.summary = (f"at {top} connections, JWT route {jwt['x_open']:.2f}x the open route's requests/s, "
                      f"{jwt['cpu_x_open']:.2f}x its Envoy CPU per request ({jwt['cpu_us_per_req']:.0f} µs); "
                      + ", ".join(f"{n} {r['x_open']:.2f}x/{r['cpu_x_open']:.2f}x" for n, r in (
                          (n, results[f"{top}/{n}"]) for n in chosen if n not in ("open", "jwt")))
                      + " (requests/s / CPU per request)")
    return report


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(prog="python -m bench security", description=__doc__)
    parser.add_argument("--connections", default="1,16")
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2 s x 1 round, 16 connections")
    args = parser.parse_args(argv)
    report = run([16] if args.quick else [int(c) for c in args.connections.split(",")],
                 2 if args.quick else args.seconds, 1 if args.quick else args.rounds)
    report.emit()
    return report


if __name__ == "__main__":
    main()
