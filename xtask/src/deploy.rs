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
use std::path::Path;

use anyhow::{Context, Result, bail};
use pipeline_config::is_preview;
use pipeline_ops::Clients;
use serde_json::json;

use crate::artifact::{
    Digests, Manifest, manifest_path, require_same, verify_attestations, verify_manifest,
};
use crate::package::{git_sha, hex};
use crate::pulumi::{
    Facts, Outputs, Pulumi, args, aws_endpoint_label, preview_stack_name, stack_name,
};
use crate::util::{output, target_dir};

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

/// Checks the prerequisites and, for commands that run the program, installs its packages. Each
/// Pulumi command then runs against the backend of its stack's class (`PULUMI_BACKEND_URL` is
/// set per command, so no `pulumi login` is needed).
fn connect(manifest: Option<&Manifest>) -> Result<Pulumi> {
    let mut pulumi = Pulumi::new(Facts::current().check()?);
    if let Some(m) = manifest {
        pulumi = pulumi.with_program_inputs(&m.path, &git_sha());
        pulumi.install_packages()?;
    }
    Ok(pulumi)
}

/// `deploy --env <stack>`: the packaged artifact to one stack, then its smoke test.
pub fn deploy(env: &str) -> Result<()> {
    let stack = stack_name(env)?;
    let manifest = verify_manifest(&manifest_path())?;
    let pulumi = connect(Some(&manifest))?;
    deploy_stack(&pulumi, &stack, &manifest, None)
}

/// Deploys the manifest's artifact to the stack; with a plan (`preview --save-plan`), exactly the
/// operations of that plan, to a stack that must already exist.
fn deploy_stack(
    pulumi: &Pulumi,
    stack: &str,
    manifest: &Manifest,
    plan: Option<&Path>,
) -> Result<()> {
    eprintln!(
        "deploying {} (built from {}) to `{stack}`",
        manifest.digests, manifest.git_sha
    );
    match plan {
        Some(plan) => {
            if !plan.is_file() {
                bail!(
                    "no plan at {}: download the plan artifact of this run's `prod-plan` job (or run `cargo xtask promote … --save-plan <path>`)",
                    plan.display()
                );
            }
            pulumi.require_stack(stack, "apply a plan to")?;
        }
        None => pulumi.ensure_stack(stack)?,
    }
    // Until this deployment's smoke test passes, the stack vouches for nothing.
    pulumi.run(&args::tag_set(stack, SMOKE_TAG, SMOKE_PENDING))?;
    pulumi.run(&args::up(stack, plan))?;
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
/// The outputs of a deployed stack (`dev`, `prod`, `pr-<n>`).
pub fn outputs(env: &str) -> Result<Outputs> {
    let stack = stack_name(env)?;
    connect(None)?.outputs(&stack)
}

pub fn smoke(env: &str) -> Result<()> {
    let stack = stack_name(env)?;
    let pulumi = connect(None)?;
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

/// `preview --env <stack>`: what `deploy` would change, with policies, on stdout. With `drift`:
/// what changed in the cloud outside Pulumi since the last deployment (no artifact needed), an
/// error when anything did.
pub fn preview(env: &str, drift: bool) -> Result<()> {
    let stack = stack_name(env)?;
    if drift {
        let pulumi = connect(None)?;
        pulumi.install_packages()?;
        pulumi.require_stack(&stack, "check for drift")?;
        return pulumi.run(&args::drift(&stack)).with_context(|| {
            format!(
                "`{stack}` has drifted from its Pulumi state (or the check could not run): read the diff above; docs/troubleshooting.md, \"Drift\""
            )
        });
    }
    let manifest = verify_manifest(&manifest_path())?;
    let pulumi = connect(Some(&manifest))?;
    pulumi.require_stack(&stack, "compare with")?;
    pulumi.run(&args::preview(&stack, None))
}

/// What `promote` does after its checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromoteStep<'a> {
    /// Deploy, computing the changes on the spot.
    Deploy,
    /// Only preview the target and save the plan there (before the approval).
    SavePlan(&'a Path),
    /// Deploy exactly that plan (after the approval).
    ApplyPlan(&'a Path),
}

/// `promote --from dev --to prod [--digests …] [--attestation-repo <owner/name>]
/// [--save-plan <path> | --plan <path>]`: the artifact `from` runs and smoke-tested, to `to`.
pub fn promote(
    from: &str,
    to: &str,
    digests: Option<&str>,
    attestation_repo: Option<&str>,
    step: PromoteStep<'_>,
) -> Result<()> {
    let (from, to) = (stack_name(from)?, stack_name(to)?);
    if from == to {
        bail!(
            "`--from` and `--to` are both `{from}`: promotion moves an artifact between two stacks"
        );
    }
    let requested = digests.map(Digests::parse_flag).transpose()?;
    let manifest = verify_manifest(&manifest_path())?;
    match attestation_repo {
        Some(repo) => verify_attestations(&manifest, repo)?,
        None => eprintln!(
            "not verifying the build provenance of the artifact (no --attestation-repo): only its digests are checked"
        ),
    }
    let pulumi = connect(Some(&manifest))?;
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
    match step {
        PromoteStep::SavePlan(path) => {
            pulumi.require_stack(&to, "plan against")?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            pulumi.run(&args::preview(&to, Some(path)))?;
            eprintln!(
                "saved the plan of `{to}` to {}: `--plan` deploys exactly it",
                path.display()
            );
            Ok(())
        }
        PromoteStep::ApplyPlan(path) => deploy_stack(&pulumi, &to, &manifest, Some(path)),
        PromoteStep::Deploy => deploy_stack(&pulumi, &to, &manifest, None),
    }
}

/// `destroy --env pr-<n>`: the preview stack's resources, then the stack itself.
pub fn destroy(env: &str) -> Result<()> {
    let stack = preview_stack_name(env)?;
    let pulumi = connect(None)?;
    destroy_stack(&pulumi, &stack)
}

fn destroy_stack(pulumi: &Pulumi, stack: &str) -> Result<()> {
    if !pulumi.stack_exists(stack)? {
        println!("stack `{stack}` does not exist: nothing to destroy");
        return Ok(());
    }
    pulumi.run(&args::destroy(stack))?;
    pulumi.run(&args::stack_rm(stack))?;
    let _ = std::fs::remove_file(
        target_dir()
            .join("deploy")
            .join(format!("{stack}-smoke.json")),
    );
    println!("destroyed `{stack}`");
    Ok(())
}

/// The state of a pull request, as `gh pr view --json state` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrState {
    Open,
    Closed,
    Merged,
}

impl PrState {
    pub fn parse(text: &str) -> Result<PrState> {
        match text.trim() {
            "OPEN" => Ok(PrState::Open),
            "CLOSED" => Ok(PrState::Closed),
            "MERGED" => Ok(PrState::Merged),
            other => {
                bail!("unexpected pull request state `{other}` (expected OPEN, CLOSED or MERGED)")
            }
        }
    }
}

/// The pull request number of a preview stack.
pub fn pr_number(stack: &str) -> Result<u64> {
    stack
        .strip_prefix("pr-")
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("`{stack}` is not a preview stack (`pr-<number>`)"))
}

/// `gh pr view <number> --json state --jq .state` (the repository from `GH_REPO` or the checkout).
pub fn gh_pr_state_args(number: u64) -> Vec<String> {
    [
        "pr",
        "view",
        &number.to_string(),
        "--json",
        "state",
        "--jq",
        ".state",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Which preview stacks to destroy: those whose pull request is closed or merged. A stack whose
/// pull request cannot be looked up is kept and reported.
pub fn closed_previews(
    stacks: &[String],
    state: impl Fn(u64) -> Result<PrState>,
) -> (Vec<String>, Vec<String>) {
    let (mut closed, mut unknown) = (Vec::new(), Vec::new());
    for stack in stacks {
        match pr_number(stack).and_then(&state) {
            Ok(PrState::Open) => {}
            Ok(PrState::Closed | PrState::Merged) => closed.push(stack.clone()),
            Err(e) => unknown.push(format!("{stack}: {e:#}")),
        }
    }
    (closed, unknown)
}

/// `destroy --closed-previews`: every preview stack whose pull request is closed (the scheduled
/// sweep behind the destroy on close). Needs `gh` with a token that may read pull requests.
pub fn destroy_closed_previews() -> Result<()> {
    let pulumi = connect(None)?;
    let stacks = pulumi.preview_stacks()?;
    let state = |n: u64| -> Result<PrState> {
        PrState::parse(&output(
            std::process::Command::new("gh").args(gh_pr_state_args(n)),
        )?)
    };
    let (closed, unknown) = closed_previews(&stacks, state);
    println!(
        "{} preview stack(s), {} of closed pull requests: {}",
        stacks.len(),
        closed.len(),
        if closed.is_empty() {
            "none".to_owned()
        } else {
            closed.join(", ")
        }
    );
    let mut failed: Vec<String> = unknown;
    for stack in &closed {
        if let Err(e) = destroy_stack(&pulumi, stack) {
            failed.push(format!("{stack}: {e:#}"));
        }
    }
    if !failed.is_empty() {
        bail!(
            "some preview stacks were not destroyed (run again, or `cargo xtask destroy --env pr-<number>`):\n{}",
            failed.join("\n")
        );
    }
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
            err.contains("has not passed for auditor=ffff")
                && err.contains("stream-processor=7777"),
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
        assert!(preview("pr-x", false).is_err());
        assert!(preview("pr-x", true).is_err());
        let err = destroy("dev").unwrap_err().to_string();
        assert!(err.contains("only preview stacks"), "{err}");
        assert!(destroy("prod").is_err());
        let err = promote("dev", "dev", None, None, PromoteStep::Deploy)
            .unwrap_err()
            .to_string();
        assert!(err.contains("both `dev`"), "{err}");
        let err = promote(
            "dev",
            "prod",
            Some("transformer=zz"),
            None,
            PromoteStep::Deploy,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("--digests"), "{err}");
        assert!(promote("local", "prod", None, None, PromoteStep::Deploy).is_err());
    }

    #[test]
    fn destroy_reads_only_its_own_stack() {
        use crate::pulumi::tests::{calls, recording_pulumi};
        let (p, log) = recording_pulumi("destroy-missing", &["pr-8"], None);
        destroy_stack(&p, "pr-7").unwrap();
        assert_eq!(calls(&log), ["s3://state/preview stack select pr-7"]);
        std::fs::remove_dir_all(&p.dir).unwrap();
        let (p, log) = recording_pulumi("destroy-existing", &["pr-8"], None);
        destroy_stack(&p, "pr-8").unwrap();
        assert_eq!(
            calls(&log),
            [
                "s3://state/preview stack select pr-8",
                "s3://state/preview destroy --yes --stack pr-8",
                "s3://state/preview stack rm --yes pr-8",
            ]
        );
        std::fs::remove_dir_all(&p.dir).unwrap();
    }

    #[test]
    fn pull_request_states_and_numbers_parse() {
        assert_eq!(PrState::parse("OPEN\n").unwrap(), PrState::Open);
        assert_eq!(PrState::parse("CLOSED").unwrap(), PrState::Closed);
        assert_eq!(PrState::parse("MERGED").unwrap(), PrState::Merged);
        let err = PrState::parse("").unwrap_err().to_string();
        assert!(err.contains("unexpected pull request state"), "{err}");
        assert_eq!(pr_number("pr-42").unwrap(), 42);
        for bad in ["dev", "pr-", "pr-x", "42"] {
            assert!(pr_number(bad).is_err(), "{bad}");
        }
        assert_eq!(
            gh_pr_state_args(42).join(" "),
            "pr view 42 --json state --jq .state"
        );
    }

    #[test]
    fn only_previews_of_closed_pull_requests_are_swept() {
        let stacks: Vec<String> = ["pr-1", "pr-2", "pr-3", "pr-4"].map(str::to_owned).to_vec();
        let (closed, unknown) = closed_previews(&stacks, |n| match n {
            1 => Ok(PrState::Open),
            2 => Ok(PrState::Closed),
            3 => Ok(PrState::Merged),
            _ => anyhow::bail!("HTTP 502"),
        });
        assert_eq!(closed, vec!["pr-2", "pr-3"]);
        // A pull request that cannot be looked up keeps its stack, and is reported.
        assert_eq!(unknown.len(), 1);
        assert!(unknown[0].starts_with("pr-4: HTTP 502"), "{unknown:?}");
        let (closed, unknown) = closed_previews(&[], |_| Ok(PrState::Closed));
        assert!(closed.is_empty() && unknown.is_empty());
    }
}
