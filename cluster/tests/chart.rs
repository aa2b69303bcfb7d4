//! The chart and the code must not drift: kube-scheduler's `managedResources` (rendered into the
//! KubeSchedulerConfiguration) must be exactly what the extender manages,
//! `RequestTranslator::managed_resources()` for the chart's own device configuration. A resource
//! missing there makes kube-scheduler check `nvidia.com/gpumem`-style resources against node
//! capacity (pods stay Pending); an extra one is harmless but a sign of drift.

use hami_core::config::DeviceConfig;
use hami_core::request::RequestTranslator;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn repo_file(rel: &str) -> (PathBuf, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    (path, text)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Values {
    scheduler: SchedulerValues,
    device_config: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchedulerValues {
    managed_resources: Vec<String>,
}

/// One object of the rendered manifests (only what this test reads).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Object {
    kind: String,
    data: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct SchedulerConfig {
    kind: String,
    extenders: Vec<ExtenderConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExtenderConfig {
    managed_resources: Vec<ManagedResource>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManagedResource {
    name: String,
    ignored_by_scheduler: bool,
}

/// What the code manages for the chart's device configuration.
fn code_list(values: &Values) -> Vec<String> {
    let cfg = DeviceConfig::from_yaml("values.yaml deviceConfig", &values.device_config)
        .unwrap_or_else(|e| panic!("the chart's deviceConfig does not parse: {e}"));
    RequestTranslator::new(&cfg).managed_resources()
}

fn values() -> Values {
    let (path, text) = repo_file("deploy/helm/hami-rs/values.yaml");
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn diff(what: &str, chart: &[String], code: &[String]) -> Option<String> {
    let missing: Vec<&String> = code.iter().filter(|r| !chart.contains(r)).collect();
    let extra: Vec<&String> = chart.iter().filter(|r| !code.contains(r)).collect();
    (chart != code).then(|| {
        format!(
            "{what} drifted from RequestTranslator::managed_resources() \
             (print the right list with `hami scheduler --print-managed-resources`):\n  \
             missing: {missing:?}\n  extra: {extra:?}\n  want (sorted): {code:?}"
        )
    })
}

#[test]
fn values_managed_resources_match_the_code() {
    let v = values();
    let code = code_list(&v);
    assert!(
        code.iter().any(|r| r == "nvidia.com/gpumem"),
        "sanity: {code:?}"
    );
    if let Some(d) = diff(
        "values.yaml scheduler.managedResources",
        &v.scheduler.managed_resources,
        &code,
    ) {
        panic!("{d}");
    }
}

#[test]
fn rendered_manifests_managed_resources_match_the_code() {
    let code = code_list(&values());
    let (path, text) = repo_file("deploy/manifests/hami-rs.yaml");
    let objects: Vec<Object> =
        serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let configs: Vec<SchedulerConfig> = objects
        .iter()
        .filter(|o| o.kind == "ConfigMap")
        .filter_map(|o| o.data.get("config.yaml"))
        .map(|c| {
            serde_saphyr::from_str::<SchedulerConfig>(c)
                .unwrap_or_else(|e| panic!("{}: config.yaml: {e}", path.display()))
        })
        .filter(|c| c.kind == "KubeSchedulerConfiguration")
        .collect();
    assert_eq!(configs.len(), 1, "one KubeSchedulerConfiguration expected");
    let ext = configs[0]
        .extenders
        .first()
        .unwrap_or_else(|| panic!("{}: no extender configured", path.display()));
    let not_ignored: Vec<&str> = ext
        .managed_resources
        .iter()
        .filter(|m| !m.ignored_by_scheduler)
        .map(|m| m.name.as_str())
        .collect();
    assert!(
        not_ignored.is_empty(),
        "managed resources kube-scheduler would still check: {not_ignored:?}"
    );
    let rendered: Vec<String> = ext
        .managed_resources
        .iter()
        .map(|m| m.name.clone())
        .collect();
    if let Some(d) = diff(
        "deploy/manifests/hami-rs.yaml (re-render the chart, see deploy/manifests/README.md)",
        &rendered,
        &code,
    ) {
        panic!("{d}");
    }
}
