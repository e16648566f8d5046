//! The packaged artifact the deployment commands ship: `target/package/arm64/manifest.json`
//! (written by `cargo xtask package --arch arm64`) and the digests that identify it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::build::Arch;
use crate::package::{hex, package_dir};

/// The functions every manifest must hold, and the keys of a stack's `artifactDigests`.
pub const FUNCTIONS: [&str; 3] = ["auditor", "stream-processor", "transformer"];

/// Where the deployment commands expect the arm64 package.
pub fn manifest_path() -> PathBuf {
    package_dir(Arch::Arm64).join("manifest.json")
}

/// Function → lower-case hex SHA-256 of its zip.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Digests(pub BTreeMap<String, String>);

impl Digests {
    /// Parses `auditor=<sha256>,stream-processor=<sha256>,transformer=<sha256>` (the `--digests`
    /// flag).
    pub fn parse_flag(text: &str) -> Result<Digests> {
        let mut map = BTreeMap::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((function, sha)) = part.split_once('=') else {
                bail!("`--digests`: `{part}` is not `<function>=<sha256>`");
            };
            map.insert(function.trim().to_owned(), sha.trim().to_ascii_lowercase());
        }
        let digests = Digests(map);
        digests.check().context(
            "`--digests` must be `auditor=<sha256>,stream-processor=<sha256>,transformer=<sha256>`",
        )?;
        Ok(digests)
    }

    /// A stack's `artifactDigests` output.
    pub fn from_json(value: &Value) -> Result<Digests> {
        let Some(object) = value.as_object() else {
            bail!("`artifactDigests` is not an object");
        };
        let map = object
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|s| (k.clone(), s.to_owned()))
                    .with_context(|| format!("`artifactDigests.{k}` is not a string"))
            })
            .collect::<Result<_>>()?;
        let digests = Digests(map);
        digests.check()?;
        Ok(digests)
    }

    /// Exactly the functions of `FUNCTIONS`, each with a 64-digit lower-case hex digest.
    pub fn check(&self) -> Result<()> {
        for f in FUNCTIONS {
            match self.0.get(f) {
                None => bail!("no digest for `{f}`"),
                Some(sha) if !is_sha256(sha) => {
                    bail!("the digest of `{f}` is not 64 lower-case hex digits: `{sha}`")
                }
                Some(_) => {}
            }
        }
        if let Some(other) = self.0.keys().find(|k| !FUNCTIONS.contains(&k.as_str())) {
            bail!(
                "unknown function `{other}`: expected {}",
                FUNCTIONS.join(", ")
            );
        }
        Ok(())
    }

    /// A stable identity of the pair: SHA-256 of the canonical `function=sha,…` text.
    pub fn fingerprint(&self) -> String {
        hex(&Sha256::digest(self.to_string().as_bytes()))
    }
}

impl fmt::Display for Digests {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&parts.join(","))
    }
}

/// Refuses when two digest sets differ, naming each function that differs.
pub fn require_same(want: &Digests, have: &Digests, what: &str) -> Result<()> {
    let diffs: Vec<String> = FUNCTIONS
        .iter()
        .filter(|f| want.0.get(**f) != have.0.get(**f))
        .map(|f| {
            let show = |d: &Digests| d.0.get(*f).map_or("none", String::as_str).to_owned();
            format!("{f}: expected {}, found {}", show(want), show(have))
        })
        .collect();
    if !diffs.is_empty() {
        bail!("{what}: {}", diffs.join("; "));
    }
    Ok(())
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A verified manifest: every zip exists with the size and SHA-256 the manifest records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Absolute path of `manifest.json`.
    pub path: PathBuf,
    /// The commit the zips were built from.
    pub git_sha: String,
    pub digests: Digests,
    /// Function → absolute path of its zip.
    pub zips: BTreeMap<String, PathBuf>,
}

/// Reads `manifest.json` and checks every zip against it.
pub fn verify_manifest(path: &Path) -> Result<Manifest> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "no artifact manifest at {}: run `cargo xtask build --arch arm64` and `cargo xtask package --arch arm64` first (CI downloads the `functions-arm64` artifact there)",
            path.display()
        )
    })?;
    let path = std::path::absolute(path)?;
    let where_ = format!("artifact manifest {}", path.display());
    let value: Value =
        serde_json::from_str(&text).with_context(|| format!("{where_}: not JSON"))?;
    let git_sha = value["git_sha"]
        .as_str()
        .with_context(|| format!("{where_}: `git_sha` is missing"))?
        .to_owned();
    let functions = value["functions"]
        .as_array()
        .with_context(|| format!("{where_}: `functions` is missing"))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut map = BTreeMap::new();
    let mut zips = BTreeMap::new();
    for f in functions {
        let field = |k: &str| {
            f[k].as_str()
                .with_context(|| format!("{where_}: a function has no `{k}`"))
        };
        let (function, arch, zip, sha256) = (
            field("function")?,
            field("arch")?,
            field("zip")?,
            field("sha256")?,
        );
        let size = f["size"]
            .as_u64()
            .with_context(|| format!("{where_}: `{function}` has no `size`"))?;
        if arch != "arm64" {
            bail!(
                "{where_}: `{function}` is built for {arch}; the stacks run arm64: run `cargo xtask package --arch arm64`"
            );
        }
        if zip.contains('/') || zip.contains('\\') || zip.starts_with('.') {
            bail!("{where_}: `{function}` names the zip `{zip}`, which is not a plain file name");
        }
        let zip_path = dir.join(zip);
        let bytes = std::fs::read(&zip_path).with_context(|| {
            format!(
                "{where_}: cannot read {}: the package is incomplete, package again",
                zip_path.display()
            )
        })?;
        if bytes.len() as u64 != size {
            bail!(
                "{where_}: {} is {} bytes but the manifest says {size}: the zip was changed or truncated after packaging; package again",
                zip_path.display(),
                bytes.len()
            );
        }
        let actual = hex(&Sha256::digest(&bytes));
        if actual != sha256 {
            bail!(
                "{where_}: the SHA-256 of {} is {actual} but the manifest says {sha256}: the zip was changed after packaging; package again",
                zip_path.display()
            );
        }
        if map.insert(function.to_owned(), actual).is_some() {
            bail!("{where_}: `{function}` appears twice");
        }
        zips.insert(function.to_owned(), zip_path);
    }
    let digests = Digests(map);
    digests
        .check()
        .with_context(|| format!("{where_}: the functions are not the pipeline's"))?;
    Ok(Manifest {
        path,
        git_sha,
        digests,
        zips,
    })
}

/// The workflow that builds, attests and uploads the functions (its `build` job); the only signer
/// promotion accepts.
pub const SIGNER_WORKFLOW: &str = ".github/workflows/deploy.yml";
/// The only ref that workflow builds from.
pub const SIGNER_REF: &str = "refs/heads/main";

/// `gh attestation verify` of one zip: a build-provenance attestation signed by `SIGNER_WORKFLOW`
/// of `repo`, run on a GitHub-hosted runner for `SIGNER_REF` at the commit the manifest records.
pub fn attestation_args(zip: &Path, repo: &str, git_sha: &str) -> Result<Vec<String>> {
    let valid_part = |p: &str| {
        !p.is_empty()
            && !p.starts_with('.')
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    match repo.split_once('/') {
        Some((owner, name)) if valid_part(owner) && valid_part(name) => {}
        _ => bail!("`--attestation-repo` must be `<owner>/<name>`, not `{repo}`"),
    }
    if git_sha.len() != 40 || !git_sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!(
            "the artifact manifest records `{git_sha}` as its commit, not a 40-digit commit SHA: only a package built by {SIGNER_WORKFLOW} can have its provenance verified"
        );
    }
    Ok([
        "attestation",
        "verify",
        &zip.display().to_string(),
        "--repo",
        repo,
        "--signer-workflow",
        &format!("{repo}/{SIGNER_WORKFLOW}"),
        "--source-ref",
        SIGNER_REF,
        "--source-digest",
        git_sha,
        "--deny-self-hosted-runners",
    ]
    .map(str::to_owned)
    .to_vec())
}

/// Verifies the build provenance of every zip of a verified manifest with `gh` (which needs
/// `GH_TOKEN`); refuses at the first zip without a matching attestation.
pub fn verify_attestations(manifest: &Manifest, repo: &str) -> Result<()> {
    for (function, zip) in &manifest.zips {
        let args = attestation_args(zip, repo, &manifest.git_sha)?;
        let out = crate::util::output(std::process::Command::new("gh").args(&args))
            .with_context(|| {
                format!(
                    "the build provenance of `{function}` ({}) does not verify: promote only an artifact that {SIGNER_WORKFLOW} built and attested on {SIGNER_REF} (needs the `gh` CLI and GH_TOKEN)",
                    zip.display()
                )
            })?;
        eprintln!("{function}: provenance verified ({})", out.trim());
    }
    Ok(())
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A package directory with a fake zip per function and their manifest; returns the manifest's path.
    pub fn write_package(dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let mut functions = Vec::new();
        for f in FUNCTIONS {
            let bytes = format!("zip bytes of {f}").into_bytes();
            std::fs::write(dir.join(format!("{f}.zip")), &bytes).unwrap();
            functions.push(serde_json::json!({"function": f, "arch": "arm64", "zip": format!("{f}.zip"), "sha256": hex(&Sha256::digest(&bytes)), "size": bytes.len()}));
        }
        let path = dir.join("manifest.json");
        let manifest = serde_json::json!({"git_sha": "abc123", "functions": functions});
        std::fs::write(&path, manifest.to_string()).unwrap();
        path
    }

    pub fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    pub fn digests(sp: char, tr: char) -> Digests {
        Digests::parse_flag(&format!(
            "auditor={},stream-processor={},transformer={}",
            "f".repeat(64),
            sp.to_string().repeat(64),
            tr.to_string().repeat(64)
        ))
        .unwrap()
    }

    #[test]
    fn a_consistent_package_verifies() {
        let dir = temp_dir("manifest-ok");
        let m = verify_manifest(&write_package(&dir)).unwrap();
        assert_eq!(m.git_sha, "abc123");
        assert!(m.path.is_absolute());
        assert_eq!(
            m.digests.0["transformer"],
            hex(&Sha256::digest(b"zip bytes of transformer"))
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_changed_zip_is_refused() {
        let dir = temp_dir("manifest-corrupt");
        let path = write_package(&dir);
        // Same size, different bytes: only the digest can tell.
        std::fs::write(dir.join("transformer.zip"), b"zip bytes of transformeR").unwrap();
        let err = verify_manifest(&path).unwrap_err().to_string();
        assert!(
            err.contains("SHA-256") && err.contains("package again"),
            "{err}"
        );
        // Truncated: the size tells first.
        std::fs::write(dir.join("transformer.zip"), b"zip").unwrap();
        let err = verify_manifest(&path).unwrap_err().to_string();
        assert!(err.contains("3 bytes"), "{err}");
        std::fs::remove_file(dir.join("transformer.zip")).unwrap();
        let err = verify_manifest(&path).unwrap_err().to_string();
        assert!(err.contains("cannot read"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_missing_or_foreign_manifest_is_refused() {
        let dir = temp_dir("manifest-missing");
        let err = format!(
            "{:#}",
            verify_manifest(&dir.join("manifest.json")).unwrap_err()
        );
        assert!(err.contains("cargo xtask package --arch arm64"), "{err}");
        let path = write_package(&dir);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("\"arm64\"", "\"x86_64\"")).unwrap();
        let err = verify_manifest(&path).unwrap_err().to_string();
        assert!(err.contains("built for x86_64"), "{err}");
        let only_one = serde_json::json!({"git_sha": "x", "functions": []});
        std::fs::write(&path, only_one.to_string()).unwrap();
        let err = format!("{:#}", verify_manifest(&path).unwrap_err());
        assert!(err.contains("no digest for `auditor`"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn digests_flag_parses_and_refuses() {
        let d = digests('a', 'b');
        assert_eq!(
            Digests::parse_flag(&format!(" {d} ")).unwrap(),
            d,
            "round trip through the flag form"
        );
        let upper = d
            .to_string()
            .to_ascii_uppercase()
            .replace("AUDITOR", "auditor")
            .replace("STREAM-PROCESSOR", "stream-processor")
            .replace("TRANSFORMER", "transformer");
        assert_eq!(Digests::parse_flag(&upper).unwrap(), d);
        for bad in [
            "",
            "stream-processor=abc",
            &format!("stream-processor={}", "a".repeat(64)),
            &format!("{d},other={}", "c".repeat(64)),
            "stream-processor",
        ] {
            assert!(Digests::parse_flag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fingerprints_identify_the_pair() {
        assert_eq!(
            digests('a', 'b').fingerprint(),
            digests('a', 'b').fingerprint()
        );
        assert_ne!(
            digests('a', 'b').fingerprint(),
            digests('b', 'a').fingerprint()
        );
        assert_eq!(digests('a', 'b').fingerprint().len(), 64);
    }

    #[test]
    fn provenance_is_verified_against_the_deploy_workflow_on_main_at_the_manifests_commit() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let args = attestation_args(Path::new("/pkg/transformer.zip"), "acme/eventpipe", sha)
            .unwrap()
            .join(" ");
        assert_eq!(
            args,
            format!(
                "attestation verify /pkg/transformer.zip --repo acme/eventpipe --signer-workflow acme/eventpipe/.github/workflows/deploy.yml --source-ref refs/heads/main --source-digest {sha} --deny-self-hosted-runners"
            )
        );
        for repo in [
            "acme",
            "acme/",
            "/eventpipe",
            "acme/event pipe",
            "a/b/c",
            "../x",
        ] {
            let err = attestation_args(Path::new("z.zip"), repo, sha)
                .unwrap_err()
                .to_string();
            assert!(err.contains("`<owner>/<name>`"), "{repo}: {err}");
        }
        for not_a_commit in ["abc123", "unknown", &format!("{sha}-dirty")] {
            let err = attestation_args(Path::new("z.zip"), "acme/eventpipe", not_a_commit)
                .unwrap_err()
                .to_string();
            assert!(err.contains("not a 40-digit commit SHA"), "{err}");
        }
    }

    #[test]
    fn a_verified_manifest_knows_its_zips() {
        let dir = temp_dir("manifest-zips");
        let m = verify_manifest(&write_package(&dir)).unwrap();
        assert_eq!(
            m.zips.keys().collect::<Vec<_>>(),
            vec!["auditor", "stream-processor", "transformer"]
        );
        assert!(m.zips["transformer"].is_absolute());
        assert!(m.zips["transformer"].ends_with("transformer.zip"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn differing_digests_name_the_function() {
        require_same(&digests('a', 'b'), &digests('a', 'b'), "x").unwrap();
        let err = require_same(&digests('a', 'b'), &digests('a', 'c'), "dev")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("dev: transformer: expected bbbb"), "{err}");
        assert!(!err.contains("stream-processor"), "{err}");
    }
}
