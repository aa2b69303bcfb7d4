//! Redraw tables and plots from a results folder (same as `hami fgd report DIR`):
//! `cargo run --release -p hami-sim --example report -- reports/fgd`.
use std::path::Path;

fn main() -> Result<(), String> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "reports/fgd".into());
    let rows = hami_sim::report::read_runs(Path::new(&dir))?;
    println!("{}", hami_sim::report::summary_table(&rows));
    for f in hami_sim::report::draw_all(Path::new(&dir), &rows)? {
        println!("plot: {}", f.display());
    }
    Ok(())
}
