//! `cargo xtask package`: one `bootstrap` zip per function, byte-for-byte reproducible (fixed
//! timestamps and permissions), and a manifest the Pulumi program and `promote` read:
//! `target/package/<arch>/{manifest.json,<function>.zip}`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::json;
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;

use crate::build::{Arch, build};
use crate::util::{output, root, target_dir};

pub fn package_dir(arch: Arch) -> PathBuf {
    target_dir().join("package").join(arch.as_str())
}

/// Builds and packages; returns the manifest's path.
pub fn package(arch: Arch, profile: Option<&str>) -> Result<PathBuf> {
    let bins = build(arch, profile)?;
    let dir = package_dir(arch);
    std::fs::create_dir_all(&dir)?;
    let mut functions = Vec::new();
    for (function, bin) in &bins {
        let zip_name = format!("{function}.zip");
        let bytes = zip_bootstrap(bin)?;
        std::fs::write(dir.join(&zip_name), &bytes)?;
        let sha256 = hex(&Sha256::digest(&bytes));
        eprintln!(
            "{function}: {zip_name} {} bytes (binary {} bytes), sha256 {sha256}",
            bytes.len(),
            std::fs::metadata(bin)?.len()
        );
        functions.push(json!({"function": function, "arch": arch.as_str(), "zip": zip_name, "sha256": sha256, "size": bytes.len()}));
    }
    let manifest = json!({"git_sha": git_sha(), "functions": functions});
    let path = dir.join("manifest.json");
    std::fs::write(&path, serde_json::to_string_pretty(&manifest)? + "\n")?;
    eprintln!("wrote {}", path.display());
    Ok(path)
}

/// A zip holding one executable `bootstrap`, with fixed metadata.
pub fn zip_bootstrap(bin: &Path) -> Result<Vec<u8>> {
    let data = std::fs::read(bin).with_context(|| format!("reading {}", bin.display()))?;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o755)
        .last_modified_time(zip::DateTime::default());
    zip.start_file("bootstrap", options)?;
    zip.write_all(&data)?;
    Ok(zip.finish()?.into_inner())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `GIT_SHA` (set by CI), else the checkout's HEAD, marked `-dirty` with local changes.
pub fn git_sha() -> String {
    if let Ok(sha) = std::env::var("GIT_SHA") {
        return sha;
    }
    let head = output(
        std::process::Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(root()),
    )
    .map(|s| s.trim().to_owned())
    .unwrap_or_else(|_| "unknown".to_owned());
    let dirty = output(
        std::process::Command::new("git")
            .args(["status", "--porcelain", "--untracked-files=no"])
            .current_dir(root()),
    )
    .is_ok_and(|s| !s.trim().is_empty());
    if dirty { format!("{head}-dirty") } else { head }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zips_are_reproducible_and_executable() {
        let dir = std::env::temp_dir().join(format!("xtask-zip-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("bootstrap-bin");
        std::fs::write(&bin, b"\x7fELF not really").unwrap();
        let a = zip_bootstrap(&bin).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let b = zip_bootstrap(&bin).unwrap();
        assert_eq!(a, b, "same input, same bytes, whatever the clock says");
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(a)).unwrap();
        let file = archive.by_name("bootstrap").unwrap();
        assert_eq!(file.unix_mode().map(|m| m & 0o777), Some(0o755));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
