//! [`ObjectStore`] over the official S3 client.

use std::collections::BTreeMap;

use aws_sdk_s3::primitives::ByteStream;

use crate::error::from_sdk;
use crate::{ListedObject, ObjectCatalog, ObjectStore, StoreError, StoredObject};

#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
}

/// Whether S3 requests must name the bucket in the path: an emulator's endpoint serves buckets
/// under its path, not as virtual hosts; AWS's own endpoints take virtual-hosted requests.
pub fn needs_path_style(config: &aws_config::SdkConfig, endpoint_env: Option<&str>) -> bool {
    config.endpoint_url().is_some() || endpoint_env.is_some_and(|e| !e.is_empty())
}

/// The S3 client of `config`: path-style only against an endpoint that needs it.
pub fn client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let endpoint_env = std::env::var("AWS_ENDPOINT_URL").ok();
    let conf = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(needs_path_style(config, endpoint_env.as_deref()))
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

impl S3Store {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        S3Store {
            client: client(config),
        }
    }

    /// A store over a client built elsewhere (the tools' clients).
    pub fn from_client(client: aws_sdk_s3::Client) -> Self {
        S3Store { client }
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }
}

impl ObjectStore for S3Store {
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
        metadata: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let target = format!("s3://{bucket}/{key}");
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .set_metadata(Some(
                metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ))
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| from_sdk("PutObject", &target, e))?;
        Ok(())
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<StoredObject>, StoreError> {
        let target = format!("s3://{bucket}/{key}");
        let out = match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(from_sdk("GetObject", &target, e)),
        };
        let metadata = out
            .metadata()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| {
                StoreError::new("GetObject", target, true, format!("reading the body: {e}"))
            })?
            .into_bytes()
            .to_vec();
        Ok(Some(StoredObject { body, metadata }))
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), StoreError> {
        let target = format!("s3://{bucket}/{key}");
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| from_sdk("DeleteObject", &target, e))?;
        Ok(())
    }
}

impl ObjectCatalog for S3Store {
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ListedObject>, StoreError> {
        let target = format!("s3://{bucket}/{prefix}");
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| from_sdk("ListObjectsV2", &target, e))?;
            for o in page.contents() {
                let Some(key) = o.key() else { continue };
                out.push(ListedObject {
                    key: key.to_owned(),
                    size: o.size().map_or(0, |s| s.max(0) as u64),
                    last_modified_ms: o
                        .last_modified()
                        .and_then(|t| t.to_millis().ok())
                        .unwrap_or(0),
                });
            }
        }
        Ok(out)
    }

    async fn head(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<BTreeMap<String, String>>, StoreError> {
        let target = format!("s3://{bucket}/{key}");
        match self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(
                out.metadata()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default(),
            )),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(from_sdk("HeadObject", &target, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_endpoint_of_its_own_needs_path_style() {
        let aws = aws_config::SdkConfig::builder().build();
        assert!(!needs_path_style(&aws, None));
        assert!(!needs_path_style(&aws, Some("")));
        assert!(needs_path_style(&aws, Some("https://127.0.0.1:4566")));
        let emulator = aws_config::SdkConfig::builder()
            .endpoint_url("https://127.0.0.1:4566")
            .build();
        assert!(needs_path_style(&emulator, None));
    }
}
