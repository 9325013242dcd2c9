#!/usr/bin/env python3
"""The API half of scripts/restore-drill: fills a running engine with live data, reads it all back,
compares two readings, and uses a restored engine. Standard library only (a small WebSocket client
is included), so the drill needs nothing from PyPI.

    restore-drill.py fill    BASE_URL STATE      # make the data; STATE: ids and users (JSON)
    restore-drill.py read    BASE_URL STATE OUT  # everything the API shows, normalised (JSON)
    restore-drill.py compare BEFORE AFTER        # exit 1 and list every difference
    restore-drill.py use     BASE_URL STATE      # the restored engine takes new writes

Tokens are minted with `$LIVESHOP_BIN token` and the `LIVESHOP_JWT_SECRET` of the environment.
"""

import base64
import json
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

BIN = os.environ.get("LIVESHOP_BIN", "target/debug/liveshop")
_tokens = {}


class DrillError(Exception):
    """A step of the drill did not go as expected."""


def token(role, tenant=None, sub=None, name=None):
    """A token from `liveshop token`, minted once per (role, tenant, sub)."""
    key = (role, tenant, sub)
    if key not in _tokens:
        args = [BIN, "token", "--role", role, "--ttl", "3600"]
        if tenant:
            args += ["--tenant", tenant]
        if sub:
            args += ["--sub", sub]
        if name:
            args += ["--name", name]
        _tokens[key] = subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()
    return _tokens[key]


def operator():
    return token("operator", sub="drill-ops")


def call(base, method, path, tok, body=None, expect=(200,)):
    """One REST request; returns the decoded body, or raises unless the status is expected."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {tok}")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            status, text = resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        status, text = err.code, err.read().decode()
    if status not in expect:
        raise DrillError(f"{method} {path} answered {status}, expected {expect}: {text}")
    return json.loads(text) if text else None


class WebSocket:
    """Just enough RFC 6455 for JSON text frames: handshake, masked sends, unmasked reads."""

    def __init__(self, base, tok):
        host, port = urlsplit(base).hostname, urlsplit(base).port
        self.sock = socket.create_connection((host, port), timeout=15)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /v1/ws?token={tok} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise DrillError(f"WebSocket upgrade refused: {head.decode(errors='replace')}")
        self.until(lambda m: m["type"] == "welcome")

    def _recv(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise DrillError("WebSocket closed by the server")
        return chunk

    def _take(self, n):
        while len(self.buf) < n:
            self.buf += self._recv()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send_frame(self, opcode, payload):
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def send(self, frame):
        self._send_frame(0x1, json.dumps(frame).encode())

    def recv(self):
        """The next JSON message; answers pings, fails on a close."""
        while True:
            b0, b1 = self._take(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", self._take(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", self._take(8))
            payload = self._take(n)
            opcode = b0 & 0x0F
            if opcode == 0x1:
                return json.loads(payload)
            if opcode == 0x9:
                self._send_frame(0xA, payload)
            elif opcode == 0x8:
                raise DrillError(f"WebSocket closed by the server: {payload!r}")

    def until(self, pred):
        """Reads until a message matches `pred`; an error frame fails the drill."""
        while True:
            msg = self.recv()
            if msg.get("type") == "error":
                raise DrillError(f"WebSocket error frame: {msg}")
            if pred(msg):
                return msg

    def request(self, frame):
        """Sends a frame with a fresh ref and returns the reply carrying that ref."""
        ref = base64.b16encode(os.urandom(4)).decode()
        self.send({**frame, "ref": ref})
        while True:
            msg = self.recv()
            if msg.get("ref") == ref:
                if msg["type"] == "error":
                    raise DrillError(f"{frame['op']} refused: {msg}")
                return msg

    def close(self):
        self._send_frame(0x8, struct.pack("!H", 1000))
        self.sock.close()


def wait_for(what, check, seconds=20):
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise DrillError(f"timed out waiting for {what}")
        time.sleep(0.2)


# ---- fill ----------------------------------------------------------------------------------------


def fill(base, state_path):
    ops = operator()
    shop = call(base, "POST", "/v1/tenants", ops, {"slug": "drill-shop", "name": "Drill Shop"}, (201,))["id"]
    other = call(base, "POST", "/v1/tenants", ops, {"slug": "drill-other", "name": "Other Shop"}, (201,))["id"]
    ann = token("seller", shop, "ann", "Ann")

    def product(tok, sku, **extra):
        body = {"sku": sku, "title": f"Item {sku}", "price_cents": 1500, "currency": "EUR", **extra}
        return call(base, "POST", "/v1/products", tok, body, (201,))["id"]

    mug = product(ann, "MUG-1", image_url="https://cdn.example/mug.jpg")
    hat = product(ann, "HAT-1")
    sock = product(ann, "SOCK-1")
    product(token("seller", other, "olga"), "PEN-1")
    call(base, "POST", "/v1/streams", token("seller", other, "olga"),
         {"title": "Later", "scheduled_at": "2030-01-01T18:00:00Z"}, (201,))

    def stream(title, **extra):
        return call(base, "POST", "/v1/streams", ann, {"title": title, **extra}, (201,))["id"]

    live = stream("Spring sale")
    ended = stream("Winter sale")
    stream("Summer preview", scheduled_at="2030-06-01T18:00:00Z")
    for s in (live, ended):
        call(base, "POST", f"/v1/streams/{s}/start", ann, {})
    call(base, "POST", f"/v1/streams/{live}/pin", ann, {"product": mug})

    # Chat over the WebSocket: two viewers who joined, and the seller without joining.
    chat = 0
    bob = WebSocket(base, token("viewer", shop, "bob", "Bob"))
    cleo = WebSocket(base, token("viewer", shop, "cleo", "Cléo"))
    seller = WebSocket(base, ann)
    for s in (live, ended):
        for ws in (bob, cleo):
            ws.request({"op": "join", "stream": s})
        for ws, text in ((seller, f"welcome to {s}"), (bob, "héllo 👋"), (cleo, "two\nlines"), (bob, "  trimmed  ")):
            ws.request({"op": "chat", "stream": s, "text": text})
            chat += 1

    def drop(s, prod, **body):
        return call(base, "POST", f"/v1/streams/{s}/drops", ann, {"product": prod, **body}, (201,))["id"]

    def claim_rest(d, user, qty, key):
        tok = token("viewer", shop, user)
        return call(base, "POST", f"/v1/drops/{d}/claims", tok, {"quantity": qty, "idempotency_key": key}, (201,))

    def pay(c):
        return call(base, "POST", f"/v1/admin/claims/{c['id']}/pay", ops)

    # Drop 1 (long hold): reserved over REST and over the WebSocket, one paid.
    d1 = drop(live, mug, quantity=10, per_user_limit=2, hold_seconds=900)
    bob_claim = claim_rest(d1, "bob", 2, "bob-key-1")
    cleo_claim = cleo.request({"op": "claim", "drop": d1, "quantity": 1, "key": "cleo-key-1"})["claim"]
    claim_rest(d1, "dan", 1, "dan-key-1")
    pay(cleo_claim)

    # Drop 2 (one-second hold): one claim paid in time, one left to expire; then closed by the seller.
    d2 = drop(live, hat, quantity=5, hold_seconds=1)
    pay(claim_rest(d2, "finn", 1, "finn-key-1"))
    claim_rest(d2, "erin", 1, "erin-key-1")
    erin = token("viewer", shop, "erin")
    wait_for("erin's hold to expire",
             lambda: call(base, "GET", "/v1/claims", erin)["items"][0]["status"] == "expired")
    call(base, "POST", f"/v1/drops/{d2}/close", ann, {})

    # Drop 3 on the stream that ends: one paid claim; ending the stream closes the drop.
    d3 = drop(ended, sock, quantity=3, per_user_limit=1, hold_seconds=900)
    pay(claim_rest(d3, "bob", 1, "bob-key-3"))
    call(base, "POST", f"/v1/streams/{ended}/end", ann, {})

    for ws in (bob, cleo, seller):
        ws.close()
    state = {
        "tenants": {shop: "ann", other: "olga"},
        "streams": {shop: [live, ended], other: []},
        "live": live,
        "drops": [d1, d2, d3],
        "buyers": ["bob", "cleo", "dan", "erin", "finn"],
        "bob_claim": bob_claim,
        "chat_messages": chat,
    }
    with open(state_path, "w") as f:
        json.dump(state, f, indent=1)
    statuses = sorted({c["status"] for b in state["buyers"]
                       for c in call(base, "GET", "/v1/claims", token("viewer", shop, b))["items"]})
    print(f"filled: 2 tenants, 4 products, 4 streams (live, ended, 2 scheduled), {chat} chat messages, "
          f"3 drops, claims {', '.join(statuses)}")
    if statuses != ["expired", "paid", "reserved"]:
        raise DrillError(f"expected claims in every status, got {statuses}")


# ---- read ----------------------------------------------------------------------------------------


def read(base, state_path, out_path):
    """Every record the drill made, as the API shows it. Viewer counts are left out (they are not
    stored); the streams' epochs are kept apart, see `compare`."""
    with open(state_path) as f:
        state = json.load(f)
    shop = next(iter(state["tenants"]))
    out = {"tenants": {}, "products": {}, "streams": {}, "snapshots": {}, "drops": {}, "claims": {}, "epochs": {}}
    for tenant, seller in state["tenants"].items():
        tok = token("seller", tenant, seller)
        out["tenants"][tenant] = call(base, "GET", f"/v1/tenants/{tenant}", operator())
        out["products"][tenant] = call(base, "GET", "/v1/products", tok)["items"]
        streams = call(base, "GET", "/v1/streams", tok)["items"]
        out["streams"][tenant] = [{k: v for k, v in s.items() if k != "viewers"} for s in streams]
        ws = WebSocket(base, token("viewer", tenant, "drill-reader"))
        for s in streams:
            joined = ws.request({"op": "join", "stream": s["id"]})
            out["epochs"][s["id"]] = joined["epoch"]
            snap = joined["snapshot"]
            snap.pop("viewers")
            snap["stream"].pop("viewers")
            out["snapshots"][s["id"]] = snap
        ws.close()
    for d in state["drops"]:
        out["drops"][d] = call(base, "GET", f"/v1/drops/{d}", operator())
    for user in state["buyers"]:
        out["claims"][user] = call(base, "GET", "/v1/claims", token("viewer", shop, user))["items"]
    with open(out_path, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True, ensure_ascii=False)
    chats = sum(len(s["chat"]) for s in out["snapshots"].values())
    claims = sum(len(c) for c in out["claims"].values())
    print(f"read {len(out['tenants'])} tenants, {len(out['snapshots'])} streams, {chats} chat messages, "
          f"{len(out['drops'])} drops, {claims} claims")


# ---- compare -------------------------------------------------------------------------------------


def differences(a, b, path="$"):
    if type(a) is not type(b):
        return [f"{path}: {json.dumps(a, ensure_ascii=False)} became {json.dumps(b, ensure_ascii=False)}"]
    if isinstance(a, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if k not in b:
                out.append(f"{path}.{k}: missing after restore")
            elif k not in a:
                out.append(f"{path}.{k}: appeared after restore")
            else:
                out += differences(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list):
        out = [f"{path}: {len(a)} items became {len(b)}"] if len(a) != len(b) else []
        for i, (x, y) in enumerate(zip(a, b)):
            out += differences(x, y, f"{path}[{i}]")
        return out
    return [] if a == b else [f"{path}: {json.dumps(a, ensure_ascii=False)} became {json.dumps(b, ensure_ascii=False)}"]


def compare(before_path, after_path):
    with open(before_path) as f:
        before = json.load(f)
    with open(after_path) as f:
        after = json.load(f)
    # Each start of a stream's actor begins a new epoch; after a restore it must be one no client
    # has seen, or a client could resume into events of another timeline (the runbook raises them).
    epochs_before, epochs_after = before.pop("epochs"), after.pop("epochs")
    diff = differences(before, after)
    diff += [f"$.epochs.{s}: {epochs_after.get(s)} after the restore is not past {e} before the backup"
             for s, e in epochs_before.items() if not epochs_after.get(s, 0) > e]
    if diff:
        print(f"{len(diff)} difference(s) between the API before the backup and after the restore:")
        for line in diff[:50]:
            print(f"  {line}")
        sys.exit(1)
    print("the API shows the same tenants, products, streams, chat, drops and claims as before the backup;"
          " every stream is in an epoch past the one it had")


# ---- use -----------------------------------------------------------------------------------------


def use(base, state_path):
    """The restored engine takes writes on the restored records: an idempotent retry answers the
    original claim, a restored reservation can be paid, a new claim and a chat message go through."""
    with open(state_path) as f:
        state = json.load(f)
    shop = next(iter(state["tenants"]))
    d1 = state["drops"][0]
    bob = state["bob_claim"]
    again = call(base, "POST", f"/v1/drops/{d1}/claims", token("viewer", shop, "bob"),
                 {"quantity": bob["quantity"], "idempotency_key": "bob-key-1"}, (200,))
    if again != bob:
        raise DrillError(f"retrying bob's claim answered {again}, not the original {bob}")
    paid = call(base, "POST", f"/v1/admin/claims/{bob['id']}/pay", operator())
    if paid["status"] != "paid":
        raise DrillError(f"paying a restored reservation answered {paid}")
    before = call(base, "GET", f"/v1/drops/{d1}", operator())
    call(base, "POST", f"/v1/drops/{d1}/claims", token("viewer", shop, "gus"),
         {"quantity": 1, "idempotency_key": "gus-key-1"}, (201,))
    after = call(base, "GET", f"/v1/drops/{d1}", operator())
    if (after["remaining"], after["reserved"]) != (before["remaining"] - 1, before["reserved"] + 1):
        raise DrillError(f"a new claim moved the drop from {before} to {after}")
    ws = WebSocket(base, token("viewer", shop, "gus"))
    ws.request({"op": "join", "stream": state["live"]})
    ws.request({"op": "chat", "stream": state["live"], "text": "after the restore"})
    ws.close()
    print("the restored engine takes writes: idempotent retry, payment of a restored hold, a new claim, chat")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    try:
        {"fill": fill, "read": read, "compare": compare, "use": use}[cmd](*args)
    except DrillError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
