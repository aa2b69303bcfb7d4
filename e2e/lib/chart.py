#!/usr/bin/env python3
"""Pick the pieces of the rendered Helm chart the e2e applies, patched for local processes.

usage: chart.py RENDERED OUTDIR EXTENDER_URL CA_FILE KUBECONFIG_FOR_KUBE_SCHEDULER

Writes OUTDIR/rbac.yaml (ServiceAccounts, roles, bindings, exactly as rendered),
OUTDIR/configmaps.yaml, OUTDIR/webhook.yaml (the MutatingWebhookConfiguration, its clientConfig
pointed at EXTENDER_URL/webhook with the CA bundle), OUTDIR/scheduler-config.yaml (the
KubeSchedulerConfiguration from the rendered ConfigMap, the extender's urlPrefix pointed at
EXTENDER_URL, and the kubeconfig set) and OUTDIR/device-config.yaml.
"""
import base64
import sys

import yaml

rendered, outdir, url, ca_file, sched_kubeconfig = sys.argv[1:6]
docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
RBAC = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def dump(name, items):
    with open(f"{outdir}/{name}", "w") as f:
        yaml.safe_dump_all(items, f, sort_keys=False)


dump("rbac.yaml", [d for d in docs if d["kind"] in RBAC])
cms = [d for d in docs if d["kind"] == "ConfigMap"]
dump("configmaps.yaml", cms)

sched = None
for cm in cms:
    data = cm.get("data", {})
    if "config.yaml" in data:
        sched = yaml.safe_load(data["config.yaml"])
    if "device-config.yaml" in data:
        with open(f"{outdir}/device-config.yaml", "w") as f:
            f.write(data["device-config.yaml"])
if sched is None:
    sys.exit("rendered chart: no ConfigMap with config.yaml (KubeSchedulerConfiguration)")
for ext in sched.get("extenders", []):
    ext["urlPrefix"] = url
sched["clientConnection"] = {"kubeconfig": sched_kubeconfig}
sched.setdefault("leaderElection", {})["leaderElect"] = False
dump("scheduler-config.yaml", [sched])

ca = base64.b64encode(open(ca_file, "rb").read()).decode()
hooks = [d for d in docs if d["kind"] == "MutatingWebhookConfiguration"]
if len(hooks) != 1:
    sys.exit(f"rendered chart: expected one MutatingWebhookConfiguration, found {len(hooks)}")
for w in hooks[0]["webhooks"]:
    path = w["clientConfig"].get("service", {}).get("path", "/webhook")
    w["clientConfig"] = {"url": url + path, "caBundle": ca}
dump("webhook.yaml", hooks)
