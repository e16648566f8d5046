//! `cargo xtask demo`: the main job. Generates a sample Kinesis batch and runs the offline
//! `pipeline` over it, printing what the stream processor and the transformer would write.

use anyhow::{Context, Result};

use crate::util::{cargo, run, target_dir};

pub fn offline(count: usize, invalid_ratio: f64) -> Result<()> {
    let dir = target_dir().join("demo-offline");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    let batch = dir.join("kinesis-event.json");
    let pipeline = |args: &[&str]| {
        let mut c = cargo();
        c.args([
            "run",
            "--quiet",
            "--locked",
            "-p",
            "pipeline-cli",
            "--bin",
            "pipeline",
            "--",
        ])
        .args(args);
        c
    };
    let out = dir.join("out");
    run(pipeline(&[
        "sample",
        "--count",
        &count.to_string(),
        "--invalid-ratio",
        &invalid_ratio.to_string(),
        "--out",
    ])
    .arg(&batch))?;
    run(pipeline(&["ingest", "--kinesis-event"])
        .arg(&batch)
        .arg("--out")
        .arg(&out))?;
    for raw in walk(&out.join("raw"))? {
        run(pipeline(&["transform", "--raw"])
            .arg(&raw)
            .arg("--out")
            .arg(&out))?;
    }
    println!("\nwrote under {}:", out.display());
    for f in walk(&out)? {
        println!(
            "  {} ({} bytes)",
            f.strip_prefix(&out).unwrap_or(&f).display(),
            std::fs::metadata(&f)?.len()
        );
    }
    Ok(())
}

fn walk(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p)
            } else {
                out.push(p)
            }
        }
    }
    out.sort();
    Ok(out)
}
