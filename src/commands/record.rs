//! `hami record`: turn a live cluster's GPU nodes, cards and GPU pod history into a
//! discrete-event scenario that `hami sim run` replays under any policy.

use hami_cluster::record::{RenderOptions, default_policies, render, run_record};
use hami_sim::des::model::Scenario;
use hami_sim::des::units::parse_duration;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `hami record`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// kubeconfig file (default: `KUBECONFIG`, then the in-cluster config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Only pods alive during this last stretch (`7d`, `12h`, `30m`); the replay starts there.
    /// Default: from the oldest GPU pod still known to the API server.
    #[arg(long)]
    pub since: Option<String>,
    /// Keep watching pods for this long (`1h`; Ctrl-C or SIGTERM ends it early) so that pods
    /// deleted meanwhile are recorded with their departure. Default: one listing.
    #[arg(long)]
    pub follow: Option<String>,
    /// Scenario file to write.
    #[arg(long, default_value = "scenario.yaml")]
    pub out: PathBuf,
    /// Scenario name.
    #[arg(long, default_value = "recorded")]
    pub name: String,
    /// Exit 1 when anything was left out (a warning was printed).
    #[arg(long)]
    pub strict: bool,
}

fn duration(flag: &str, text: &Option<String>) -> Result<Option<u64>, String> {
    text.as_deref()
        .map(|t| {
            parse_duration(t)
                .map(|d| d.0)
                .map_err(|e| format!("{flag}: {e}"))
        })
        .transpose()
}

/// Record, render, check that the scenario loads in the simulator, write it.
pub fn run(args: Args) -> Result<ExitCode, String> {
    let since = duration("--since", &args.since)?;
    let follow = duration("--follow", &args.follow)?.map(std::time::Duration::from_millis);
    let rec = run_record(args.kubeconfig.as_deref(), follow)?;
    for w in &rec.warnings {
        eprintln!("warning: {w}");
    }
    let since_ms = since.map(|s| rec.now_ms - i64::try_from(s).unwrap_or(i64::MAX / 2));
    let opts = RenderOptions {
        name: args.name.clone(),
        description: format!(
            "recorded by hami record{}",
            args.since
                .as_deref()
                .map(|s| format!(" (last {s})"))
                .unwrap_or_default()
        ),
        now_ms: rec.now_ms,
        since_ms,
        policies: default_policies(),
    };
    let (text, summary) = render(&opts, &rec.nodes, &rec.pods);
    if summary.nodes == 0 || summary.pods == 0 {
        return Err(format!(
            "nothing to replay: {} GPU nodes and {} GPU pods recorded ({} ended before the window)",
            summary.nodes, summary.pods, summary.before_window
        ));
    }
    // The file must load in the simulator; a failure here is the recorder's bug, shown with
    // the file's line.
    if let Err(e) = Scenario::parse(&args.out, &text) {
        let kept = args.out.with_extension("rejected.yaml");
        let _ = std::fs::write(&kept, &text);
        return Err(format!(
            "the recorded scenario does not load (kept as {}): {e}",
            kept.display()
        ));
    }
    std::fs::write(&args.out, &text).map_err(|e| format!("writing {}: {e}", args.out.display()))?;
    eprintln!(
        "recorded {} GPU nodes, {} cards, {} GPU pods ({} with a departure{}) into {}",
        summary.nodes,
        summary.cards,
        summary.pods,
        summary.ended,
        if summary.before_window > 0 {
            format!(", {} ended before the window", summary.before_window)
        } else {
            String::new()
        },
        args.out.display()
    );
    Ok(if args.strict && !rec.warnings.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use hami_cluster::record::{
        RecordedCard, RecordedContainer, RecordedNode, RecordedPod, RenderOptions,
        default_policies, render,
    };
    use hami_sim::des::engine::{Engine, RunOptions};
    use hami_sim::des::model::Scenario;
    use std::collections::BTreeMap;
    use std::path::Path;

    fn card(id: &str, model: &str, mib: u64) -> RecordedCard {
        RecordedCard {
            id: id.into(),
            family: "nvidia",
            model: model.into(),
            memory_mib: mib,
            cores: 100,
            split: 10,
            numa: 0,
            healthy: true,
            cordoned: false,
        }
    }

    fn pod(name: &str, at_s: i64, end_s: Option<i64>, limits: &[(&str, &str)]) -> RecordedPod {
        RecordedPod {
            namespace: "default".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            created_ms: 1_000_000 + at_s * 1000,
            scheduled_ms: None,
            ended_ms: end_s.map(|e| 1_000_000 + e * 1000),
            priority: 0,
            annotations: BTreeMap::new(),
            init_containers: Vec::new(),
            containers: vec![RecordedContainer {
                name: "main".into(),
                limits: limits
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                requests: BTreeMap::new(),
            }],
            placement: None,
        }
    }

    /// A rendered recording loads in the simulator and replays under every default policy with
    /// the recorded nodes, cards and pods.
    #[test]
    fn recording_replays_in_the_simulator() {
        let nodes = vec![
            RecordedNode {
                name: "gpu-a".into(),
                cpu_milli: Some(64_000),
                memory_mib: Some(524_288),
                links: vec![(0, 1, 600)],
                cards: (0..4)
                    .map(|i| card(&format!("GPU-a{i}"), "NVIDIA A100-SXM4-40GB", 40960))
                    .collect(),
            },
            RecordedNode {
                name: "gpu-b".into(),
                cpu_milli: None,
                memory_mib: None,
                links: Vec::new(),
                cards: (0..2)
                    .map(|i| card(&format!("GPU-b{i}"), "Tesla T4", 15360))
                    .collect(),
            },
        ];
        let pods = vec![
            pod(
                "share",
                0,
                None,
                &[
                    ("nvidia.com/gpu", "1"),
                    ("nvidia.com/gpumem", "3000"),
                    ("nvidia.com/gpucores", "30"),
                ],
            ),
            pod("whole", 3, None, &[("nvidia.com/gpu", "2")]),
            pod(
                "gone",
                5,
                Some(20),
                &[("nvidia.com/gpu", "1"), ("nvidia.com/gpumem", "10000")],
            ),
        ];
        let opts = RenderOptions {
            name: "rec".into(),
            description: String::new(),
            now_ms: 1_000_000 + 60_000,
            since_ms: None,
            policies: default_policies(),
        };
        let (text, _) = render(&opts, &nodes, &pods);
        let sc =
            Scenario::parse(Path::new("rec.yaml"), &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let v = &sc.variants[0];
        assert_eq!(v.nodes.len(), 2);
        assert_eq!(v.total_cards, 6);
        assert_eq!(v.nodes[0].0.devices[3].uuid, "GPU-a3");
        assert_eq!(v.nodes[0].0.links.get(0, 1), 600);
        assert_eq!(v.nodes[1].0.devices[0].memory_mib, 15360);
        assert_eq!(sc.stop_time, Some(61_000));
        for p in &sc.policies {
            let o = Engine::new(&sc, v, p, 1, RunOptions::default())
                .run()
                .unwrap_or_else(|e| panic!("{}: {e}", p.name));
            assert_eq!(o.metrics["arrived"], 3.0, "{}", p.name);
            assert_eq!(o.metrics["placed"], 3.0, "{}: {:?}", p.name, o.metrics);
        }
    }
}
