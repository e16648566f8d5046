//! The Pulumi CLI as the deployment commands use it. Command lines, prerequisite checks and the
//! parsing of the CLI's JSON are pure functions (tested without the CLI); `Pulumi` only runs them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use pipeline_config::{Environment, is_preview};
use pipeline_ops::Stack;
use serde_json::Value;

use crate::artifact::Digests;
use crate::util::{output, root, run};

/// Checks an `--env` value names a Pulumi stack: `dev`, `prod` or `pr-<number>`.
pub fn stack_name(env: &str) -> Result<String> {
    Environment::file_name(env)?;
    if env == "local" {
        bail!(
            "`local` is not a Pulumi stack: use `cargo xtask local up` (or `--env dev`, `prod`, `pr-<number>`)"
        );
    }
    Ok(env.to_owned())
}

/// Refuses anything but a preview stack (the only kind a command may destroy).
pub fn preview_stack_name(env: &str) -> Result<String> {
    let stack = stack_name(env)?;
    if !is_preview(&stack) {
        bail!(
            "only preview stacks (`pr-<number>`) are destroyed by xtask; `{stack}` holds real data: destroy it by hand with `pulumi destroy` after reading docs/deployment.md"
        );
    }
    Ok(stack)
}

/// The class of a stack, which picks its backend prefix: `dev`, `prod`, or `preview` for every
/// `pr-<number>`. Each class keeps its state under its own prefix of the state bucket, so a role
/// scoped to one class never needs to read another's (docs/deployment.md, "State").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Dev,
    Prod,
    Preview,
}

impl Class {
    pub const ALL: [Class; 3] = [Class::Dev, Class::Prod, Class::Preview];

    pub fn of(stack: &str) -> Class {
        match stack {
            "dev" => Class::Dev,
            "prod" => Class::Prod,
            _ => Class::Preview,
        }
    }

    /// The backend prefix: `s3://<state bucket>/<prefix>`.
    pub fn prefix(self) -> &'static str {
        match self {
            Class::Dev => "dev",
            Class::Prod => "prod",
            Class::Preview => "preview",
        }
    }
}

/// Where the Pulumi state lives, from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// `PULUMI_STATE_URL`: the state bucket, `s3://<bucket>?region=eu-west-1&awssdk=v2`.
    pub state_url: String,
    /// `PULUMI_SECRETS_PROVIDER`; needed only to create a stack. `{class}` in it stands for the
    /// stack's class, so each class can have its own key (`awskms://alias/eventpipe-pulumi-{class}?…`).
    pub secrets_provider: Option<String>,
}

impl Backend {
    /// The secrets provider a new stack of the class is created with.
    pub fn secrets_provider(&self, class: Class) -> Option<String> {
        self.secrets_provider
            .as_ref()
            .map(|p| p.replace("{class}", class.prefix()))
    }

    /// The `PULUMI_BACKEND_URL` of a class: the state URL with `/<class>` added to its path and
    /// its query kept, e.g. `s3://bucket/dev?region=eu-west-1&awssdk=v2`.
    pub fn url(&self, class: Class) -> String {
        let (base, query) = match self.state_url.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (self.state_url.as_str(), None),
        };
        let base = base.trim_end_matches('/');
        match query {
            Some(q) => format!("{base}/{}?{q}", class.prefix()),
            None => format!("{base}/{}", class.prefix()),
        }
    }
}

/// What the prerequisite check looks at, gathered by `Facts::current`.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub vars: BTreeMap<String, String>,
    pub pulumi_on_path: bool,
    /// `~/.aws/credentials` or `~/.aws/config` exists (a default profile).
    pub shared_aws_config: bool,
}

const AWS_CREDENTIAL_VARS: [&str; 5] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
];

impl Facts {
    pub fn current() -> Facts {
        let vars = AWS_CREDENTIAL_VARS
            .iter()
            .chain(&[
                "PULUMI_STATE_URL",
                "PULUMI_BACKEND_URL",
                "PULUMI_SECRETS_PROVIDER",
            ])
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
            .collect();
        let home = std::env::var_os("HOME").map(PathBuf::from);
        Facts {
            vars,
            pulumi_on_path: on_path("pulumi"),
            shared_aws_config: home.is_some_and(|h| {
                h.join(".aws/credentials").is_file() || h.join(".aws/config").is_file()
            }),
        }
    }

    fn var(&self, k: &str) -> Option<&str> {
        self.vars.get(k).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// Every missing prerequisite at once, each with what to do about it.
    pub fn check(&self) -> Result<Backend> {
        let mut problems = Vec::new();
        if !self.pulumi_on_path {
            problems.push(
                "the Pulumi CLI is not installed: see docs/deployment.md (`pulumi` must be on PATH; CI installs it with pulumi/actions)".to_owned(),
            );
        }
        if !self.shared_aws_config && AWS_CREDENTIAL_VARS.iter().all(|k| self.var(k).is_none()) {
            problems.push(
                "no AWS credentials: set AWS_PROFILE (after `aws sso login`), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_WEB_IDENTITY_TOKEN_FILE (CI: aws-actions/configure-aws-credentials with the environment's role)".to_owned(),
            );
        }
        let url = self.var("PULUMI_STATE_URL");
        match url {
            None if self.var("PULUMI_BACKEND_URL").is_some() => problems.push(
                "PULUMI_STATE_URL is not set: xtask picks each stack's backend itself (`<state url>/dev`, `/prod`, `/preview`), so set PULUMI_STATE_URL to the state bucket, `s3://eventpipe-pulumi-state-<account id>?region=eu-west-1&awssdk=v2`, instead of PULUMI_BACKEND_URL (docs/deployment.md, \"State\")".to_owned(),
            ),
            None => problems.push(
                "PULUMI_STATE_URL is not set: set it to the state bucket, `s3://eventpipe-pulumi-state-<account id>?region=eu-west-1&awssdk=v2` (docs/deployment.md, \"State\")".to_owned(),
            ),
            Some(url) => {
                let path = url.split_once('?').map_or(url, |(p, _)| p);
                if let Some(class) = Class::ALL
                    .iter()
                    .find(|c| path.trim_end_matches('/').ends_with(&format!("/{}", c.prefix())))
                {
                    problems.push(format!(
                        "PULUMI_STATE_URL `{url}` already ends in the class prefix `/{}`: give the bucket only; xtask adds `/dev`, `/prod` or `/preview` per stack",
                        class.prefix()
                    ));
                }
            }
        }
        if !problems.is_empty() {
            bail!("{}", problems.join("\n"));
        }
        Ok(Backend {
            state_url: url.unwrap_or_default().to_owned(),
            secrets_provider: self.var("PULUMI_SECRETS_PROVIDER").map(str::to_owned),
        })
    }
}

/// Whether an executable of that name is on PATH.
pub fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// One Pulumi command line and the class of stack whose backend it runs against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub class: Class,
    pub args: Vec<String>,
}

impl Invocation {
    /// The arguments as one line (tests and messages).
    pub fn line(&self) -> String {
        self.args.join(" ")
    }
}

/// Command lines, run in `pulumi/` (so the policy pack is `policy`). None of them lists the
/// stacks of a backend except `preview_stacks`, whose backend holds only preview stacks: on the
/// S3 backend, `stack ls` reads every stack's checkpoint.
pub mod args {
    use std::path::Path;

    use super::{Class, Invocation};

    fn on(stack: &str, parts: &[&str]) -> Invocation {
        Invocation {
            class: Class::of(stack),
            args: parts.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn with_path(mut i: Invocation, flag: &str, path: Option<&Path>) -> Invocation {
        if let Some(p) = path {
            i.args.push(flag.to_owned());
            i.args.push(p.display().to_string());
        }
        i
    }

    /// Selects an existing stack; fails with "no stack named …" when there is none. Reads that
    /// stack only.
    pub fn select(stack: &str) -> Invocation {
        on(stack, &["stack", "select", stack])
    }
    /// Selects the stack, creating it with the secrets provider when it does not exist.
    pub fn select_or_create(stack: &str, secrets_provider: &str) -> Invocation {
        on(
            stack,
            &[
                "stack",
                "select",
                "--create",
                stack,
                "--secrets-provider",
                secrets_provider,
            ],
        )
    }
    /// Every stack of the preview backend (the only backend whose stacks one role may all read).
    pub fn preview_stacks() -> Invocation {
        Invocation {
            class: Class::Preview,
            args: ["stack", "ls", "--json"].map(str::to_owned).to_vec(),
        }
    }
    /// `pulumi up`; with a plan, exactly the operations of that plan (`preview --save-plan`).
    pub fn up(stack: &str, plan: Option<&Path>) -> Invocation {
        let up = on(
            stack,
            &[
                "up",
                "--yes",
                "--skip-preview",
                "--policy-pack",
                "policy",
                "--stack",
                stack,
            ],
        );
        with_path(up, "--plan", plan)
    }
    /// `pulumi preview`; with a path, the proposed operations are saved there as a plan.
    pub fn preview(stack: &str, save_plan: Option<&Path>) -> Invocation {
        let preview = on(
            stack,
            &[
                "preview",
                "--diff",
                "--policy-pack",
                "policy",
                "--stack",
                stack,
            ],
        );
        with_path(preview, "--save-plan", save_plan)
    }
    /// What changed outside Pulumi: the state compared with the cloud, without writing the state
    /// or running the program; any difference is an error.
    pub fn drift(stack: &str) -> Invocation {
        on(
            stack,
            &[
                "refresh",
                "--preview-only",
                "--expect-no-changes",
                "--diff",
                "--stack",
                stack,
            ],
        )
    }
    pub fn outputs(stack: &str) -> Invocation {
        on(stack, &["stack", "output", "--json", "--stack", stack])
    }
    pub fn tags(stack: &str) -> Invocation {
        on(stack, &["stack", "tag", "ls", "--json", "--stack", stack])
    }
    pub fn tag_set(stack: &str, name: &str, value: &str) -> Invocation {
        on(
            stack,
            &["stack", "tag", "set", name, value, "--stack", stack],
        )
    }
    pub fn tag_rm(stack: &str, name: &str) -> Invocation {
        on(stack, &["stack", "tag", "rm", name, "--stack", stack])
    }
    pub fn destroy(stack: &str) -> Invocation {
        on(stack, &["destroy", "--yes", "--stack", stack])
    }
    pub fn stack_rm(stack: &str) -> Invocation {
        on(stack, &["stack", "rm", "--yes", stack])
    }
}

/// Whether `pulumi stack select <stack>` failed because the stack does not exist.
pub fn stack_missing(stderr: &str) -> bool {
    stderr.contains("no stack named")
}

/// The stack names `pulumi stack ls --json` prints, unqualified (DIY backends may print
/// `organization/<project>/<stack>`).
pub fn listed_stacks(ls_json: &str) -> Result<Vec<String>> {
    let value: Value =
        serde_json::from_str(ls_json).context("`pulumi stack ls --json` did not print JSON")?;
    let stacks = value
        .as_array()
        .context("`pulumi stack ls --json` did not print a list")?;
    Ok(stacks
        .iter()
        .filter_map(|s| s["name"].as_str())
        .map(|name| name.rsplit('/').next().unwrap_or(name).to_owned())
        .collect())
}

/// `pulumi stack tag ls --json`: tag name → value.
pub fn parse_tags(json: &str) -> Result<BTreeMap<String, String>> {
    let value: Value =
        serde_json::from_str(json).context("`pulumi stack tag ls --json` did not print JSON")?;
    let Some(object) = value.as_object() else {
        bail!("`pulumi stack tag ls --json` did not print an object");
    };
    Ok(object
        .iter()
        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
        .collect())
}

/// The stack outputs the commands use (see `PipelineOutputs` in pulumi/src/pipeline.ts).
#[derive(Debug, Clone, PartialEq)]
pub struct Outputs {
    pub environment: String,
    pub region: String,
    pub account_id: String,
    pub artifact_git_sha: String,
    pub digests: Digests,
    pub hmac_secret_arn: String,
    pub stack: Stack,
}

impl Outputs {
    /// Parses `pulumi stack output --json`; `stack` only labels errors.
    pub fn parse(stack: &str, json: &str) -> Result<Outputs> {
        let v: Value = serde_json::from_str(json).with_context(|| {
            format!("`pulumi stack output --json --stack {stack}` did not print JSON")
        })?;
        let s = |key: &str| -> Result<String> {
            v[key].as_str().map(str::to_owned).with_context(|| {
                format!("stack `{stack}` has no output `{key}`: deploy it with `cargo xtask deploy --env {stack}` first")
            })
        };
        let digests = Digests::from_json(&v["artifactDigests"]).with_context(|| {
            format!("stack `{stack}`: output `artifactDigests` is missing or malformed: deploy it with `cargo xtask deploy --env {stack}` first")
        })?;
        let region = s("region")?;
        let stack_value = Stack {
            environment: s("environment")?,
            endpoint: aws_endpoint_label(&region),
            stream: s("streamName")?,
            stream_arn: s("streamArn")?,
            raw_bucket: s("rawBucketName")?,
            processed_bucket: s("processedBucketName")?,
            metadata_table: s("metadataTableName")?,
            stream_processor: s("streamProcessorFunctionName")?,
            stream_processor_arn: s("streamProcessorFunctionArn")?,
            transformer: s("transformerFunctionName")?,
            transformer_arn: s("transformerFunctionArn")?,
            auditor: s("auditorFunctionName")?,
            auditor_arn: s("auditorFunctionArn")?,
            audit_schedule_rule: s("auditorScheduleRuleName")?,
            stream_dlq_url: s("streamDlqUrl")?,
            stream_dlq_arn: s("streamDlqArn")?,
            transform_dlq_url: s("transformDlqUrl")?,
            transform_dlq_arn: s("transformDlqArn")?,
            alarm_topic_arn: s("alarmTopicArn")?,
            hmac_secret: s("hmacSecretName")?,
        };
        Ok(Outputs {
            environment: stack_value.environment.clone(),
            account_id: s("accountId")?,
            artifact_git_sha: s("artifactGitSha")?,
            hmac_secret_arn: s("hmacSecretArn")?,
            region,
            digests,
            stack: stack_value,
        })
    }
}

/// The `endpoint` of a deployed stack: a label, as the SDK uses the region's public endpoints.
pub fn aws_endpoint_label(region: &str) -> String {
    format!("aws:{region}")
}

/// Variables every Pulumi command gets. With the fallback, a stack whose `Pulumi.<stack>.yaml` is
/// missing (every fresh runner: the files are not committed) uses the secrets provider recorded
/// in its state, KMS key and encrypted data key included, instead of asking for a passphrase.
pub const PULUMI_ENV: [(&str, &str); 2] = [
    ("PULUMI_SKIP_UPDATE_CHECK", "true"),
    ("PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER", "true"),
];

/// Runs the CLI in `pulumi/` with the variables the program reads, each command against the
/// backend of its stack's class.
#[derive(Debug, Clone)]
pub struct Pulumi {
    /// The CLI: `pulumi` on PATH (tests put a recording stand-in here).
    pub program: PathBuf,
    pub dir: PathBuf,
    pub envs: Vec<(String, String)>,
    pub backend: Backend,
}

impl Pulumi {
    pub fn new(backend: Backend) -> Pulumi {
        Pulumi {
            program: PathBuf::from("pulumi"),
            dir: root().join("pulumi"),
            envs: PULUMI_ENV
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            backend,
        }
    }

    /// The program's inputs: the manifest (absolute) and the commit of the program.
    pub fn with_program_inputs(mut self, manifest: &Path, git_sha: &str) -> Pulumi {
        self.envs.push((
            "PIPELINE_ARTIFACT_MANIFEST".into(),
            manifest.display().to_string(),
        ));
        self.envs.push(("GIT_SHA".into(), git_sha.to_owned()));
        self
    }

    pub fn command(&self, invocation: &Invocation) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&invocation.args).current_dir(&self.dir);
        c.envs(self.envs.iter().map(|(k, v)| (k, v)));
        c.env("PULUMI_BACKEND_URL", self.backend.url(invocation.class));
        c
    }

    /// Runs in the foreground: the CLI's own output goes to our stdout and stderr.
    pub fn run(&self, invocation: &Invocation) -> Result<()> {
        run(&mut self.command(invocation))
    }

    pub fn output(&self, invocation: &Invocation) -> Result<String> {
        output(&mut self.command(invocation))
    }

    /// `npm ci` when `pulumi/node_modules` is missing (the program's and the policy pack's packages).
    pub fn install_packages(&self) -> Result<()> {
        if self.dir.join("node_modules").is_dir() {
            return Ok(());
        }
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&self.dir))
        .context("installing the Pulumi program's packages needs Node 20 and npm")
    }

    /// Whether the stack exists, reading that stack only (never `stack ls`).
    pub fn stack_exists(&self, stack: &str) -> Result<bool> {
        let invocation = args::select(stack);
        let mut cmd = self.command(&invocation);
        let out = cmd
            .output()
            .with_context(|| format!("starting `pulumi {}`", invocation.line()))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            Ok(true)
        } else if stack_missing(&stderr) {
            Ok(false)
        } else {
            bail!(
                "`pulumi {}` failed with {}: {}",
                invocation.line(),
                out.status,
                stderr.trim()
            )
        }
    }

    /// Selects the stack, creating a missing one with the KMS secrets provider.
    pub fn ensure_stack(&self, stack: &str) -> Result<()> {
        match self.backend.secrets_provider(Class::of(stack)) {
            Some(provider) => self.run(&args::select_or_create(stack, &provider)),
            None if self.stack_exists(stack)? => Ok(()),
            None => bail!(
                "stack `{stack}` does not exist and PULUMI_SECRETS_PROVIDER is not set: set it to `awskms://alias/eventpipe-pulumi-{{class}}?region=eu-west-1` (docs/deployment.md, \"State\")"
            ),
        }
    }

    /// Refuses unless the stack exists (for commands that compare with it or must not create it).
    pub fn require_stack(&self, stack: &str, what: &str) -> Result<()> {
        if !self.stack_exists(stack)? {
            bail!(
                "stack `{stack}` does not exist yet, so there is nothing to {what}: deploy it with `cargo xtask deploy --env {stack}` first (prod: docs/deployment.md, \"First deployment\")"
            );
        }
        Ok(())
    }

    pub fn outputs(&self, stack: &str) -> Result<Outputs> {
        Outputs::parse(stack, &self.output(&args::outputs(stack))?)
    }

    pub fn tags(&self, stack: &str) -> Result<BTreeMap<String, String>> {
        parse_tags(&self.output(&args::tags(stack))?)
    }

    /// The `pr-<number>` stacks of the preview backend.
    pub fn preview_stacks(&self) -> Result<Vec<String>> {
        Ok(listed_stacks(&self.output(&args::preview_stacks())?)?
            .into_iter()
            .filter(|s| is_preview(s))
            .collect())
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// The outputs of a deployed stack, as `pulumi stack output --json` prints them.
    pub fn outputs_json(stack: &str, digests: &Digests) -> String {
        let p = format!("eventpipe-{stack}");
        serde_json::json!({
            "environment": stack, "region": "eu-west-1", "accountId": "123456789012",
            "gitSha": "def456", "artifactGitSha": "abc123",
            "artifactDigests": digests.0,
            "streamName": format!("{p}-events"), "streamArn": format!("arn:aws:kinesis:eu-west-1:123456789012:stream/{p}-events"),
            "rawBucketName": format!("{p}-raw-123456789012"), "processedBucketName": format!("{p}-processed-123456789012"),
            "metadataTableName": format!("{p}-metadata"),
            "streamProcessorFunctionName": format!("{p}-stream-processor"), "streamProcessorFunctionArn": "arn:sp",
            "transformerFunctionName": format!("{p}-transformer"), "transformerFunctionArn": "arn:tr",
            "auditorFunctionName": format!("{p}-auditor"), "auditorFunctionArn": "arn:au",
            "auditorScheduleRuleName": format!("{p}-auditor-schedule"),
            "streamDlqUrl": "https://sqs/stream-dlq", "streamDlqArn": "arn:sdlq",
            "transformDlqUrl": "https://sqs/transform-dlq", "transformDlqArn": "arn:tdlq",
            "alarmTopicArn": "arn:topic", "hmacSecretName": format!("{p}/pii-hmac-key"), "hmacSecretArn": "arn:secret",
            "dashboardName": format!("{p}"), "vpcId": null
        })
        .to_string()
    }

    fn facts(vars: &[(&str, &str)]) -> Facts {
        Facts {
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            pulumi_on_path: true,
            shared_aws_config: false,
        }
    }

    #[test]
    fn env_names_are_checked() {
        for ok in ["dev", "prod", "pr-7"] {
            assert_eq!(stack_name(ok).unwrap(), ok);
        }
        for bad in ["staging", "pr-", "pr-x", "../dev", "", "DEV"] {
            let err = stack_name(bad).unwrap_err().to_string();
            assert!(err.contains("`pr-<number>`"), "{bad}: {err}");
        }
        let err = stack_name("local").unwrap_err().to_string();
        assert!(err.contains("cargo xtask local up"), "{err}");
    }

    #[test]
    fn only_preview_stacks_may_be_destroyed() {
        assert_eq!(preview_stack_name("pr-7").unwrap(), "pr-7");
        for refused in ["dev", "prod", "local", "staging"] {
            assert!(preview_stack_name(refused).is_err(), "{refused}");
        }
        let err = preview_stack_name("dev").unwrap_err().to_string();
        assert!(err.contains("only preview stacks"), "{err}");
    }

    const STATE: &str = "s3://eventpipe-pulumi-state-123456789012?region=eu-west-1&awssdk=v2";

    fn backend(secrets_provider: Option<&str>) -> Backend {
        Backend {
            state_url: STATE.into(),
            secrets_provider: secrets_provider.map(str::to_owned),
        }
    }

    #[test]
    fn prerequisites_are_all_reported_with_what_to_do() {
        let mut f = facts(&[]);
        f.pulumi_on_path = false;
        let err = f.check().unwrap_err().to_string();
        assert!(
            err.contains("the Pulumi CLI is not installed: see docs/deployment.md"),
            "{err}"
        );
        assert!(err.contains("no AWS credentials: set AWS_PROFILE"), "{err}");
        assert!(err.contains("PULUMI_STATE_URL is not set"), "{err}");
        // Empty values count as unset.
        let err = facts(&[("AWS_PROFILE", ""), ("PULUMI_STATE_URL", "s3://b")])
            .check()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("no AWS credentials"), "{err}");
        for creds in AWS_CREDENTIAL_VARS {
            let backend = facts(&[(creds, "x"), ("PULUMI_STATE_URL", "s3://b")])
                .check()
                .unwrap();
            assert_eq!(
                backend,
                Backend {
                    state_url: "s3://b".into(),
                    secrets_provider: None
                }
            );
        }
        let mut f = facts(&[
            ("PULUMI_STATE_URL", "s3://b"),
            ("PULUMI_SECRETS_PROVIDER", "awskms://k"),
        ]);
        f.shared_aws_config = true;
        assert_eq!(
            f.check().unwrap().secrets_provider.as_deref(),
            Some("awskms://k")
        );
    }

    #[test]
    fn the_state_url_names_the_bucket_not_a_class() {
        // A one-backend setup is told what changed.
        let err = facts(&[("AWS_PROFILE", "p"), ("PULUMI_BACKEND_URL", "s3://b")])
            .check()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("set PULUMI_STATE_URL to the state bucket")
                && err.contains("instead of PULUMI_BACKEND_URL"),
            "{err}"
        );
        for class_url in [
            "s3://b/dev",
            "s3://b/prod/?region=eu-west-1",
            "s3://b/preview?region=eu-west-1&awssdk=v2",
        ] {
            let err = facts(&[("AWS_PROFILE", "p"), ("PULUMI_STATE_URL", class_url)])
                .check()
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("already ends in the class prefix"),
                "{class_url}: {err}"
            );
        }
        // A bucket whose own name ends like a class is fine.
        assert!(
            facts(&[("AWS_PROFILE", "p"), ("PULUMI_STATE_URL", "s3://state-dev")])
                .check()
                .is_ok()
        );
    }

    #[test]
    fn each_class_of_stack_has_its_own_backend_prefix() {
        let b = backend(None);
        assert_eq!(
            b.url(Class::of("dev")),
            "s3://eventpipe-pulumi-state-123456789012/dev?region=eu-west-1&awssdk=v2"
        );
        assert_eq!(
            b.url(Class::of("prod")),
            "s3://eventpipe-pulumi-state-123456789012/prod?region=eu-west-1&awssdk=v2"
        );
        for pr in ["pr-1", "pr-7", "pr-1234"] {
            assert_eq!(
                b.url(Class::of(pr)),
                "s3://eventpipe-pulumi-state-123456789012/preview?region=eu-west-1&awssdk=v2"
            );
        }
        let plain = |url: &str| Backend {
            state_url: url.into(),
            secrets_provider: None,
        };
        assert_eq!(plain("s3://b").url(Class::Prod), "s3://b/prod");
        assert_eq!(plain("s3://b/").url(Class::Dev), "s3://b/dev");
        assert_eq!(
            plain("s3://b/org?x=1").url(Class::Preview),
            "s3://b/org/preview?x=1"
        );
        assert_eq!(
            plain("file:///srv/state").url(Class::Dev),
            "file:///srv/state/dev"
        );
    }

    #[test]
    fn every_command_runs_against_its_stacks_backend_with_the_state_secrets_fallback() {
        let p = Pulumi::new(backend(None));
        for (stack, prefix) in [("dev", "/dev?"), ("prod", "/prod?"), ("pr-7", "/preview?")] {
            for invocation in every_invocation(stack) {
                let cmd = p.command(&invocation);
                let envs = envs(&cmd);
                let url = envs["PULUMI_BACKEND_URL"].as_deref().unwrap();
                assert!(
                    url.contains(prefix),
                    "{stack}: {} → {url}",
                    invocation.line()
                );
                assert_eq!(
                    envs["PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER"].as_deref(),
                    Some("true"),
                    "{}",
                    invocation.line()
                );
                assert_eq!(envs["PULUMI_SKIP_UPDATE_CHECK"].as_deref(), Some("true"));
            }
        }
        let ls = p.command(&args::preview_stacks());
        assert!(
            envs(&ls)["PULUMI_BACKEND_URL"]
                .as_deref()
                .unwrap()
                .contains("/preview?")
        );
    }

    /// Every command line a stack gets.
    fn every_invocation(stack: &str) -> Vec<Invocation> {
        let plan = Path::new("/plans/prod.json");
        vec![
            args::select(stack),
            args::select_or_create(stack, "awskms://alias/eventpipe-pulumi?region=eu-west-1"),
            args::up(stack, None),
            args::up(stack, Some(plan)),
            args::preview(stack, None),
            args::preview(stack, Some(plan)),
            args::drift(stack),
            args::outputs(stack),
            args::tags(stack),
            args::tag_set(stack, "smoke-passed", "pending"),
            args::tag_rm(stack, "smoke-old"),
            args::destroy(stack),
            args::stack_rm(stack),
        ]
    }

    fn envs(cmd: &Command) -> BTreeMap<String, Option<String>> {
        cmd.get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect()
    }

    #[test]
    fn no_command_lists_the_stacks_of_a_dev_or_prod_backend() {
        for stack in ["dev", "prod", "pr-7"] {
            for invocation in every_invocation(stack) {
                assert!(
                    !invocation.line().starts_with("stack ls"),
                    "{}",
                    invocation.line()
                );
            }
        }
        let ls = args::preview_stacks();
        assert_eq!(ls.line(), "stack ls --json");
        assert_eq!(ls.class, Class::Preview);
    }

    #[test]
    fn command_lines_per_stack() {
        let plan = Path::new("/plans/prod.json");
        for stack in ["dev", "prod", "pr-7"] {
            assert_eq!(
                args::up(stack, None).line(),
                format!("up --yes --skip-preview --policy-pack policy --stack {stack}")
            );
            assert_eq!(
                args::preview(stack, None).line(),
                format!("preview --diff --policy-pack policy --stack {stack}")
            );
            assert_eq!(
                args::drift(stack).line(),
                format!("refresh --preview-only --expect-no-changes --diff --stack {stack}")
            );
            assert_eq!(
                args::outputs(stack).line(),
                format!("stack output --json --stack {stack}")
            );
            assert_eq!(args::select(stack).line(), format!("stack select {stack}"));
            assert_eq!(
                args::select_or_create(stack, "awskms://alias/eventpipe-pulumi?region=eu-west-1")
                    .line(),
                format!(
                    "stack select --create {stack} --secrets-provider awskms://alias/eventpipe-pulumi?region=eu-west-1"
                )
            );
            assert_eq!(
                args::tag_set(stack, "smoke-passed", "pending").line(),
                format!("stack tag set smoke-passed pending --stack {stack}")
            );
        }
        assert_eq!(
            args::preview("prod", Some(plan)).line(),
            "preview --diff --policy-pack policy --stack prod --save-plan /plans/prod.json"
        );
        assert_eq!(
            args::up("prod", Some(plan)).line(),
            "up --yes --skip-preview --policy-pack policy --stack prod --plan /plans/prod.json"
        );
        assert_eq!(args::destroy("pr-7").line(), "destroy --yes --stack pr-7");
        assert_eq!(args::stack_rm("pr-7").line(), "stack rm --yes pr-7");
    }

    #[test]
    fn the_program_gets_its_inputs() {
        let p =
            Pulumi::new(backend(None)).with_program_inputs(Path::new("/abs/manifest.json"), "abc");
        let cmd = p.command(&args::up("dev", None));
        assert!(cmd.get_current_dir().is_some_and(|d| d.ends_with("pulumi")));
        let envs = envs(&cmd);
        assert_eq!(
            envs["PIPELINE_ARTIFACT_MANIFEST"].as_deref(),
            Some("/abs/manifest.json")
        );
        assert_eq!(envs["GIT_SHA"].as_deref(), Some("abc"));
    }

    /// A stand-in for the CLI that records each call (`<backend url> <args>`) and knows the
    /// stacks in `existing`; returns it and the record's path.
    pub fn recording_pulumi(
        name: &str,
        existing: &[&str],
        secrets_provider: Option<&str>,
    ) -> (Pulumi, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let dir = crate::artifact::tests::temp_dir(name);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("calls.txt");
        let known = existing.join(" ");
        let script = format!(
            r#"#!/usr/bin/env bash
echo "$PULUMI_BACKEND_URL $*" >> '{log}'
if [[ "$1 $2" == "stack select" && "$3" != "--create" && " {known} " != *" $3 "* ]]; then
    echo "error: no stack named '$3' found" >&2
    exit 255
fi
if [[ "$1 $2" == "stack ls" ]]; then echo '[{{"name":"organization/eventpipe/pr-3"}},{{"name":"pr-4"}}]'; fi
"#,
            log = log.display()
        );
        let program = dir.join("pulumi");
        std::fs::write(&program, script).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut p = Pulumi::new(backend(secrets_provider));
        p.program = program;
        p.dir = dir;
        (p, log)
    }

    pub fn calls(log: &Path) -> Vec<String> {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                l.replace("?region=eu-west-1&awssdk=v2", "")
                    .replace("s3://eventpipe-pulumi-state-123456789012", "s3://state")
            })
            .collect()
    }

    #[test]
    fn stacks_are_looked_up_and_created_one_at_a_time() {
        let (p, log) = recording_pulumi("pulumi-exists", &["dev"], None);
        assert!(p.stack_exists("dev").unwrap());
        assert!(!p.stack_exists("pr-9").unwrap());
        let err = p.ensure_stack("prod").unwrap_err().to_string();
        assert!(err.contains("PULUMI_SECRETS_PROVIDER is not set"), "{err}");
        p.require_stack("dev", "compare with").unwrap();
        let err = p
            .require_stack("pr-9", "compare with")
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist yet"), "{err}");
        assert_eq!(
            calls(&log),
            [
                "s3://state/dev stack select dev",
                "s3://state/preview stack select pr-9",
                "s3://state/prod stack select prod",
                "s3://state/dev stack select dev",
                "s3://state/preview stack select pr-9",
            ]
        );
        std::fs::remove_dir_all(&p.dir).unwrap();
        let (p, log) = recording_pulumi(
            "pulumi-create",
            &[],
            Some("awskms://alias/eventpipe-pulumi-{class}?region=eu-west-1"),
        );
        p.ensure_stack("prod").unwrap();
        p.ensure_stack("pr-5").unwrap();
        assert_eq!(
            calls(&log),
            [
                "s3://state/prod stack select --create prod --secrets-provider awskms://alias/eventpipe-pulumi-prod?region=eu-west-1",
                "s3://state/preview stack select --create pr-5 --secrets-provider awskms://alias/eventpipe-pulumi-preview?region=eu-west-1",
            ]
        );
        std::fs::remove_dir_all(&p.dir).unwrap();
        let (p, log) = recording_pulumi("pulumi-previews", &[], None);
        assert_eq!(p.preview_stacks().unwrap(), ["pr-3", "pr-4"]);
        assert_eq!(calls(&log), ["s3://state/preview stack ls --json"]);
        std::fs::remove_dir_all(&p.dir).unwrap();
    }

    #[test]
    fn a_missing_stack_is_told_from_other_failures() {
        assert!(stack_missing("error: no stack named 'pr-7' found"));
        assert!(!stack_missing(
            "error: failed to load checkpoint: blob (key \".pulumi/stacks/eventpipe/prod.json\") (code=PermissionDenied)"
        ));
        assert!(!stack_missing(""));
    }

    #[test]
    fn stack_listing_gives_plain_names() {
        let ls = r#"[{"name":"pr-3","current":false},{"name":"organization/eventpipe/pr-7"}]"#;
        assert_eq!(listed_stacks(ls).unwrap(), vec!["pr-3", "pr-7"]);
        assert!(listed_stacks("[]").unwrap().is_empty());
        assert!(listed_stacks("not json").is_err());
    }

    #[test]
    fn outputs_map_to_a_stack() {
        let d = crate::artifact::tests::digests('a', 'b');
        let o = Outputs::parse("pr-7", &outputs_json("pr-7", &d)).unwrap();
        assert_eq!(o.digests, d);
        assert_eq!(o.region, "eu-west-1");
        assert_eq!(o.stack.stream, "eventpipe-pr-7-events");
        assert_eq!(
            o.stack.processed_bucket,
            "eventpipe-pr-7-processed-123456789012"
        );
        assert_eq!(o.stack.transform_dlq_url, "https://sqs/transform-dlq");
        assert_eq!(o.stack.hmac_secret, "eventpipe-pr-7/pii-hmac-key");
        assert_eq!(o.stack.endpoint, "aws:eu-west-1");
        let err = format!("{:#}", Outputs::parse("dev", "{}").unwrap_err());
        assert!(err.contains("cargo xtask deploy --env dev"), "{err}");
    }

    #[test]
    fn tags_parse() {
        let tags =
            parse_tags(r#"{"pulumi:project":"eventpipe","smoke-passed":"pending"}"#).unwrap();
        assert_eq!(tags["smoke-passed"], "pending");
        assert!(parse_tags("[]").is_err());
    }
}
