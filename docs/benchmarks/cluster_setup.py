#!/usr/bin/env python3
"""Creates a tenant and a live stream on one node and prints `TENANT STREAM`.

Used by cluster-cost.sh so that the stream is started (and so owned) by a chosen node, and the
load tool can then be pointed at any node with --tenant/--stream. Tokens are HS256, minted
from LIVESHOP_JWT_SECRET with the claims of contract section 2.
"""
import base64, hashlib, hmac, json, os, sys, time, urllib.request


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(secret: str, sub: str, role: str, tid=None) -> str:
    claims = {"sub": sub, "role": role, "exp": int(time.time()) + 86400, "name": sub}
    if tid:
        claims["tid"] = tid
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def post(base: str, path: str, tok: str, body: dict) -> dict:
    req = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {tok}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def main() -> None:
    base = sys.argv[1].rstrip("/")
    secret = os.environ["LIVESHOP_JWT_SECRET"]
    slug = f"bench-{int(time.time() * 1000) % 10**9}"
    tenant = post(base, "/v1/tenants", token(secret, "bench", "operator"), {"slug": slug, "name": slug})["id"]
    seller = token(secret, "load-seller", "seller", tenant)
    stream = post(base, "/v1/streams", seller, {"title": "cluster bench"})["id"]
    post(base, f"/v1/streams/{stream}/start", seller, {})
    print(tenant, stream)


if __name__ == "__main__":
    main()
