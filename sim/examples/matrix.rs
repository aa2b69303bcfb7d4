//! Run every scenario of a folder (default trace first): `cargo run --release -p hami-sim
//! --example matrix -- scenarios/fgd reports/fgd 2`.
use hami_sim::scenario::Scenario;
use std::path::Path;

fn main() -> Result<(), String> {
    let a: Vec<String> = std::env::args().collect();
    let mut s = Scenario::load_all(Path::new(
        a.get(1).map(String::as_str).unwrap_or("scenarios/fgd"),
    ))?;
    s.sort_by_key(|x| (!x.file.name.starts_with("default"), x.file.name.clone()));
    let out = a.get(2).map(String::as_str).unwrap_or("reports/fgd");
    let jobs = a.get(3).and_then(|j| j.parse().ok()).unwrap_or(2);
    let r = hami_sim::matrix::run_matrix(&s, jobs, Some(Path::new(out)), true)?;
    eprintln!("{} runs in {:.1}s", r.rows.len(), r.wall.as_secs_f64());
    Ok(())
}
