//! Repository-wide checks that run as ordinary tests.

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    use crate::util::root;

    fn tracked_files() -> Vec<String> {
        let out = Command::new("git")
            .args(["ls-files"])
            .current_dir(root())
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn text(path: &str) -> Option<String> {
        std::fs::read_to_string(root().join(path)).ok()
    }

    /// The offline command and the functional core build without the AWS SDK: what they do needs
    /// no AWS, and the command starts faster without it.
    #[test]
    fn the_offline_command_and_the_core_depend_on_no_aws_sdk() {
        for package in ["pipeline-cli", "pipeline-core", "lambda-payloads"] {
            let out = Command::new(env!("CARGO"))
                .args([
                    "tree", "--locked", "-e", "normal", "--prefix", "none", "-p", package,
                ])
                .current_dir(root())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let tree = String::from_utf8(out.stdout).unwrap();
            let sdk: Vec<&str> = tree
                .lines()
                .filter(|l| l.starts_with("aws-sdk-") || l.starts_with("aws-config"))
                .collect();
            assert!(sdk.is_empty(), "{package} depends on {sdk:?}");
        }
    }

    #[test]
    fn every_crate_uses_the_workspace_lints() {
        for f in tracked_files()
            .iter()
            .filter(|f| f.ends_with("Cargo.toml") && *f != "Cargo.toml")
        {
            let t = text(f).unwrap();
            assert!(
                t.contains("[lints]\nworkspace = true"),
                "{f} must inherit [workspace.lints]"
            );
        }
    }

    #[test]
    fn no_machine_paths_are_committed() {
        let home = std::env::var("HOME").unwrap_or_default();
        let parent = root()
            .parent()
            .map(|p| format!("{}/", p.display()))
            .unwrap_or_default();
        for f in tracked_files()
            .iter()
            .filter(|f| !f.ends_with(".lock") && !f.ends_with("package-lock.json"))
        {
            let Some(t) = text(f) else { continue };
            let temp = format!("{}/", std::env::temp_dir().display());
            for needle in [parent.as_str(), temp.as_str()]
                .into_iter()
                .chain((!home.is_empty() && home != "/").then_some(home.as_str()))
            {
                if needle.len() > 1 {
                    assert!(
                        !t.contains(needle),
                        "{f} mentions the machine path {needle}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_reason_code_is_documented() {
        let contract = text("docs/data-contract.md").expect("docs/data-contract.md");
        for r in pipeline_core::Reason::ALL.map(pipeline_core::Reason::as_str) {
            assert!(
                contract.contains(&format!("`{r}`")),
                "docs/data-contract.md does not document `{r}`"
            );
        }
    }

    #[test]
    fn readme_commands_exist_in_ci() {
        let readme = text("README.md").unwrap();
        let ci = text(".ci/run").unwrap();
        assert!(
            readme.contains("cargo xtask test"),
            "README must give the test command"
        );
        assert!(
            ci.contains("cargo xtask test"),
            ".ci/run must call the README's test command"
        );
        assert!(Path::new(&root().join(".cargo/config.toml")).is_file());
    }
}
