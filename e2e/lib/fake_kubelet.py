#!/usr/bin/env python3
"""Kubelet's half of the allocate protocol for many KWOK nodes at once (scale benchmark only).

usage: fake_kubelet.py API_URL CA_FILE TOKEN LABEL_SELECTOR OUT_PROGRESS

Watches the pods matching LABEL_SELECTOR; for each pod bound to a node whose `hami.io/bind-phase`
is `allocating`, patches it as HAMi's device plugin does after a successful Allocate (bind phase
`success`, the to-allocate list emptied), so the extender lets the next same-shape pod bind on
that node. No device plugin runs: this measures the scheduler, not Allocate. Runs until killed.

It also measures: every 0.25 s while the count grows, OUT_PROGRESS gets a line `<unix time of the
latest bind seen> <pods seen bound>`, from the watch itself, so the benchmark needs no polling of
the API server or of the scheduler's /metrics.
"""
import http.client
import json
import queue
import ssl
import sys
import threading
import time
import urllib.parse

api, ca, token, selector, progress = sys.argv[1:6]
u = urllib.parse.urlparse(api)
ctx = ssl.create_default_context(cafile=ca)
HDR = {"Authorization": f"Bearer {token}"}
work: "queue.Queue[tuple[str, str, int]]" = queue.Queue()
done = set()
bound = set()
last_bound = [0.0, 0]  # time of the latest first sighting of a bound pod, count then
out = open(progress, "a", buffering=1)


def reporter():
    written = 0
    while True:
        t, n = last_bound
        if n != written:
            out.write(f"{t:.3f} {n}\n")
            written = n
        time.sleep(0.25)


threading.Thread(target=reporter, daemon=True).start()


def conn():
    return http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=60)


def patcher():
    global count
    c = conn()
    while True:
        ns, name, n = work.get()
        body = json.dumps({"metadata": {"annotations": {
            "hami.io/bind-phase": "success",
            "hami.io/vgpu-devices-to-allocate": ";" * n,
        }}})
        for attempt in range(5):
            try:
                c.request("PATCH", f"/api/v1/namespaces/{ns}/pods/{name}", body=body,
                          headers={**HDR, "Content-Type": "application/merge-patch+json"})
                r = c.getresponse()
                r.read()
                break
            except (OSError, http.client.HTTPException):
                c.close()
                c = conn()
                time.sleep(0.1 * (attempt + 1))


for _ in range(4):
    threading.Thread(target=patcher, daemon=True).start()

rv = ""
while True:
    c = conn()
    q = urllib.parse.urlencode({"watch": "true", "labelSelector": selector,
                                "resourceVersion": rv, "allowWatchBookmarks": "true"})
    try:
        c.request("GET", f"/api/v1/pods?{q}", headers=HDR)
        r = c.getresponse()
        while True:
            line = r.readline()
            if not line:
                break
            ev = json.loads(line)
            obj = ev.get("object", {})
            meta = obj.get("metadata", {})
            rv = meta.get("resourceVersion", rv)
            if ev.get("type") not in ("ADDED", "MODIFIED"):
                continue
            ann = meta.get("annotations") or {}
            key = (meta.get("namespace"), meta.get("name"))
            if obj.get("spec", {}).get("nodeName") and key not in bound:
                bound.add(key)
                last_bound[:] = [time.time(), len(bound)]
            if (obj.get("spec", {}).get("nodeName") and ann.get("hami.io/bind-phase") == "allocating"
                    and key not in done):
                done.add(key)
                n = ann.get("hami.io/vgpu-devices-to-allocate", "").count(";") or 1
                work.put((key[0], key[1], n))
    except (OSError, http.client.HTTPException, json.JSONDecodeError):
        time.sleep(0.2)
    finally:
        c.close()
