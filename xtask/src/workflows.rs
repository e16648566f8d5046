//! Repository checks of the GitHub Actions workflows (docs/deployment.md), run as ordinary tests:
//! every action pinned by commit SHA, least privilege, the order of the deployment stages, and
//! the jobs that must exist. actionlint and zizmor (`pulumi/scripts/lint-workflows.sh`) check the
//! syntax and the general hazards; these check this project's rules.
//!
//! The workflows are read with a small parser of the block YAML they are written in (mappings,
//! sequences, plain and quoted scalars, `|` blocks, flow `[…]` and `{…}`); it refuses anchors,
//! tags, several documents and anything else it does not know, so a check never passes on a
//! misread file.

#[cfg(test)]
mod yaml {
    use anyhow::{Context, Result, bail};
    use serde_json::{Map, Value};

    #[derive(Debug, Clone)]
    struct Line {
        number: usize,
        indent: usize,
        /// The line without its indentation and (outside block scalars) its comment.
        text: String,
        /// The line as written, for block scalars.
        raw: String,
    }

    /// Parses one YAML document of the subset described in the module documentation.
    pub fn parse(source: &str) -> Result<Value> {
        let mut lines = Vec::new();
        for (i, raw) in source.lines().enumerate() {
            let number = i + 1;
            let indent = raw.len() - raw.trim_start_matches(' ').len();
            if raw[indent..].starts_with('\t') {
                bail!("line {number}: tab indentation");
            }
            let text = strip_comment(&raw[indent..]).trim_end().to_owned();
            if text == "---" || text == "..." {
                bail!("line {number}: several documents are not supported");
            }
            lines.push(Line {
                number,
                indent,
                text,
                raw: raw.to_owned(),
            });
        }
        let mut p = Parser { lines, at: 0 };
        p.skip_blank();
        if p.at == p.lines.len() {
            return Ok(Value::Null);
        }
        let indent = p.lines[p.at].indent;
        let value = p.node(indent)?;
        p.skip_blank();
        if let Some(line) = p.lines.get(p.at) {
            bail!("line {}: unexpected `{}`", line.number, line.text);
        }
        Ok(value)
    }

    /// The text before a comment: `#` at the start or after a space, outside quotes.
    fn strip_comment(text: &str) -> &str {
        let bytes = text.as_bytes();
        let mut quote: Option<u8> = None;
        let mut token_start = true;
        for (i, &b) in bytes.iter().enumerate() {
            match quote {
                Some(q) if b == q => quote = None,
                Some(_) => {}
                None if (b == b'\'' || b == b'"') && token_start => quote = Some(b),
                None if b == b'#' && (i == 0 || bytes[i - 1] == b' ') => return &text[..i],
                None => {}
            }
            if quote.is_none() {
                token_start = matches!(b, b' ' | b':' | b'-' | b'[' | b'{' | b',')
                    && (b != b'-' || i == 0 || bytes[i - 1] == b' ');
            }
        }
        text
    }

    struct Parser {
        lines: Vec<Line>,
        at: usize,
    }

    impl Parser {
        fn skip_blank(&mut self) {
            while self.at < self.lines.len() && self.lines[self.at].text.is_empty() {
                self.at += 1;
            }
        }

        fn peek(&mut self) -> Option<&Line> {
            self.skip_blank();
            self.lines.get(self.at)
        }

        fn node(&mut self, indent: usize) -> Result<Value> {
            let line = self.peek().context("expected a value")?.clone();
            if line.indent != indent {
                bail!("line {}: unexpected indentation", line.number);
            }
            if is_item(&line.text) {
                self.sequence(indent)
            } else {
                self.mapping(indent)
            }
        }

        fn sequence(&mut self, indent: usize) -> Result<Value> {
            let mut items = Vec::new();
            while let Some(line) = self.peek().cloned() {
                if line.indent < indent || (line.indent == indent && !is_item(&line.text)) {
                    break;
                }
                if line.indent > indent {
                    bail!("line {}: unexpected indentation", line.number);
                }
                let rest = line.text[1..].trim_start();
                if rest.is_empty() {
                    self.at += 1;
                    let next = self.peek().context("expected a sequence item")?.indent;
                    if next <= indent {
                        items.push(Value::Null);
                    } else {
                        items.push(self.node(next)?);
                    }
                } else if key_split(rest).is_some() || is_item(rest) {
                    // `- key: value` (or `- - x`): a node starting on this line, indented past `- `.
                    let column = indent + (line.text.len() - rest.len());
                    let l = &mut self.lines[self.at];
                    l.indent = column;
                    l.text = rest.to_owned();
                    items.push(self.node(column)?);
                } else {
                    self.at += 1;
                    items.push(scalar_or_flow(rest, line.number)?);
                }
            }
            Ok(Value::Array(items))
        }

        fn mapping(&mut self, indent: usize) -> Result<Value> {
            let mut map = Map::new();
            while let Some(line) = self.peek().cloned() {
                if line.indent < indent {
                    break;
                }
                if line.indent > indent {
                    bail!("line {}: unexpected indentation", line.number);
                }
                if is_item(&line.text) {
                    break;
                }
                let (key, rest) = key_split(&line.text)
                    .with_context(|| format!("line {}: expected `key: value`", line.number))?;
                let key = match scalar_or_flow(key, line.number)? {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                self.at += 1;
                let value = if rest.is_empty() {
                    match self.peek().cloned() {
                        Some(next) if next.indent > indent => self.node(next.indent)?,
                        Some(next) if next.indent == indent && is_item(&next.text) => {
                            self.sequence(indent)?
                        }
                        _ => Value::Null,
                    }
                } else if let Some(style) = rest.strip_prefix(['|', '>']) {
                    self.block(indent, rest.starts_with('>'), style, line.number)?
                } else {
                    scalar_or_flow(rest, line.number)?
                };
                if map.insert(key.clone(), value).is_some() {
                    bail!("line {}: duplicate key `{key}`", line.number);
                }
            }
            Ok(Value::Object(map))
        }

        /// A `|` or `>` block scalar: the lines indented past the key, blank lines included.
        fn block(
            &mut self,
            indent: usize,
            fold: bool,
            style: &str,
            number: usize,
        ) -> Result<Value> {
            let chomp = match style {
                "" => "clip",
                "-" => "strip",
                "+" => "keep",
                other => bail!("line {number}: block scalar style `{other}` is not supported"),
            };
            let mut body: Vec<&str> = Vec::new();
            let mut block_indent = None;
            while self.at < self.lines.len() {
                let l = &self.lines[self.at];
                let blank = l.raw.trim().is_empty();
                if !blank && l.indent <= indent {
                    break;
                }
                if !blank && block_indent.is_none() {
                    block_indent = Some(l.indent);
                }
                body.push(&l.raw);
                self.at += 1;
            }
            let cut = block_indent.unwrap_or(indent + 1);
            let mut text_lines: Vec<String> = body
                .iter()
                .map(|l| l.get(cut..).unwrap_or("").to_owned())
                .collect();
            while chomp != "keep" && text_lines.last().is_some_and(|l| l.is_empty()) {
                text_lines.pop();
            }
            let mut text = if fold {
                text_lines.join(" ")
            } else {
                text_lines.join("\n")
            };
            if chomp != "strip" && !text.is_empty() {
                text.push('\n');
            }
            Ok(Value::String(text))
        }
    }

    fn is_item(text: &str) -> bool {
        text == "-" || text.starts_with("- ")
    }

    /// `key: rest` → (key, rest), the colon outside quotes and followed by a space or the end.
    fn key_split(text: &str) -> Option<(&str, &str)> {
        let bytes = text.as_bytes();
        let quoted = matches!(bytes.first(), Some(b'"' | b'\''));
        let mut i = 0;
        if quoted {
            let q = bytes[0];
            i = 1 + text[1..].find(q as char)? + 1;
        }
        while i < bytes.len() {
            if bytes[i] == b':' && (i + 1 == bytes.len() || bytes[i + 1] == b' ') {
                if text.starts_with(['[', '{']) {
                    return None;
                }
                return Some((text[..i].trim(), text[i + 1..].trim()));
            }
            i += 1;
        }
        None
    }

    fn scalar_or_flow(text: &str, number: usize) -> Result<Value> {
        let t = text.trim();
        if t.starts_with(['&', '*', '!', '?', '%', '@', '`']) {
            bail!("line {number}: `{t}` uses YAML this parser does not support");
        }
        if let Some(inner) = t.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .with_context(|| format!("line {number}: unclosed `[`"))?;
            return split_flow(inner, number)?
                .into_iter()
                .map(|part| scalar_or_flow(part, number))
                .collect::<Result<Vec<_>>>()
                .map(Value::Array);
        }
        if let Some(inner) = t.strip_prefix('{') {
            let inner = inner
                .strip_suffix('}')
                .with_context(|| format!("line {number}: unclosed `{{`"))?;
            let mut map = Map::new();
            for part in split_flow(inner, number)? {
                let (k, v) = key_split(part)
                    .with_context(|| format!("line {number}: expected `key: value` in `{{…}}`"))?;
                map.insert(k.to_owned(), scalar_or_flow(v, number)?);
            }
            return Ok(Value::Object(map));
        }
        if let Some(inner) = t.strip_prefix('\'') {
            let inner = inner
                .strip_suffix('\'')
                .with_context(|| format!("line {number}: unclosed `'`"))?;
            return Ok(Value::String(inner.replace("''", "'")));
        }
        if let Some(inner) = t.strip_prefix('"') {
            let inner = inner
                .strip_suffix('"')
                .with_context(|| format!("line {number}: unclosed `\"`"))?;
            if inner.contains('\\') && !inner.contains("\\\"") && !inner.contains("\\\\") {
                bail!("line {number}: escapes other than `\\\"` and `\\\\` are not supported");
            }
            return Ok(Value::String(
                inner.replace("\\\"", "\"").replace("\\\\", "\\"),
            ));
        }
        Ok(match t {
            "" | "~" | "null" => Value::Null,
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => match t.parse::<i64>() {
                Ok(n) => Value::from(n),
                Err(_) => Value::String(t.to_owned()),
            },
        })
    }

    /// The comma-separated parts of a flow collection, nested brackets and quotes respected.
    fn split_flow(inner: &str, number: usize) -> Result<Vec<&str>> {
        let (mut parts, mut depth, mut quote, mut start) = (Vec::new(), 0i32, None, 0);
        for (i, c) in inner.char_indices() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '[' | '{') => depth += 1,
                (None, ']' | '}') => depth -= 1,
                (None, ',') if depth == 0 => {
                    parts.push(inner[start..i].trim());
                    start = i + 1;
                }
                _ => {}
            }
        }
        if depth != 0 || quote.is_some() {
            bail!("line {number}: unbalanced flow collection");
        }
        let last = inner[start..].trim();
        if !last.is_empty() {
            parts.push(last);
        }
        Ok(parts)
    }

    #[cfg(test)]
    mod tests {
        use serde_json::json;

        use super::parse;

        #[test]
        fn the_subset_parses_as_yaml_does() {
            let doc = r#"
# a comment
name: ci # trailing comment
on:
  pull_request:
  push:
    branches: [main, "release/*"]
permissions: {}
env:
  A: "x # not a comment"
  B: 'it''s'
  C: 3.248.0
  D: "true"
  E: true
jobs:
  build:
    needs: [a, b]
    steps:
      - name: Check out
        uses: actions/checkout@de0fac2e4500dabe0009e67214ff5f5447ce83dd # v6.0.2
        with:
          persist-credentials: false
      - run: |
          echo "a: b" # part of the script
          
          echo done
      - run: echo plain # comment
    matrix:
    - x
    - - nested
"#;
            let v = parse(doc).unwrap();
            assert_eq!(v["name"], "ci");
            assert_eq!(v["on"]["pull_request"], json!(null));
            assert_eq!(v["on"]["push"]["branches"], json!(["main", "release/*"]));
            assert_eq!(v["permissions"], json!({}));
            assert_eq!(
                v["env"],
                json!({"A": "x # not a comment", "B": "it's", "C": "3.248.0", "D": "true", "E": true})
            );
            let steps = &v["jobs"]["build"]["steps"];
            assert_eq!(
                steps[0]["uses"],
                "actions/checkout@de0fac2e4500dabe0009e67214ff5f5447ce83dd"
            );
            assert_eq!(steps[0]["with"]["persist-credentials"], false);
            assert_eq!(
                steps[1]["run"],
                "echo \"a: b\" # part of the script\n\necho done\n"
            );
            assert_eq!(steps[2]["run"], "echo plain");
            assert_eq!(v["jobs"]["build"]["needs"], json!(["a", "b"]));
            assert_eq!(v["jobs"]["build"]["matrix"], json!(["x", ["nested"]]));
        }

        #[test]
        fn what_the_subset_does_not_know_is_refused() {
            for bad in [
                "a: &anchor x\nb: *anchor\n",
                "a: !!str x\n",
                "a: 1\n---\nb: 2\n",
                "a:\n\t- x\n",
                "a: 1\na: 2\n",
                "a: [1, 2\n",
                "a: x\n    b: y\n",
                "a: \"\\t\"\n",
            ] {
                assert!(parse(bad).is_err(), "{bad:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::Value;

    use super::yaml;
    use crate::util::root;

    /// Every workflow: file name → (text, parsed).
    fn workflows() -> BTreeMap<String, (String, Value)> {
        let dir = root().join(".github/workflows");
        let mut all = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !(name.ends_with(".yml") || name.ends_with(".yaml")) {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let value = yaml::parse(&text).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            all.insert(name, (text, value));
        }
        assert!(all.contains_key("deploy.yml"), "no workflows found");
        all
    }

    fn workflow(name: &str) -> Value {
        workflows()
            .remove(name)
            .unwrap_or_else(|| panic!("no .github/workflows/{name}"))
            .1
    }

    fn jobs(w: &Value) -> &serde_json::Map<String, Value> {
        w["jobs"].as_object().expect("a workflow has jobs")
    }

    fn steps(job: &Value) -> &[Value] {
        job["steps"].as_array().map_or(&[], Vec::as_slice)
    }

    /// Every `run:` script of a job, in order.
    fn scripts(job: &Value) -> Vec<&str> {
        steps(job)
            .iter()
            .filter_map(|s| s["run"].as_str())
            .collect()
    }

    fn runs(job: &Value, needle: &str) -> bool {
        scripts(job).iter().any(|s| s.contains(needle))
    }

    /// `uses` of a job's steps, with the step.
    fn uses(job: &Value) -> Vec<(&str, &Value)> {
        steps(job)
            .iter()
            .filter_map(|s| s["uses"].as_str().map(|u| (u, s)))
            .collect()
    }

    fn strings(v: &Value) -> Vec<&str> {
        match v {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        }
    }

    /// A full-length commit SHA: 40 lower-case hex digits.
    fn is_commit_sha(s: &str) -> bool {
        s.len() == 40
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    /// `owner/repo[/path]@<40 hex>`.
    fn pinned(reference: &str) -> bool {
        reference
            .rsplit_once('@')
            .is_some_and(|(action, sha)| action.split('/').count() >= 2 && is_commit_sha(sha))
    }

    #[test]
    fn the_pin_check_tells_shas_from_tags() {
        assert!(pinned(
            "pulumi/actions@df5a93ad715135263c732ba288301bd044c383c0"
        ));
        assert!(pinned(
            "github/codeql-action/init@0123456789abcdef0123456789abcdef01234567"
        ));
        for loose in [
            "pulumi/actions@v6",
            "pulumi/actions@v6.3.0",
            "pulumi/actions@main",
            "pulumi/actions@df5a93ad",
            "pulumi/actions@DF5A93AD715135263C732BA288301BD044C383C0",
            "pulumi/actions",
            "./.github/actions/x",
            "docker://alpine:3",
        ] {
            assert!(!pinned(loose), "{loose}");
        }
    }

    #[test]
    fn every_action_is_pinned_by_commit_sha_with_its_version() {
        let mut seen = 0;
        for (name, (text, w)) in workflows() {
            for (job_name, job) in jobs(&w) {
                let mut refs: Vec<&str> = uses(job).into_iter().map(|(u, _)| u).collect();
                refs.extend(job["uses"].as_str());
                for reference in refs {
                    seen += 1;
                    assert!(
                        pinned(reference),
                        "{name}, job `{job_name}`: `{reference}` is not pinned by a full commit SHA"
                    );
                    // The version it stands for, as a comment on the same line.
                    let line = text
                        .lines()
                        .find(|l| l.contains(reference))
                        .unwrap_or_default();
                    let comment = line.split_once(" # ").map(|(_, c)| c.trim());
                    assert!(
                        comment.is_some_and(|c| c.starts_with('v')),
                        "{name}: `{reference}` has no `# v<version>` comment"
                    );
                }
            }
        }
        assert!(seen > 10, "found only {seen} actions");
    }

    #[test]
    fn zizmor_runs_without_exceptions() {
        let config =
            yaml::parse(&std::fs::read_to_string(root().join(".github/zizmor.yml")).unwrap())
                .unwrap();
        let policies = &config["rules"]["unpinned-uses"]["config"]["policies"];
        assert_eq!(
            policies,
            &serde_json::json!({"*": "hash-pin"}),
            "every action must be hash-pinned, none excepted"
        );
        let rules = config["rules"].as_object().unwrap();
        for (rule, settings) in rules {
            assert!(
                settings.get("disable").is_none() && settings.get("ignore").is_none(),
                ".github/zizmor.yml disables or ignores `{rule}`"
            );
        }
        for (name, (text, _)) in workflows() {
            assert!(
                !text.contains("zizmor: ignore"),
                "{name} silences zizmor with an ignore comment"
            );
        }
    }

    #[test]
    fn least_privilege_everywhere() {
        for (name, (_, w)) in workflows() {
            assert_eq!(
                w["permissions"],
                serde_json::json!({}),
                "{name}: the workflow must start with `permissions: {{}}`"
            );
            for trigger in ["pull_request_target", "workflow_run"] {
                assert!(
                    w["on"].get(trigger).is_none(),
                    "{name}: `{trigger}` runs with secrets on code or events the repository does not control"
                );
            }
            for (job_name, job) in jobs(&w) {
                assert!(
                    job["permissions"].is_object(),
                    "{name}, job `{job_name}`: no job-level `permissions`"
                );
                for (action, step) in uses(job) {
                    if action.starts_with("actions/checkout@") {
                        assert_eq!(
                            step["with"]["persist-credentials"], false,
                            "{name}, job `{job_name}`: checkout without `persist-credentials: false`"
                        );
                    }
                }
                for script in scripts(job) {
                    assert!(
                        !script.contains("${{"),
                        "{name}, job `{job_name}`: an expression inside a script (pass it through `env:`): {script}"
                    );
                }
            }
        }
    }

    /// Jobs that run Pulumi against a stack: those calling the deployment commands of xtask.
    fn pulumi_jobs() -> Vec<(String, String, Value)> {
        let mut found = Vec::new();
        for (name, (_, w)) in workflows() {
            for (job_name, job) in jobs(&w) {
                let pulumi = ["deploy", "preview", "promote", "destroy", "smoke"]
                    .iter()
                    .any(|c| runs(job, &format!("cargo xtask {c} ")));
                if pulumi {
                    found.push((name.clone(), job_name.clone(), job.clone()));
                }
            }
        }
        found
    }

    #[test]
    fn pulumi_jobs_install_the_pinned_cli_reach_the_state_bucket_and_hold_a_concurrency_group() {
        let jobs = pulumi_jobs();
        assert!(jobs.len() >= 8, "found only {} Pulumi jobs", jobs.len());
        for (name, job_name, job) in jobs {
            let w = workflow(&name);
            let at = format!("{name}, job `{job_name}`");
            let actions = uses(&job);
            let install = actions
                .iter()
                .position(|(u, _)| u.starts_with("pulumi/actions@"))
                .unwrap_or_else(|| panic!("{at}: does not install the Pulumi CLI"));
            assert_eq!(
                actions[install].1["with"]["pulumi-version"], "${{ env.PULUMI_VERSION }}",
                "{at}"
            );
            let version = w["env"]["PULUMI_VERSION"].as_str().unwrap_or_default();
            assert!(
                version.split('.').count() == 3
                    && version.split('.').all(|p| p.parse::<u32>().is_ok()),
                "{name}: PULUMI_VERSION must pin an exact version, not `{version}`"
            );
            assert!(
                runs(&job, "check-pulumi-version.sh"),
                "{at}: the installed CLI version is not checked"
            );
            // xtask picks each stack's backend from the bucket; no job points at one by hand.
            assert_eq!(
                w["env"]["PULUMI_STATE_URL"], "${{ vars.PULUMI_STATE_URL }}",
                "{name}: PULUMI_STATE_URL"
            );
            assert!(
                w["env"].get("PULUMI_BACKEND_URL").is_none()
                    && job["env"].get("PULUMI_BACKEND_URL").is_none(),
                "{at}: sets PULUMI_BACKEND_URL; xtask sets it per stack class"
            );
            let concurrency = &job["concurrency"];
            assert!(
                concurrency["group"].is_string(),
                "{at}: a Pulumi job needs a concurrency group"
            );
            assert_eq!(
                concurrency["cancel-in-progress"], false,
                "{at}: a running Pulumi operation must never be cancelled"
            );
        }
    }

    /// The GitHub environment (and so the OIDC subject) each job that assumes an AWS role runs in,
    /// as the roles' trust policies expect them (docs/bootstrap.md): `None` for pull request jobs,
    /// whose subject is `repo:<owner>/<name>:pull_request`.
    const ROLE_ENVIRONMENTS: [(&str, &str, Option<&str>); 8] = [
        ("deploy.yml", "dev", Some("dev")),
        ("deploy.yml", "prod-plan", Some("prod-read")),
        ("deploy.yml", "prod", Some("prod")),
        ("drift.yml", "drift", Some("${{ matrix.stack }}-read")),
        ("preview-cleanup.yml", "sweep", Some("preview-cleanup")),
        ("preview.yml", "preview-dev", None),
        ("preview.yml", "deploy-preview", None),
        ("preview.yml", "destroy", None),
    ];

    #[test]
    fn each_role_is_assumed_from_the_environment_its_trust_policy_names() {
        let mut assuming = Vec::new();
        for (name, (_, w)) in workflows() {
            for (job_name, job) in jobs(&w) {
                let Some((_, step)) = uses(job)
                    .into_iter()
                    .find(|(u, _)| u.starts_with("aws-actions/configure-aws-credentials@"))
                else {
                    continue;
                };
                assuming.push(format!("{name}/{job_name}"));
                let expected = ROLE_ENVIRONMENTS
                    .iter()
                    .find(|(w, j, _)| *w == name && j == job_name)
                    .unwrap_or_else(|| {
                        panic!("{name}, job `{job_name}` assumes a role no trust policy names")
                    })
                    .2;
                assert_eq!(
                    job["environment"].as_str(),
                    expected,
                    "{name}, job `{job_name}`"
                );
                assert_eq!(
                    job["permissions"]["id-token"], "write",
                    "{name}, job `{job_name}`"
                );
                let role = step["with"]["role-to-assume"].as_str().unwrap_or_default();
                let want = if expected.is_some() {
                    "${{ vars.AWS_ROLE_ARN }}"
                } else {
                    "${{ vars.PREVIEW_AWS_ROLE_ARN }}"
                };
                assert_eq!(role, want, "{name}, job `{job_name}`");
            }
        }
        assert_eq!(assuming.len(), ROLE_ENVIRONMENTS.len(), "{assuming:?}");
        // Jobs without an environment get the pull request subject only under `pull_request`.
        let preview = workflow("preview.yml");
        assert_eq!(
            preview["on"]
                .as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>()),
            Some(vec!["pull_request".to_owned()])
        );
    }

    #[test]
    fn the_dev_deployment_waits_for_ci_of_the_same_commit() {
        let deploy = workflow("deploy.yml");
        let j = jobs(&deploy);
        let ci = &j["ci"];
        assert!(
            runs(ci, "cargo xtask ci"),
            "deploy.yml's `ci` job runs `cargo xtask ci`"
        );
        assert!(
            runs(&jobs(&workflow("ci.yml"))["ci"], "cargo xtask ci"),
            "ci.yml runs the same command"
        );
        let needs = strings(&j["dev"]["needs"]);
        assert!(
            needs.contains(&"ci") && needs.contains(&"build"),
            "dev needs CI and the build: {needs:?}"
        );
        assert!(
            j["dev"].get("if").is_none(),
            "dev must not run past a failed CI"
        );
    }

    #[test]
    fn prod_applies_the_plan_shown_before_its_approval() {
        let deploy = workflow("deploy.yml");
        let j = jobs(&deploy);
        let (plan, prod) = (&j["prod-plan"], &j["prod"]);
        assert_ne!(
            plan["environment"], "prod",
            "the plan is made outside the approval"
        );
        assert_eq!(plan["environment"], "prod-read");
        assert!(strings(&plan["needs"]).contains(&"dev"));
        assert!(runs(plan, "cargo xtask promote") && runs(plan, "--save-plan"));
        assert!(
            runs(plan, "step-summary.sh"),
            "the plan is shown in the job summary"
        );
        let upload = uses(plan)
            .into_iter()
            .find(|(u, _)| u.starts_with("actions/upload-artifact@"))
            .expect("the plan is uploaded");
        assert_eq!(upload.1["with"]["name"], "prod-plan");

        assert_eq!(prod["environment"], "prod");
        assert!(strings(&prod["needs"]).contains(&"prod-plan"));
        let download = uses(prod)
            .into_iter()
            .find(|(u, s)| {
                u.starts_with("actions/download-artifact@") && s["with"]["name"] == "prod-plan"
            })
            .expect("prod downloads the plan");
        assert!(
            download.1["with"].get("run-id").is_none(),
            "the plan of this very run"
        );
        assert!(runs(prod, "cargo xtask promote") && runs(prod, "--plan "));
        assert!(!runs(prod, "--save-plan"));
        for (job_name, job) in [("prod-plan", plan), ("prod", prod)] {
            assert!(
                runs(job, "--attestation-repo \"$GITHUB_REPOSITORY\""),
                "{job_name} verifies the zips' provenance"
            );
            assert_eq!(job["permissions"]["attestations"], "read", "{job_name}");
        }
        // The signer promotion accepts is the workflow that attests.
        let build = &j["build"];
        assert!(
            uses(build)
                .iter()
                .any(|(u, _)| u.starts_with("actions/attest-build-provenance@")),
            "the build job attests"
        );
        assert!(crate::artifact::SIGNER_WORKFLOW.ends_with("/deploy.yml"));
    }

    #[test]
    fn a_closed_pull_requests_stack_is_destroyed_by_the_default_branchs_code() {
        let preview = workflow("preview.yml");
        let destroy = &jobs(&preview)["destroy"];
        assert!(runs(destroy, "cargo xtask destroy --env"));
        let checkout = uses(destroy)
            .into_iter()
            .find(|(u, _)| u.starts_with("actions/checkout@"))
            .expect("destroy checks out");
        assert_eq!(
            checkout.1["with"]["ref"], "${{ github.event.repository.default_branch }}",
            "destroy must not run the pull request's code"
        );
        assert!(
            !uses(destroy).iter().any(|(u, _)| u.contains("cache")),
            "destroy must not restore a cache the pull request's jobs wrote"
        );
    }

    #[test]
    fn scheduled_jobs_sweep_closed_previews_and_check_drift() {
        let cleanup = workflow("preview-cleanup.yml");
        assert!(cleanup["on"]["schedule"].is_array());
        let sweep = &jobs(&cleanup)["sweep"];
        assert!(runs(sweep, "cargo xtask destroy --closed-previews"));
        assert_eq!(sweep["permissions"]["pull-requests"], "read");

        let drift = workflow("drift.yml");
        assert!(drift["on"]["schedule"].is_array());
        let job = &jobs(&drift)["drift"];
        assert_eq!(
            job["strategy"]["matrix"]["stack"],
            serde_json::json!(["dev", "prod"])
        );
        assert_eq!(job["environment"], "${{ matrix.stack }}-read");
        assert!(runs(job, "cargo xtask preview --env \"$STACK\" --drift"));
        assert!(runs(job, "::error"), "drift is annotated");
        assert_eq!(
            job["permissions"]["issues"], "write",
            "drift opens an issue"
        );
        assert!(
            uses(job)
                .iter()
                .any(|(u, s)| u.starts_with("actions/github-script@")
                    && s["with"]["script"]
                        .as_str()
                        .is_some_and(|t| t.contains("drift-issue.js"))),
            "drift is reported on an issue"
        );
    }
}
