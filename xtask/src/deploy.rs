//! `deploy`, `preview`, `promote`, `destroy` and `smoke --env <stack>`: the Pulumi stacks
//! (docs/deployment.md). Decisions (what to refuse, which tags to write) are pure functions; the
//! rest runs the Pulumi CLI and the AWS SDK.
//!
//! A stack records a passed smoke test in its Pulumi stack tags (kept next to its state, so the
//! prod job can read dev's): `smoke-passed` = the fingerprint of the digests that passed last
//! (`pending` while a deployment is in flight), and `smoke-<fingerprint prefix>` = when each pair
//! of digests passed, for the last `SMOKE_HISTORY` pairs, so a rollback can promote an earlier pair.

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::{Context, Result, bail};
use local_runtime::Clients;
use pipeline_config::is_preview;
use serde_json::json;

use crate::artifact::{Digests, Manifest, manifest_path, require_same, verify_manifest};
use crate::package::{git_sha, hex};
use crate::pulumi::{
    Backend, Facts, Outputs, Pulumi, args, aws_endpoint_label, preview_stack_name, stack_name,
};
use crate::util::target_dir;

pub const SMOKE_TAG: &str = "smoke-passed";
pub const SMOKE_PENDING: &str = "pending";
const SMOKE_HISTORY: usize = 100;

/// The history tag of a pair of digests (Pulumi tag names are at most 40 characters).
pub fn history_tag(fingerprint: &str) -> String {
    format!("smoke-{}", &fingerprint[..fingerprint.len().min(32)])
}

/// The tags that record a passed smoke test, and the history tags to drop (the oldest beyond
/// `keep`). History values are RFC 3339 UTC times, which sort as text.
pub fn smoke_tags(
    existing: &BTreeMap<String, String>,
    fingerprint: &str,
    passed_at: &str,
    keep: usize,
) -> (Vec<(String, String)>, Vec<String>) {
    let new = history_tag(fingerprint);
    let mut history: Vec<(&String, &String)> = existing
        .iter()
        .filter(|(k, _)| k.starts_with("smoke-") && *k != SMOKE_TAG && **k != new)
        .collect();
    history.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let remove = history
        .into_iter()
        .skip(keep.saturating_sub(1))
        .map(|(k, _)| k.clone())
        .collect();
    let set = vec![
        (SMOKE_TAG.to_owned(), fingerprint.to_owned()),
        (new, passed_at.to_owned()),
    ];
    (set, remove)
}

/// Whether `promote` may ship `artifact` from `from`: the artifact must be what `from` runs (or,
/// with `--digests`, exactly those digests), and `from`'s smoke test must have passed for it.
pub fn check_promotion(
    from: &str,
    artifact: &Digests,
    from_runs: &Digests,
    from_tags: &BTreeMap<String, String>,
    requested: Option<&Digests>,
) -> Result<()> {
    match requested {
        Some(want) => {
            require_same(
                want,
                artifact,
                "the artifact in target/package/arm64 does not have the digests given with --digests (download the artifact of the run that built them)",
            )?;
            let fp = want.fingerprint();
            let passed =
                from_tags.get(SMOKE_TAG) == Some(&fp) || from_tags.contains_key(&history_tag(&fp));
            if !passed {
                bail!(
                    "the smoke test of `{from}` has not passed for {want} (or it passed more than {SMOKE_HISTORY} deployments ago): only digests that passed on `{from}` are promoted"
                );
            }
        }
        None => {
            require_same(
                from_runs,
                artifact,
                &format!(
                    "the artifact in target/package/arm64 is not what `{from}` runs (a later push may have replaced it: approve the newer run, or pass --digests to promote an earlier artifact)"
                ),
            )?;
            let fp = from_runs.fingerprint();
            match from_tags.get(SMOKE_TAG) {
                Some(v) if *v == fp => {}
                other => bail!(
                    "the smoke test of `{from}` has not passed for the digests it runs ({SMOKE_TAG} = {}): fix `{from}` and run `cargo xtask smoke --env {from}` first",
                    other.map_or("absent", String::as_str)
                ),
            }
        }
    }
    Ok(())
}

/// Whether a stack's PII HMAC key needs seeding: preview stacks get a random key; dev and prod are
/// seeded by a person (docs/deployment.md, "Seed the PII HMAC key"), so a missing key is an error.
pub fn hmac_key_needs_seed(stack: &str, secret: &str, has_value: bool) -> Result<bool> {
    if has_value {
        return Ok(false);
    }
    if is_preview(stack) {
        return Ok(true);
    }
    bail!(
        "the PII HMAC key `{secret}` of `{stack}` has no value, so the transformer fails every raw object: seed it (docs/deployment.md, \"Seed the PII HMAC key\"), redrive the transform DLQ, then run `cargo xtask smoke --env {stack}`"
    )
}

/// The JSON record of a passed smoke test, `target/deploy/<stack>-smoke.json`.
pub fn smoke_record(stack: &str, outputs: &Outputs, passed_at: &str) -> serde_json::Value {
    json!({
        "stack": stack,
        "digests": outputs.digests.0,
        "fingerprint": outputs.digests.fingerprint(),
        "git_sha": outputs.artifact_git_sha,
        "passed_at": passed_at,
    })
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// SDK clients for a deployed stack: the default credential chain, the stack's region.
pub async fn aws_clients(region: &str) -> Clients {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .load()
        .await;
    Clients::from_config(&aws_endpoint_label(region), config)
}

/// Checks the prerequisites, installs the program's packages and logs in to the backend.
fn connect(manifest: Option<&Manifest>) -> Result<(Pulumi, Backend)> {
    let backend = Facts::current().check()?;
    let mut pulumi = Pulumi::new();
    if let Some(m) = manifest {
        pulumi = pulumi.with_program_inputs(&m.path, &git_sha());
        pulumi.install_packages()?;
    }
    pulumi.login(&backend)?;
    Ok((pulumi, backend))
}

/// `deploy --env <stack>`: the packaged artifact to one stack, then its smoke test.
pub fn deploy(env: &str) -> Result<()> {
    let stack = stack_name(env)?;
    let manifest = verify_manifest(&manifest_path())?;
    let (pulumi, backend) = connect(Some(&manifest))?;
    deploy_stack(&pulumi, &backend, &stack, &manifest)
}

fn deploy_stack(
    pulumi: &Pulumi,
    backend: &Backend,
    stack: &str,
    manifest: &Manifest,
) -> Result<()> {
    eprintln!(
        "deploying {} (built from {}) to `{stack}`",
        manifest.digests, manifest.git_sha
    );
    pulumi.ensure_stack(stack, backend)?;
    // Until this deployment's smoke test passes, the stack vouches for nothing.
    pulumi.run(&args::tag_set(stack, SMOKE_TAG, SMOKE_PENDING))?;
    pulumi.run(&args::up(stack))?;
    let outputs = pulumi.outputs(stack)?;
    require_same(
        &manifest.digests,
        &outputs.digests,
        &format!(
            "`{stack}` reports other artifact digests than the manifest it was deployed with; do not promote it"
        ),
    )?;
    println!(
        "`{stack}` runs {} in {}: stream {}, raw bucket {}, processed bucket {}",
        outputs.digests,
        outputs.region,
        outputs.stack.stream,
        outputs.stack.raw_bucket,
        outputs.stack.processed_bucket
    );
    smoke_and_record(pulumi, stack, &outputs)
}

/// `smoke --env <stack>`: the smoke test of a deployed stack, recorded as by `deploy`.
pub fn smoke(env: &str) -> Result<()> {
    let stack = stack_name(env)?;
    let (pulumi, _) = connect(None)?;
    let outputs = pulumi.outputs(&stack)?;
    smoke_and_record(&pulumi, &stack, &outputs)
}

fn smoke_and_record(pulumi: &Pulumi, stack: &str, outputs: &Outputs) -> Result<()> {
    runtime()?.block_on(async {
        let clients = aws_clients(&outputs.region).await;
        ensure_hmac_key(&clients, stack, outputs).await?;
        crate::local::smoke(&clients, &outputs.stack)
            .await
            .with_context(|| format!("smoke test of `{stack}`"))
    })?;
    let passed_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let record = smoke_record(stack, outputs, &passed_at);
    let dir = target_dir().join("deploy");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{stack}-smoke.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&record)? + "\n")?;
    println!("{}", serde_json::to_string_pretty(&record)?);
    let (set, remove) = smoke_tags(
        &pulumi.tags(stack)?,
        &outputs.digests.fingerprint(),
        &passed_at,
        SMOKE_HISTORY,
    );
    for (name, value) in set {
        pulumi.run(&args::tag_set(stack, &name, &value))?;
    }
    for name in remove {
        pulumi.run(&args::tag_rm(stack, &name))?;
    }
    eprintln!(
        "recorded the smoke test in {} and in the tags of `{stack}`",
        path.display()
    );
    Ok(())
}

async fn ensure_hmac_key(clients: &Clients, stack: &str, outputs: &Outputs) -> Result<()> {
    let secret = &outputs.hmac_secret_arn;
    let described = clients
        .secrets
        .describe_secret()
        .secret_id(secret)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "describing the PII HMAC key {}: {}",
                outputs.stack.hmac_secret,
                aws_smithy_types::error::display::DisplayErrorContext(e)
            )
        })?;
    let has_value = described.version_ids_to_stages().is_some_and(|v| {
        v.values()
            .any(|stages| stages.iter().any(|s| s == "AWSCURRENT"))
    });
    if hmac_key_needs_seed(stack, &outputs.stack.hmac_secret, has_value)? {
        clients
            .secrets
            .put_secret_value()
            .secret_id(secret)
            .secret_string(random_key()?)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "seeding the PII HMAC key {}: {}",
                    outputs.stack.hmac_secret,
                    aws_smithy_types::error::display::DisplayErrorContext(e)
                )
            })?;
        eprintln!(
            "seeded the PII HMAC key {} with a random value",
            outputs.stack.hmac_secret
        );
    }
    Ok(())
}

/// 32 random bytes as hex, like `openssl rand -hex 32`.
fn random_key() -> Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(hex(&bytes))
}

/// `preview --env <stack>`: what `deploy` would change, with policies, on stdout.
pub fn preview(env: &str) -> Result<()> {
    let stack = stack_name(env)?;
    let manifest = verify_manifest(&manifest_path())?;
    let (pulumi, _) = connect(Some(&manifest))?;
    if !pulumi.stack_exists(&stack)? {
        bail!(
            "stack `{stack}` does not exist yet, so there is nothing to compare with: deploy it with `cargo xtask deploy --env {stack}`"
        );
    }
    pulumi.run(&args::preview(&stack))
}

/// `promote --from dev --to prod [--digests …]`: the artifact `from` runs and smoke-tested, to `to`.
pub fn promote(from: &str, to: &str, digests: Option<&str>) -> Result<()> {
    let (from, to) = (stack_name(from)?, stack_name(to)?);
    if from == to {
        bail!(
            "`--from` and `--to` are both `{from}`: promotion moves an artifact between two stacks"
        );
    }
    let requested = digests.map(Digests::parse_flag).transpose()?;
    let manifest = verify_manifest(&manifest_path())?;
    let (pulumi, backend) = connect(Some(&manifest))?;
    let from_outputs = pulumi
        .outputs(&from)
        .with_context(|| format!("reading what `{from}` runs"))?;
    let from_tags = pulumi.tags(&from)?;
    check_promotion(
        &from,
        &manifest.digests,
        &from_outputs.digests,
        &from_tags,
        requested.as_ref(),
    )?;
    eprintln!(
        "`{from}` passed its smoke test with {}: promoting to `{to}`",
        manifest.digests
    );
    deploy_stack(&pulumi, &backend, &to, &manifest)
}

/// `destroy --env pr-<n>`: the preview stack's resources, then the stack itself.
pub fn destroy(env: &str) -> Result<()> {
    let stack = preview_stack_name(env)?;
    let (pulumi, _) = connect(None)?;
    if !pulumi.stack_exists(&stack)? {
        println!("stack `{stack}` does not exist: nothing to destroy");
        return Ok(());
    }
    pulumi.run(&args::destroy(&stack))?;
    pulumi.run(&args::stack_rm(&stack))?;
    let _ = std::fs::remove_file(
        target_dir()
            .join("deploy")
            .join(format!("{stack}-smoke.json")),
    );
    println!("destroyed `{stack}`");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::tests::digests;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn promotion_of_what_dev_runs_after_its_smoke_passed() {
        let d = digests('a', 'b');
        let t = tags(&[(SMOKE_TAG, &d.fingerprint())]);
        check_promotion("dev", &d, &d, &t, None).unwrap();
    }

    #[test]
    fn promotion_is_refused_when_the_smoke_test_has_not_passed() {
        let d = digests('a', 'b');
        for t in [
            tags(&[]),
            tags(&[(SMOKE_TAG, SMOKE_PENDING)]),
            tags(&[(SMOKE_TAG, &digests('a', 'c').fingerprint())]),
        ] {
            let err = check_promotion("dev", &d, &d, &t, None)
                .unwrap_err()
                .to_string();
            assert!(err.contains("smoke test of `dev` has not passed"), "{err}");
            assert!(err.contains("cargo xtask smoke --env dev"), "{err}");
        }
    }

    #[test]
    fn promotion_is_refused_when_the_artifact_is_not_what_dev_runs() {
        let (artifact, dev) = (digests('a', 'b'), digests('a', 'c'));
        let t = tags(&[(SMOKE_TAG, &dev.fingerprint())]);
        let err = check_promotion("dev", &artifact, &dev, &t, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not what `dev` runs") && err.contains("transformer"),
            "{err}"
        );
    }

    #[test]
    fn promotion_of_given_digests_needs_that_artifact_and_a_past_smoke_pass() {
        let (old, current) = (digests('1', '2'), digests('a', 'b'));
        // dev has moved on to `current`; `old` passed earlier.
        let t = tags(&[
            (SMOKE_TAG, &current.fingerprint()),
            (&history_tag(&old.fingerprint()), "2025-01-01T00:00:00Z"),
        ]);
        check_promotion("dev", &old, &current, &t, Some(&old)).unwrap();
        let err = check_promotion("dev", &current, &current, &t, Some(&old))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("does not have the digests given with --digests"),
            "{err}"
        );
        let never = digests('7', '8');
        let err = check_promotion("dev", &never, &current, &t, Some(&never))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("has not passed for stream-processor=7777"),
            "{err}"
        );
    }

    #[test]
    fn smoke_tags_record_the_pass_and_keep_a_bounded_history() {
        let d = digests('a', 'b');
        let fp = d.fingerprint();
        let existing = tags(&[
            ("pulumi:project", "eventpipe"),
            (SMOKE_TAG, SMOKE_PENDING),
            ("smoke-old1", "2025-01-01T00:00:00Z"),
            ("smoke-old3", "2025-03-01T00:00:00Z"),
            ("smoke-old2", "2025-02-01T00:00:00Z"),
        ]);
        let (set, remove) = smoke_tags(&existing, &fp, "2025-04-01T00:00:00Z", 3);
        assert_eq!(set[0], (SMOKE_TAG.to_owned(), fp.clone()));
        assert_eq!(
            set[1],
            (history_tag(&fp), "2025-04-01T00:00:00Z".to_owned())
        );
        assert!(history_tag(&fp).len() <= 40);
        assert_eq!(
            remove,
            vec!["smoke-old1".to_owned()],
            "the new pass and the two newest stay"
        );
        let (_, remove) = smoke_tags(&existing, &fp, "2025-04-01T00:00:00Z", 20);
        assert!(remove.is_empty());
    }

    #[test]
    fn preview_stacks_get_a_random_hmac_key_others_are_refused() {
        assert!(!hmac_key_needs_seed("dev", "k", true).unwrap());
        assert!(hmac_key_needs_seed("pr-7", "k", false).unwrap());
        for stack in ["dev", "prod"] {
            let err = hmac_key_needs_seed(stack, "eventpipe-dev/pii-hmac-key", false)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("has no value") && err.contains("Seed the PII HMAC key"),
                "{err}"
            );
        }
        let key = random_key().unwrap();
        assert_eq!(key.len(), 64);
        assert_ne!(key, random_key().unwrap());
    }

    #[test]
    fn the_smoke_record_names_stack_digests_and_commit() {
        let d = digests('a', 'b');
        let o = Outputs::parse("pr-7", &crate::pulumi::tests::outputs_json("pr-7", &d)).unwrap();
        let r = smoke_record("pr-7", &o, "2025-04-01T00:00:00Z");
        assert_eq!(r["stack"], "pr-7");
        assert_eq!(r["digests"]["transformer"], "b".repeat(64));
        assert_eq!(r["git_sha"], "abc123");
        assert_eq!(r["fingerprint"], d.fingerprint());
        assert_eq!(r["passed_at"], "2025-04-01T00:00:00Z");
    }

    #[test]
    fn refusals_happen_before_anything_runs() {
        // Bad names and destroy of a long-lived stack fail before any prerequisite is looked at.
        assert!(deploy("staging").is_err());
        assert!(preview("pr-x").is_err());
        let err = destroy("dev").unwrap_err().to_string();
        assert!(err.contains("only preview stacks"), "{err}");
        assert!(destroy("prod").is_err());
        let err = promote("dev", "dev", None).unwrap_err().to_string();
        assert!(err.contains("both `dev`"), "{err}");
        let err = promote("dev", "prod", Some("transformer=zz"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--digests"), "{err}");
        assert!(promote("local", "prod", None).is_err());
    }
}
