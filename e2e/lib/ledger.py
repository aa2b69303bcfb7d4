#!/usr/bin/env python3
"""Check the grants of live pods against the fake inventory: no card over its memory, cores or
split count, every grant on the node the pod is bound to, and (with --alloc DIR) every served
Allocate handing out exactly the granted cards.

usage: ledger.py INVENTORY.yaml PODS.json SPLIT [--alloc DIR] [--forbid UUID ...]
PODS.json is `kubectl get pods -o json`. Prints a summary; exits 1 on the first violation.
"""
import json
import os
import sys

import yaml

inv_path, pods_path, split = sys.argv[1], sys.argv[2], int(sys.argv[3])
args = sys.argv[4:]
alloc_dir = None
forbid = set()
while args:
    a = args.pop(0)
    if a == "--alloc":
        alloc_dir = args.pop(0)
    elif a == "--forbid":
        forbid.add(args.pop(0))
cards = {}
card_node = {}
for n in yaml.safe_load(open(inv_path))["nodes"]:
    for c in n.get("cards", []):
        cards[c["uuid"]] = c["memoryMiB"]
        card_node[c["uuid"]] = n["name"]
used = {u: [0, 0, 0] for u in cards}
fail = []
granted = 0
for p in json.load(open(pods_path))["items"]:
    md = p["metadata"]
    ann = md.get("annotations") or {}
    text = ann.get("hami.io/vgpu-devices-allocated")
    if not text or p["status"].get("phase") in ("Succeeded", "Failed"):
        continue
    granted += 1
    name = f'{md["namespace"]}/{md["name"]}'
    node = p["spec"].get("nodeName")
    if ann.get("hami.io/vgpu-node") != node:
        fail.append(f"{name}: hami.io/vgpu-node {ann.get('hami.io/vgpu-node')} != spec.nodeName {node}")
    segments = [s for s in text.split(";")]
    per_container = []
    for seg in segments[:-1] if text.endswith(";") else segments:
        devs = []
        for d in seg.split(":"):
            if not d:
                continue
            f = d.split(",")
            uuid, mem, cores = f[0], int(f[2]), int(f[3])
            devs.append(uuid)
            if uuid not in cards:
                fail.append(f"{name}: unknown card {uuid}")
                continue
            if uuid in forbid:
                fail.append(f"{name}: granted card {uuid}, which left the inventory")
            if card_node[uuid] != node:
                fail.append(f"{name}: card {uuid} is on {card_node[uuid]}, pod bound to {node}")
            u = used[uuid]
            u[0] += mem; u[1] += cores; u[2] += 1
        per_container.append(sorted(devs))
    if alloc_dir:
        f = os.path.join(alloc_dir, f'{md["namespace"]}.{md["name"]}.json')
        if os.path.exists(f):
            r = json.load(open(f))
            got = [sorted({i.rsplit("-", 1)[0] for i in c["deviceIDs"] or []}) for c in r["containers"]]
            want = [c for c in per_container if c]
            errs = [c["error"] for c in r["containers"] if c.get("error")]
            if errs:
                fail.append(f"{name}: Allocate failed: {errs}")
            elif got != want:
                fail.append(f"{name}: Allocate handed out {got}, grant says {want}")
for u, (mem, cores, n) in used.items():
    if mem > cards[u] or cores > 100 or n > split:
        fail.append(f"card {u}: {mem}/{cards[u]} MiB, {cores}/100 cores, {n}/{split} slots: over capacity")
print(f"ledger: {granted} granted pods, {sum(1 for v in used.values() if v[2])} cards in use, "
      f"{len(fail)} violations")
for f in fail:
    print("  " + f)
sys.exit(1 if fail else 0)
