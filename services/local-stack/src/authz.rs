//! The authorisation model the local stack enforces, rendered from the Pulumi program.
//!
//! `pulumi/authz/render.ts` runs the program under mocks for an environment file (dev, prod or
//! preview) with the local stack's names, account and region, and writes every role, inline
//! policy, permissions boundary, resource policy and encryption setting it declares to
//! `pulumi/authz/local/<env>.json` (a test keeps those files equal to what the program renders).
//! The provisioner creates the emulator's roles, key and resource policies from them, so a change
//! to the program changes what the local stack allows; nothing is copied by hand.
//!
//! Identifiers that AWS picks (a KMS key id, a secret's ARN suffix) are placeholders
//! `<<kind:logical-name>>` in the rendering; [`Model::bind`] fills them in once the emulator has
//! picked them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Error;

/// Whose policies the local stack enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policies {
    #[default]
    Dev,
    Prod,
    Preview,
}

impl Policies {
    pub const ALL: [Policies; 3] = [Policies::Dev, Policies::Prod, Policies::Preview];

    pub fn as_str(self) -> &'static str {
        match self {
            Policies::Dev => "dev",
            Policies::Prod => "prod",
            Policies::Preview => "preview",
        }
    }

    /// `pulumi/authz/local/<env>.json` under the workspace root.
    pub fn path(self, root: &Path) -> PathBuf {
        root.join("pulumi/authz/local")
            .join(format!("{}.json", self.as_str()))
    }
}

impl std::str::FromStr for Policies {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Policies::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown policies `{s}`: use dev, prod or preview"))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamedPolicy {
    pub name: String,
    pub document: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Boundary {
    pub arn: String,
    pub document: Value,
}

/// A role the pipeline declares: a function's execution role or a tool's role.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Principal {
    /// `stream-processor`, `transformer`, `producer`, `operator`.
    pub id: String,
    pub kind: String,
    pub role_name: String,
    pub role_arn: String,
    pub trust_policy: Value,
    pub policies: Vec<NamedPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions_boundary: Option<Boundary>,
}

/// A resource that holds data or carries a resource policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    pub kind: String,
    pub logical: String,
    pub name: String,
    pub arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_key: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}

/// The model of one stack (see `pulumi/authz/model.ts` for every field).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Model {
    pub policies_of: String,
    pub stack: String,
    pub account_id: String,
    pub region: String,
    pub partition: String,
    pub principals: Vec<Principal>,
    pub resources: Vec<Resource>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}

/// The ids of the principals the tools and the mapping act as.
pub mod principal {
    pub const STREAM_PROCESSOR: &str = "stream-processor";
    pub const TRANSFORMER: &str = "transformer";
    pub const AUDITOR: &str = "auditor";
    pub const PRODUCER: &str = "producer";
    pub const OPERATOR: &str = "operator";
}

impl Model {
    /// Reads the committed rendering of `policies` for the local stack.
    pub fn load(root: &Path, policies: Policies) -> Result<Model, Error> {
        let path = policies.path(root);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| {
            Error::Provision(format!(
                "{}: {e}; render it with `cargo xtask authz --render`",
                path.display()
            ))
        })
    }

    /// Replaces the placeholder `<<kind:logical>>` with `value` everywhere in the model.
    pub fn bind(&mut self, kind: &str, logical: &str, value: &str) -> Result<(), Error> {
        let placeholder = format!("<<{kind}:{logical}>>");
        let text = serde_json::to_string(self).map_err(|e| Error::Provision(e.to_string()))?;
        if !text.contains(&placeholder) {
            return Err(Error::Provision(format!(
                "the authorisation model has no placeholder {placeholder}"
            )));
        }
        *self = serde_json::from_str(&text.replace(&placeholder, value))
            .map_err(|e| Error::Provision(e.to_string()))?;
        Ok(())
    }

    /// Placeholders still unbound, of the given kinds.
    pub fn unbound(&self, kinds: &[&str]) -> Vec<String> {
        let text = serde_json::to_string(self).unwrap_or_default();
        let mut out: Vec<String> = text
            .match_indices("<<")
            .filter_map(|(i, _)| {
                let rest = &text[i + 2..];
                let end = rest.find(">>")?;
                let token = &rest[..end];
                kinds
                    .iter()
                    .any(|k| token.starts_with(&format!("{k}:")))
                    .then(|| format!("<<{token}>>"))
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    pub fn principal(&self, id: &str) -> Result<&Principal, Error> {
        self.principals.iter().find(|p| p.id == id).ok_or_else(|| {
            Error::Provision(format!(
                "the authorisation model ({} policies) declares no principal `{id}`",
                self.policies_of
            ))
        })
    }

    /// The resource of `kind` named `name`.
    pub fn resource(&self, kind: &str, name: &str) -> Result<&Resource, Error> {
        self.resources
            .iter()
            .find(|r| r.kind == kind && r.name == name)
            .ok_or_else(|| {
                Error::Provision(format!(
                    "the authorisation model ({} policies) declares no {kind} `{name}`",
                    self.policies_of
                ))
            })
    }

    /// The only resource of `kind`.
    pub fn only(&self, kind: &str) -> Result<&Resource, Error> {
        let mut found = self.resources.iter().filter(|r| r.kind == kind);
        match (found.next(), found.next()) {
            (Some(r), None) => Ok(r),
            _ => Err(Error::Provision(format!(
                "the authorisation model ({} policies) must declare exactly one {kind}",
                self.policies_of
            ))),
        }
    }
}

/// What a client needs to act on the local stack as one of its principals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// The PEM certificate authority the emulator's TLS certificate is signed by.
    pub ca_certificate: Option<PathBuf>,
    /// Principal id → role ARN; empty when authorisation is off (everything acts as root).
    pub roles: BTreeMap<String, String>,
    /// Whose policies are enforced.
    pub policies: Option<Policies>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    #[test]
    fn every_committed_rendering_names_the_local_stack_and_its_principals() {
        let env = pipeline_config::Environment::load(&root(), "local").unwrap();
        let names = env.names(crate::ACCOUNT_ID);
        for policies in Policies::ALL {
            let model = Model::load(&root(), policies).unwrap();
            assert_eq!(model.policies_of, policies.as_str());
            assert_eq!(
                (model.stack.as_str(), model.account_id.as_str()),
                (env.name.as_str(), crate::ACCOUNT_ID)
            );
            assert_eq!(model.region, crate::REGION);
            for id in [
                principal::STREAM_PROCESSOR,
                principal::TRANSFORMER,
                principal::AUDITOR,
                principal::PRODUCER,
                principal::OPERATOR,
            ] {
                model.principal(id).unwrap();
            }
            model.resource("s3-bucket", &names.raw_bucket).unwrap();
            model.resource("sqs-queue", &names.stream_dlq).unwrap();
            model.only("kms-key").unwrap();
        }
    }

    #[test]
    fn binding_a_placeholder_replaces_it_everywhere_and_an_unknown_one_is_an_error() {
        let mut model = Model::load(&root(), Policies::Dev).unwrap();
        let key = model.only("kms-key").unwrap().logical.clone();
        assert!(
            model
                .unbound(&["kms-key"])
                .contains(&format!("<<kms-key:{key}>>"))
        );
        model.bind("kms-key", &key, "1234abcd").unwrap();
        assert!(model.unbound(&["kms-key"]).is_empty());
        let text = serde_json::to_string(&model).unwrap();
        assert!(text.contains("key/1234abcd"), "{text}");
        assert!(model.bind("kms-key", &key, "again").is_err());
    }
}
