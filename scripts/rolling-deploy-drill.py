#!/usr/bin/env python3
"""The API half of scripts/rolling-deploy-drill: makes a live show on a node, keeps chat and claims
flowing on a node while another one migrates, and checks that a node serves (also across nodes).
Standard library only; the HTTP and WebSocket client is scripts/restore-drill.py's.

    rolling-deploy-drill.py setup   BASE_URL STATE           # tenant, live stream, open drop (JSON)
    rolling-deploy-drill.py traffic BASE_URL STATE STOP OUT  # chat + a claim per round until the
                                                             # file STOP exists; counts to OUT
    rolling-deploy-drill.py serves  BASE_URL STATE LABEL [OTHER_BASE_URL]
        # on BASE_URL: join, chat, a claim; with OTHER_BASE_URL, a viewer there sees that chat

Tokens are minted with `$LIVESHOP_BIN token` and the `LIVESHOP_JWT_SECRET` of the environment.
"""

import importlib.util
import json
import os
import sys
import time

_spec = importlib.util.spec_from_file_location(
    "restore_drill", os.path.join(os.path.dirname(os.path.abspath(__file__)), "restore-drill.py")
)
api = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(api)
DrillError = api.DrillError


def load(state_path):
    with open(state_path) as f:
        return json.load(f)


def viewer(state, user):
    return api.token("viewer", state["tenant"], user)


def setup(base, state_path):
    slug = f"rolling-{os.getpid()}"
    tenant = api.call(base, "POST", "/v1/tenants", api.operator(),
                      {"slug": slug, "name": "Rolling deploy drill"}, (201,))["id"]
    seller = api.token("seller", tenant, "seller-1")
    product = api.call(base, "POST", "/v1/products", seller,
                       {"sku": "SKU-1", "title": "Sneaker", "price_cents": 9900, "currency": "EUR"},
                       (201,))["id"]
    stream = api.call(base, "POST", "/v1/streams", seller, {"title": "Rolling deploy"}, (201,))["id"]
    api.call(base, "POST", f"/v1/streams/{stream}/start", seller, {}, (200,))
    drop = api.call(base, "POST", f"/v1/streams/{stream}/drops", seller,
                    {"product": product, "quantity": 100000, "per_user_limit": 1, "hold_seconds": 600},
                    (201,))["id"]
    with open(state_path, "w") as f:
        json.dump({"tenant": tenant, "stream": stream, "drop": drop}, f)
    print(f"a live show on {base}: tenant {tenant}, stream {stream}, drop {drop}")


def claim(base, state, buyer):
    body = {"quantity": 1, "idempotency_key": "k"}
    got = api.call(base, "POST", f"/v1/drops/{state['drop']}/claims", viewer(state, buyer), body, (201,))
    if got["status"] != "reserved":
        raise DrillError(f"claim of {buyer} answered {got}")


def chat(ws, stream, text):
    """Sends a chat message and reads until both its `ok` and its event came, in either order (the
    event may come first)."""
    ref = f"chat-{text}"
    ws.send({"op": "chat", "stream": stream, "text": text, "ref": ref})
    answered = seen = False
    while not (answered and seen):
        msg = ws.recv()
        if msg.get("type") == "error":
            raise DrillError(f"chat {text!r} refused: {msg}")
        if msg.get("type") == "ok" and msg.get("ref") == ref:
            answered = True
        elif msg.get("type") == "event" and msg.get("data", {}).get("text") == text:
            seen = True


def traffic(base, state_path, stop_path, out_path):
    """One round: a chat message answered `ok` and seen, then a claim answered 201. Any other
    answer ends the loop with the error in OUT (and exit status 1)."""
    state = load(state_path)
    ws = api.WebSocket(base, viewer(state, "chatter"))
    ws.request({"op": "join", "stream": state["stream"]})
    rounds, slowest, error, step = 0, 0.0, None, "join"
    started = time.monotonic()
    try:
        while not os.path.exists(stop_path):
            t0 = time.monotonic()
            text = f"during the deploy {rounds}"
            step = f"round {rounds}: chat"
            chat(ws, state["stream"], text)
            step = f"round {rounds}: claim"
            claim(base, state, f"rush-{os.getpid()}-{rounds}")
            rounds += 1
            slowest = max(slowest, time.monotonic() - t0)
            time.sleep(0.02)
    except (DrillError, OSError) as err:
        error = f"{step}: {err}"
    with open(out_path, "w") as f:
        json.dump({"rounds": rounds, "seconds": round(time.monotonic() - started, 1),
                   "slowest_ms": round(slowest * 1000), "error": error}, f)
    if error:
        sys.exit(1)


def serves(base, state_path, label, other=None):
    """Each check on its own, so one run shows every failure: a WebSocket join, chat answered and
    seen (and seen by a viewer on OTHER), a claim. Exits 1 when any failed."""
    state = load(state_path)
    failed = []

    def check(what, step):
        try:
            step()
        except (DrillError, OSError) as err:
            failed.append(f"{what}: {err}")

    text = f"hello from the {label} node"
    sockets = {}

    def join():
        sockets["ws"] = api.WebSocket(base, viewer(state, f"viewer-{label}"))
        sockets["ws"].request({"op": "join", "stream": state["stream"]})
        if other:
            sockets["watcher"] = api.WebSocket(other, viewer(state, f"watcher-{label}"))
            sockets["watcher"].request({"op": "join", "stream": state["stream"]})

    def say():
        chat(sockets["ws"], state["stream"], text)
        if other:
            sockets["watcher"].until(
                lambda m: m.get("type") == "event" and m.get("data", {}).get("text") == text)

    check("WebSocket join", join)
    if "ws" in sockets and (not other or "watcher" in sockets):
        check("chat" + (" seen on the other node" if other else ""), say)
    check("claim", lambda: claim(base, state, f"buyer-{label}-{os.getpid()}"))
    for ws in sockets.values():
        ws.close()
    if failed:
        for failure in failed:
            print(f"the {label} node FAILS: {failure}", file=sys.stderr)
        sys.exit(1)
    seen = " (seen on the other node too)" if other else ""
    print(f"the {label} node serves: REST, WebSocket join, chat{seen}, a claim")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    try:
        {"setup": setup, "traffic": traffic, "serves": serves}[cmd](*args)
    except DrillError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
