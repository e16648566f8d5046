//! The Pulumi CLI as the deployment commands use it. Command lines, prerequisite checks and the
//! parsing of the CLI's JSON are pure functions (tested without the CLI); `Pulumi` only runs them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use local_runtime::provision::Stack;
use pipeline_config::{Environment, is_preview};
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

/// Where the Pulumi state lives, from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// `PULUMI_BACKEND_URL`.
    pub url: String,
    /// `PULUMI_SECRETS_PROVIDER`; needed only to create a stack.
    pub secrets_provider: Option<String>,
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
            .chain(&["PULUMI_BACKEND_URL", "PULUMI_SECRETS_PROVIDER"])
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
        let url = self.var("PULUMI_BACKEND_URL");
        if url.is_none() {
            problems.push(
                "PULUMI_BACKEND_URL is not set: set it to the state bucket, `s3://eventpipe-pulumi-state-<account id>?region=eu-west-1&awssdk=v2` (docs/deployment.md, bootstrapping step 1)".to_owned(),
            );
        }
        if !problems.is_empty() {
            bail!("{}", problems.join("\n"));
        }
        Ok(Backend {
            url: url.unwrap_or_default().to_owned(),
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

/// Command lines, run in `pulumi/` (so the policy pack is `policy`).
pub mod args {
    fn v(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| (*s).to_owned()).collect()
    }

    pub fn login(url: &str) -> Vec<String> {
        v(&["login", url])
    }
    pub fn stack_ls() -> Vec<String> {
        v(&["stack", "ls", "--json"])
    }
    pub fn stack_init(stack: &str, secrets_provider: &str) -> Vec<String> {
        v(&[
            "stack",
            "init",
            stack,
            "--secrets-provider",
            secrets_provider,
        ])
    }
    pub fn up(stack: &str) -> Vec<String> {
        v(&[
            "up",
            "--yes",
            "--skip-preview",
            "--policy-pack",
            "policy",
            "--stack",
            stack,
        ])
    }
    pub fn preview(stack: &str) -> Vec<String> {
        v(&[
            "preview",
            "--diff",
            "--policy-pack",
            "policy",
            "--stack",
            stack,
        ])
    }
    pub fn outputs(stack: &str) -> Vec<String> {
        v(&["stack", "output", "--json", "--stack", stack])
    }
    pub fn tags(stack: &str) -> Vec<String> {
        v(&["stack", "tag", "ls", "--json", "--stack", stack])
    }
    pub fn tag_set(stack: &str, name: &str, value: &str) -> Vec<String> {
        v(&["stack", "tag", "set", name, value, "--stack", stack])
    }
    pub fn tag_rm(stack: &str, name: &str) -> Vec<String> {
        v(&["stack", "tag", "rm", name, "--stack", stack])
    }
    pub fn destroy(stack: &str) -> Vec<String> {
        v(&["destroy", "--yes", "--stack", stack])
    }
    pub fn stack_rm(stack: &str) -> Vec<String> {
        v(&["stack", "rm", "--yes", stack])
    }
}

/// Whether `pulumi stack ls --json` lists the stack (DIY backends may qualify the name).
pub fn stack_listed(ls_json: &str, stack: &str) -> Result<bool> {
    let value: Value =
        serde_json::from_str(ls_json).context("`pulumi stack ls --json` did not print JSON")?;
    let stacks = value
        .as_array()
        .context("`pulumi stack ls --json` did not print a list")?;
    let suffix = format!("/{stack}");
    Ok(stacks
        .iter()
        .filter_map(|s| s["name"].as_str())
        .any(|name| name == stack || name.ends_with(&suffix)))
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

/// Runs the CLI in `pulumi/` with the variables the program reads.
#[derive(Debug, Clone)]
pub struct Pulumi {
    pub dir: PathBuf,
    pub envs: Vec<(String, String)>,
}

impl Pulumi {
    pub fn new() -> Pulumi {
        Pulumi {
            dir: root().join("pulumi"),
            envs: vec![("PULUMI_SKIP_UPDATE_CHECK".into(), "true".into())],
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

    pub fn command(&self, args: &[String]) -> Command {
        let mut c = Command::new("pulumi");
        c.args(args).current_dir(&self.dir);
        c.envs(self.envs.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Runs in the foreground: the CLI's own output goes to our stdout and stderr.
    pub fn run(&self, args: &[String]) -> Result<()> {
        run(&mut self.command(args))
    }

    pub fn output(&self, args: &[String]) -> Result<String> {
        output(&mut self.command(args))
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

    pub fn login(&self, backend: &Backend) -> Result<()> {
        // Logging in prints the URL, which may carry query parameters: keep it off stdout.
        self.output(&args::login(&backend.url)).map(drop)
    }

    pub fn stack_exists(&self, stack: &str) -> Result<bool> {
        stack_listed(&self.output(&args::stack_ls())?, stack)
    }

    /// Creates a missing stack with the KMS secrets provider (docs/deployment.md, step 5).
    pub fn ensure_stack(&self, stack: &str, backend: &Backend) -> Result<()> {
        if self.stack_exists(stack)? {
            return Ok(());
        }
        let Some(provider) = &backend.secrets_provider else {
            bail!(
                "stack `{stack}` does not exist and PULUMI_SECRETS_PROVIDER is not set: set it to `awskms://alias/eventpipe-pulumi?region=eu-west-1` (docs/deployment.md, bootstrapping step 1)"
            );
        };
        self.run(&args::stack_init(stack, provider))
    }

    pub fn outputs(&self, stack: &str) -> Result<Outputs> {
        Outputs::parse(stack, &self.output(&args::outputs(stack))?)
    }

    pub fn tags(&self, stack: &str) -> Result<BTreeMap<String, String>> {
        parse_tags(&self.output(&args::tags(stack))?)
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
        assert!(err.contains("PULUMI_BACKEND_URL is not set"), "{err}");
        // Empty values count as unset.
        let err = facts(&[("AWS_PROFILE", ""), ("PULUMI_BACKEND_URL", "s3://b")])
            .check()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("no AWS credentials"), "{err}");
        for creds in AWS_CREDENTIAL_VARS {
            let backend = facts(&[(creds, "x"), ("PULUMI_BACKEND_URL", "s3://b")])
                .check()
                .unwrap();
            assert_eq!(
                backend,
                Backend {
                    url: "s3://b".into(),
                    secrets_provider: None
                }
            );
        }
        let mut f = facts(&[
            ("PULUMI_BACKEND_URL", "s3://b"),
            ("PULUMI_SECRETS_PROVIDER", "awskms://k"),
        ]);
        f.shared_aws_config = true;
        assert_eq!(
            f.check().unwrap().secrets_provider.as_deref(),
            Some("awskms://k")
        );
    }

    #[test]
    fn command_lines_per_stack() {
        for stack in ["dev", "prod", "pr-7"] {
            assert_eq!(
                args::up(stack).join(" "),
                format!("up --yes --skip-preview --policy-pack policy --stack {stack}")
            );
            assert_eq!(
                args::preview(stack).join(" "),
                format!("preview --diff --policy-pack policy --stack {stack}")
            );
            assert_eq!(
                args::outputs(stack).join(" "),
                format!("stack output --json --stack {stack}")
            );
            assert_eq!(
                args::stack_init(stack, "awskms://alias/eventpipe-pulumi?region=eu-west-1")
                    .join(" "),
                format!(
                    "stack init {stack} --secrets-provider awskms://alias/eventpipe-pulumi?region=eu-west-1"
                )
            );
            assert_eq!(
                args::tag_set(stack, "smoke-passed", "pending").join(" "),
                format!("stack tag set smoke-passed pending --stack {stack}")
            );
        }
        assert_eq!(
            args::destroy("pr-7").join(" "),
            "destroy --yes --stack pr-7"
        );
        assert_eq!(args::stack_rm("pr-7").join(" "), "stack rm --yes pr-7");
    }

    #[test]
    fn the_program_gets_its_inputs() {
        let p = Pulumi::new().with_program_inputs(Path::new("/abs/manifest.json"), "abc");
        let cmd = p.command(&args::up("dev"));
        assert!(cmd.get_current_dir().is_some_and(|d| d.ends_with("pulumi")));
        let envs: BTreeMap<_, _> = cmd
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        assert_eq!(
            envs["PIPELINE_ARTIFACT_MANIFEST"].as_deref(),
            Some("/abs/manifest.json")
        );
        assert_eq!(envs["GIT_SHA"].as_deref(), Some("abc"));
    }

    #[test]
    fn stack_listing_matches_plain_and_qualified_names() {
        let ls = r#"[{"name":"dev","current":false},{"name":"organization/eventpipe/pr-7"}]"#;
        assert!(stack_listed(ls, "dev").unwrap());
        assert!(stack_listed(ls, "pr-7").unwrap());
        assert!(!stack_listed(ls, "prod").unwrap());
        assert!(!stack_listed(ls, "r-7").unwrap());
        assert!(!stack_listed("[]", "dev").unwrap());
        assert!(stack_listed("not json", "dev").is_err());
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
