//! [`ObjectStore`] over the official S3 client.

use std::collections::BTreeMap;

use aws_sdk_s3::primitives::ByteStream;

use crate::error::from_sdk;
use crate::{ListedObject, ObjectCatalog, ObjectStore, StoreError, StoredObject};

#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
}

impl S3Store {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        // Emulators serve buckets under the endpoint's path, not as virtual hosts.
        let path_style =
            std::env::var_os("AWS_ENDPOINT_URL").is_some() || config.endpoint_url().is_some();
        let conf = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(path_style)
            .build();
        S3Store {
            client: aws_sdk_s3::Client::from_conf(conf),
        }
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
