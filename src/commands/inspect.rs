//! `hami inspect`: decode HAMi annotations of a node or pod object.

use hami_core::inspect::{ObjectKind, inspect_annotations};
use std::collections::BTreeMap;
use std::io::Read;
use std::process::ExitCode;

/// Arguments of `hami inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A Kubernetes Node or Pod as YAML or JSON; `-` reads standard input.
    pub file: String,
}

/// Only what inspect needs of a Kubernetes object; everything else is ignored.
#[derive(Debug, serde::Deserialize)]
struct Object {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: Meta,
}

#[derive(Debug, Default, serde::Deserialize)]
struct Meta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

/// Run the command: print the report; exit 1 when an annotation does not decode (the report
/// of everything else is still printed).
pub fn run(args: Args) -> Result<ExitCode, String> {
    let (source, text) = if args.file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("reading standard input: {e}"))?;
        ("<stdin>".to_string(), s)
    } else {
        let s = std::fs::read_to_string(&args.file)
            .map_err(|e| format!("reading {}: {e}", args.file))?;
        (args.file.clone(), s)
    };
    let obj: Object = serde_saphyr::from_str(&text)
        .map_err(|e| format!("{source}: not a Kubernetes object: {e}"))?;
    let kind = match obj.kind.as_deref() {
        Some("Node") => ObjectKind::Node,
        Some("Pod") => ObjectKind::Pod,
        Some(other) => return Err(format!("{source}: kind {other:?} is neither Node nor Pod")),
        None => ObjectKind::Auto,
    };
    let annotations = obj.metadata.annotations.unwrap_or_default();
    let name = obj.metadata.name.unwrap_or_else(|| "<unnamed>".into());
    println!("{} {name}", obj.kind.as_deref().unwrap_or("object"));
    match inspect_annotations(kind, &annotations) {
        Ok(report) => {
            print!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            print!("{}", e.report);
            for err in &e.errors {
                eprintln!("{source}: {err}");
            }
            Ok(ExitCode::from(1))
        }
    }
}
