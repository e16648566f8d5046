//! Creates the local stack from the environment file, idempotently: stream, buckets, table, DLQs,
//! alarm topic, HMAC secret, the three functions from the packaged zips, the S3 notification with
//! the transformer's async-invoke settings, the auditor's EventBridge schedule, and alarms. Every call goes through the official SDKs.
//!
//! With an authorisation model (`authz`, rendered from the Pulumi program), it also creates what
//! the emulator enforces, as the program declares it: the customer managed key and its key
//! policy, SSE-KMS on the buckets, stream, table, queues, topic and secret, the bucket, queue and
//! topic policies, and every role with its trust policy, inline policies and permissions boundary;
//! the functions run as their roles.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{
    DestinationConfig, Environment as LambdaEnv, FunctionCode, OnFailure, Runtime,
};
use aws_sdk_s3::types::{
    Event, FilterRule, FilterRuleName, LambdaFunctionConfiguration, NotificationConfiguration,
    NotificationConfigurationFilter, S3KeyFilter,
};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use pipeline_config::{Environment, StreamMode};
use pipeline_core::metadata;
use rand::RngCore;
use serde_json::{Value, json};

use crate::authz::Model;
use pipeline_ops::{Clients, Stack};

use crate::{ACCOUNT_ID, Error, REGION};

/// The settings that both this provisioner and the Pulumi program express, in the shape of
/// `pulumi/test/fixtures/local-settings.json`: the parity test compares both sides with it.
pub fn expressed_settings(env: &Environment, account_id: &str) -> Value {
    let m = &env.event_source_mapping;
    json!({
        "names": env.names(account_id),
        "eventSourceMapping": {
            "batchSize": m.batch_size,
            "maximumBatchingWindowInSeconds": m.maximum_batching_window_seconds,
            "startingPosition": m.starting_position,
            "parallelizationFactor": m.parallelization_factor,
            "bisectBatchOnFunctionError": m.bisect_batch_on_function_error,
            "maximumRetryAttempts": m.maximum_retry_attempts,
            "maximumRecordAgeInSeconds": m.maximum_record_age_seconds,
            "functionResponseTypes": ["ReportBatchItemFailures"],
        },
        "notification": { "prefix": pipeline_core::keys::RAW_PREFIX, "events": [NOTIFICATION_EVENTS] },
        "transformerAsync": {
            "maximumRetryAttempts": env.transformer_async.maximum_retry_attempts,
            "maximumEventAgeInSeconds": env.transformer_async.maximum_event_age_seconds,
        },
        "auditorSchedule": {
            "ruleName": pipeline_config::Auditor::schedule_rule(&env.names(account_id).auditor),
            "scheduleExpression": env.auditor.schedule_expression(),
        },
        "metadataTable": {
            "hashKey": metadata::HASH_KEY,
            "ttlAttribute": metadata::TTL_ATTRIBUTE,
            "pendingIndex": {
                "name": metadata::PENDING_INDEX,
                "hashKey": metadata::PENDING_ATTRIBUTE,
                "rangeKey": metadata::WRITTEN_AT_ATTRIBUTE,
                "projectionType": metadata::PENDING_INDEX_PROJECTION,
                "buckets": metadata::PENDING_BUCKETS,
                "values": metadata::pending_values(),
            },
        },
    })
}

const NOTIFICATION_EVENTS: &str = "s3:ObjectCreated:*";

fn sdk<E: ProvideErrorMetadata + std::fmt::Debug>(what: &str, e: E) -> Error {
    Error::Provision(format!(
        "{what}: {}",
        e.message().map_or_else(|| format!("{e:?}"), str::to_owned)
    ))
}

fn exists<E: ProvideErrorMetadata>(e: &E) -> bool {
    matches!(
        e.code(),
        Some(
            "ResourceInUseException"
                | "ResourceConflictException"
                | "BucketAlreadyOwnedByYou"
                | "BucketAlreadyExists"
                | "QueueAlreadyExists"
                | "ResourceExistsException"
        )
    )
}

/// Provisions everything; `packages` holds `stream-processor.zip`, `transformer.zip` and
/// `auditor.zip`. With a
/// model, returns the role ARN of each principal it declares.
pub async fn provision(
    clients: &Clients,
    env: &Environment,
    packages: &Path,
    mut model: Option<Model>,
) -> Result<(Stack, BTreeMap<String, String>), Error> {
    let names = env.names(ACCOUNT_ID);
    if let Some(m) = &model
        && (m.stack != env.name || m.account_id != ACCOUNT_ID || m.region != REGION)
    {
        return Err(Error::Provision(format!(
            "the authorisation model addresses stack `{}` in {} {}, not `{}` in {ACCOUNT_ID} {REGION}; render it with `cargo xtask authz --render`",
            m.stack, m.account_id, m.region, env.name
        )));
    }

    // The customer managed key first: every other resource is encrypted with it.
    if let Some(m) = model.as_mut() {
        let key = m.only("kms-key")?.clone();
        let key_id = kms_key(clients, &key).await?;
        m.bind("kms-key", &key.logical, &key_id)?;
    }
    let kms_of = |kind: &str, name: &str| {
        model
            .as_ref()
            .and_then(|m| m.resource(kind, name).ok())
            .and_then(|r| r.kms_key_arn.clone())
    };
    let policy_of = |kind: &str, name: &str| {
        model
            .as_ref()
            .and_then(|m| m.resource(kind, name).ok())
            .and_then(|r| r.policy.as_ref().map(Value::to_string))
    };

    // Stream.
    let mut create = clients.kinesis.create_stream().stream_name(&names.stream);
    create = match env.stream.mode {
        StreamMode::Provisioned => create.shard_count(env.stream.shards.unwrap_or(1) as i32),
        StreamMode::OnDemand => create.shard_count(1).stream_mode_details(
            aws_sdk_kinesis::types::StreamModeDetails::builder()
                .stream_mode(aws_sdk_kinesis::types::StreamMode::OnDemand)
                .build()
                .map_err(|e| Error::Provision(e.to_string()))?,
        ),
    };
    if let Err(e) = create.send().await {
        let e = e.into_service_error();
        if !exists(&e) {
            return Err(sdk("CreateStream", e));
        }
    }
    let stream_arn = wait_stream_active(clients, &names.stream).await?;
    if let Some(key) = kms_of("kinesis-stream", &names.stream) {
        clients
            .kinesis
            .start_stream_encryption()
            .stream_name(&names.stream)
            .encryption_type(aws_sdk_kinesis::types::EncryptionType::Kms)
            .key_id(key)
            .send()
            .await
            .map_err(|e| sdk("StartStreamEncryption", e.into_service_error()))?;
        wait_stream_active(clients, &names.stream).await?;
    }

    // Buckets: private, SSE-KMS with a bucket key and the program's bucket policy.
    for bucket in [&names.raw_bucket, &names.processed_bucket] {
        if let Err(e) = clients.s3.create_bucket().bucket(bucket).send().await {
            let e = e.into_service_error();
            if !exists(&e) {
                return Err(sdk("CreateBucket", e));
            }
        }
        if model.is_some() {
            secure_bucket(
                clients,
                bucket,
                kms_of("s3-bucket", bucket),
                model
                    .as_ref()
                    .and_then(|m| m.resource("s3-bucket", bucket).ok())
                    .and_then(|r| r.bucket_key),
                policy_of("s3-bucket", bucket),
            )
            .await?;
        }
    }

    // Metadata table with the sparse pending index (keys only) and TTL, as
    // `pipeline_core::metadata` defines them.
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
    };
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let created = clients
        .dynamodb
        .create_table()
        .table_name(&names.metadata_table)
        .billing_mode(BillingMode::PayPerRequest)
        .set_sse_specification(kms_of("dynamodb-table", &names.metadata_table).map(|key| {
            aws_sdk_dynamodb::types::SseSpecification::builder()
                .enabled(true)
                .sse_type(aws_sdk_dynamodb::types::SseType::Kms)
                .kms_master_key_id(key)
                .build()
        }))
        .key_schema(
            key(metadata::HASH_KEY, KeyType::Hash).map_err(|e| Error::Provision(e.to_string()))?,
        )
        .attribute_definitions(
            attr(metadata::HASH_KEY).map_err(|e| Error::Provision(e.to_string()))?,
        )
        .attribute_definitions(
            attr(metadata::PENDING_ATTRIBUTE).map_err(|e| Error::Provision(e.to_string()))?,
        )
        .attribute_definitions(
            attr(metadata::WRITTEN_AT_ATTRIBUTE).map_err(|e| Error::Provision(e.to_string()))?,
        )
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(metadata::PENDING_INDEX)
                .key_schema(
                    key(metadata::PENDING_ATTRIBUTE, KeyType::Hash)
                        .map_err(|e| Error::Provision(e.to_string()))?,
                )
                .key_schema(
                    key(metadata::WRITTEN_AT_ATTRIBUTE, KeyType::Range)
                        .map_err(|e| Error::Provision(e.to_string()))?,
                )
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(metadata::PENDING_INDEX_PROJECTION))
                        .build(),
                )
                .build()
                .map_err(|e| Error::Provision(e.to_string()))?,
        )
        .send()
        .await;
    match created {
        Ok(_) => {
            // TTL is a nicety locally: an emulator without it still runs the pipeline.
            let _ = clients
                .dynamodb
                .update_time_to_live()
                .table_name(&names.metadata_table)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .enabled(true)
                        .attribute_name(metadata::TTL_ATTRIBUTE)
                        .build()
                        .map_err(|e| Error::Provision(e.to_string()))?,
                )
                .send()
                .await;
        }
        Err(e) => {
            let e = e.into_service_error();
            if !exists(&e) {
                return Err(sdk("CreateTable", e));
            }
        }
    }

    // Dead-letter queues (14 days) and the alarm topic.
    let queue = |name: String| async move {
        use aws_sdk_sqs::types::QueueAttributeName;
        let mut attributes = HashMap::from([(
            QueueAttributeName::MessageRetentionPeriod,
            "1209600".to_owned(),
        )]);
        if let Some(key) = kms_of("sqs-queue", &name) {
            attributes.insert(QueueAttributeName::KmsMasterKeyId, key);
            attributes.insert(
                QueueAttributeName::KmsDataKeyReusePeriodSeconds,
                "300".into(),
            );
        }
        if let Some(policy) = policy_of("sqs-queue", &name) {
            attributes.insert(QueueAttributeName::Policy, policy);
        }
        let url = clients
            .sqs
            .create_queue()
            .queue_name(&name)
            .set_attributes(Some(attributes.clone()))
            .send()
            .await
            .map_err(|e| sdk("CreateQueue", e.into_service_error()))?
            .queue_url
            .unwrap_or_default();
        // An existing queue keeps its attributes on CreateQueue: bring them up to date.
        clients
            .sqs
            .set_queue_attributes()
            .queue_url(&url)
            .set_attributes(Some(attributes))
            .send()
            .await
            .map_err(|e| sdk("SetQueueAttributes", e.into_service_error()))?;
        let arn = clients
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| sdk("GetQueueAttributes", e.into_service_error()))?
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .unwrap_or_else(|| format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}"));
        Ok::<_, Error>((url, arn))
    };
    let (stream_dlq_url, stream_dlq_arn) = queue(names.stream_dlq.clone()).await?;
    let (transform_dlq_url, transform_dlq_arn) = queue(names.transform_dlq.clone()).await?;
    let mut topic_attributes = HashMap::new();
    if let Some(key) = kms_of("sns-topic", &names.alarm_topic) {
        topic_attributes.insert("KmsMasterKeyId".to_owned(), key);
    }
    let alarm_topic_arn = clients
        .sns
        .create_topic()
        .name(&names.alarm_topic)
        .set_attributes(Some(topic_attributes))
        .send()
        .await
        .map_err(|e| sdk("CreateTopic", e.into_service_error()))?
        .topic_arn
        .unwrap_or_default();
    if let Some(policy) = policy_of("sns-topic", &names.alarm_topic) {
        clients
            .sns
            .set_topic_attributes()
            .topic_arn(&alarm_topic_arn)
            .attribute_name("Policy")
            .attribute_value(policy)
            .send()
            .await
            .map_err(|e| sdk("SetTopicAttributes", e.into_service_error()))?;
    }

    // The HMAC key: random, created once, never printed.
    let mut key_bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut key_bytes);
    let secret_arn = match clients
        .secrets
        .create_secret()
        .name(&names.hmac_secret)
        .set_kms_key_id(kms_of("secret", &names.hmac_secret))
        .secret_string(hex::encode(key_bytes))
        .send()
        .await
    {
        Ok(out) => out.arn.unwrap_or_default(),
        Err(e) => {
            let e = e.into_service_error();
            if !exists(&e) {
                return Err(sdk("CreateSecret", e));
            }
            clients
                .secrets
                .describe_secret()
                .secret_id(&names.hmac_secret)
                .send()
                .await
                .map_err(|e| sdk("DescribeSecret", e.into_service_error()))?
                .arn
                .unwrap_or_default()
        }
    };

    // The roles, now that every ARN their policies name is known.
    let mut roles = BTreeMap::new();
    if let Some(m) = model.as_mut() {
        let secret = m.resource("secret", &names.hmac_secret)?.logical.clone();
        let suffix = secret_arn
            .rsplit_once('-')
            .map(|(_, s)| s.to_owned())
            .ok_or_else(|| {
                Error::Provision(format!("secret ARN without a suffix: {secret_arn}"))
            })?;
        m.bind("secret-suffix", &secret, &suffix)?;
        let unbound = m.unbound(&["kms-key", "secret-suffix"]);
        if !unbound.is_empty() {
            return Err(Error::Provision(format!(
                "the authorisation model still names {}",
                unbound.join(", ")
            )));
        }
        for p in &m.principals {
            role(clients, p).await?;
            roles.insert(p.id.clone(), p.role_arn.clone());
        }
    }
    let role_of = |function: &str| {
        model
            .as_ref()
            .map(|m| m.principal(function).map(|p| p.role_arn.clone()))
            .transpose()
    };

    // Functions, from the packaged zips.
    let common = |extra: &[(&str, String)]| {
        let mut vars: HashMap<String, String> = HashMap::from([
            ("RAW_BUCKET".into(), names.raw_bucket.clone()),
            ("METADATA_TABLE".into(), names.metadata_table.clone()),
            (
                "METADATA_TTL_DAYS".into(),
                env.storage.metadata_ttl_days.to_string(),
            ),
            ("PIPELINE_ENV".into(), env.name.clone()),
        ]);
        for (k, v) in extra {
            vars.insert((*k).into(), v.clone());
        }
        vars
    };
    let sp_env = {
        let mut v = common(&[("RUST_LOG", env.stream_processor.log_level.clone())]);
        v.insert(
            "AWS_LAMBDA_LOG_GROUP_NAME".into(),
            format!("/aws/lambda/{}", names.stream_processor),
        );
        v
    };
    let tf_env = {
        let mut v = common(&[
            ("RUST_LOG", env.transformer.log_level.clone()),
            ("PROCESSED_BUCKET", names.processed_bucket.clone()),
            ("HMAC_SECRET_ID", names.hmac_secret.clone()),
            (
                "LEASE_SECONDS",
                (env.transformer.timeout_seconds + 5).to_string(),
            ),
            // The emulator delivers notifications fast: a short wait for the metadata item keeps
            // failures (and their async retries) quick.
            ("ITEM_WAIT_MS", "3000".to_owned()),
            // As the Pulumi program does: the version is the artifact's SHA-256.
            (
                "TRANSFORM_VERSION",
                zip_sha256(&packages.join("transformer.zip"))?,
            ),
        ]);
        v.insert(
            "AWS_LAMBDA_LOG_GROUP_NAME".into(),
            format!("/aws/lambda/{}", names.transformer),
        );
        v
    };
    let stream_processor_arn = function(
        clients,
        &names.stream_processor,
        role_of(crate::authz::principal::STREAM_PROCESSOR)?,
        &packages.join("stream-processor.zip"),
        &env.stream_processor,
        sp_env,
    )
    .await?;
    let transformer_arn = function(
        clients,
        &names.transformer,
        role_of(crate::authz::principal::TRANSFORMER)?,
        &packages.join("transformer.zip"),
        &env.transformer,
        tf_env,
    )
    .await?;

    // The transformer's asynchronous invocations: retries, maximum age, on-failure destination.
    clients
        .lambda
        .put_function_event_invoke_config()
        .function_name(&names.transformer)
        .maximum_retry_attempts(env.transformer_async.maximum_retry_attempts as i32)
        .maximum_event_age_in_seconds(env.transformer_async.maximum_event_age_seconds as i32)
        .destination_config(
            DestinationConfig::builder()
                .on_failure(OnFailure::builder().destination(&transform_dlq_arn).build())
                .build(),
        )
        .send()
        .await
        .map_err(|e| sdk("PutFunctionEventInvokeConfig", e.into_service_error()))?;
    let _ = clients
        .lambda
        .add_permission()
        .function_name(&names.transformer)
        .statement_id("s3-raw-notifications")
        .action("lambda:InvokeFunction")
        .principal("s3.amazonaws.com")
        .source_account(ACCOUNT_ID)
        .source_arn(format!("arn:aws:s3:::{}", names.raw_bucket))
        .send()
        .await;

    // S3 notification: raw/ → transformer.
    let filter = NotificationConfigurationFilter::builder()
        .key(
            S3KeyFilter::builder()
                .filter_rules(
                    FilterRule::builder()
                        .name(FilterRuleName::Prefix)
                        .value(pipeline_core::keys::RAW_PREFIX)
                        .build(),
                )
                .build(),
        )
        .build();
    let config = NotificationConfiguration::builder()
        .lambda_function_configurations(
            LambdaFunctionConfiguration::builder()
                .id("raw-to-transformer")
                .lambda_function_arn(&transformer_arn)
                .events(Event::from(NOTIFICATION_EVENTS))
                .filter(filter)
                .build()
                .map_err(|e| Error::Provision(e.to_string()))?,
        )
        .build();
    clients
        .s3
        .put_bucket_notification_configuration()
        .bucket(&names.raw_bucket)
        .notification_configuration(config)
        .send()
        .await
        .map_err(|e| sdk("PutBucketNotificationConfiguration", e.into_service_error()))?;

    // The auditor, and the EventBridge rule that runs it (the emulator fires `rate()` rules).
    let auditor_env = HashMap::from([
        ("RAW_BUCKET".to_owned(), names.raw_bucket.clone()),
        ("METADATA_TABLE".to_owned(), names.metadata_table.clone()),
        ("TRANSFORMER_FUNCTION".to_owned(), names.transformer.clone()),
        (
            "STUCK_AFTER_MINUTES".to_owned(),
            env.storage.stuck_after_minutes.to_string(),
        ),
        (
            "AUDIT_PERIOD_MINUTES".to_owned(),
            env.auditor.period_minutes.to_string(),
        ),
        (
            "LOOKBACK_HOURS".to_owned(),
            env.auditor.lookback_hours.to_string(),
        ),
        ("PIPELINE_ENV".to_owned(), env.name.clone()),
        ("RUST_LOG".to_owned(), env.auditor.log_level.clone()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME".to_owned(),
            format!("/aws/lambda/{}", names.auditor),
        ),
    ]);
    let auditor_arn = function(
        clients,
        &names.auditor,
        role_of(crate::authz::principal::AUDITOR)?,
        &packages.join("auditor.zip"),
        &env.auditor.function(),
        auditor_env,
    )
    .await?;
    let audit_schedule_rule = pipeline_config::Auditor::schedule_rule(&names.auditor);
    let rule_arn = clients
        .events
        .put_rule()
        .name(&audit_schedule_rule)
        .schedule_expression(env.auditor.schedule_expression())
        .state(aws_sdk_eventbridge::types::RuleState::Enabled)
        .description("Runs the auditor: stuck raw objects are re-driven to the transformer")
        .send()
        .await
        .map_err(|e| sdk("PutRule", e.into_service_error()))?
        .rule_arn
        .unwrap_or_else(|| {
            format!("arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{audit_schedule_rule}")
        });
    let target = aws_sdk_eventbridge::types::Target::builder()
        .id("auditor")
        .arn(&auditor_arn)
        .build()
        .map_err(|e| Error::Provision(e.to_string()))?;
    let put = clients
        .events
        .put_targets()
        .rule(&audit_schedule_rule)
        .targets(target)
        .send()
        .await
        .map_err(|e| sdk("PutTargets", e.into_service_error()))?;
    if put.failed_entry_count() > 0 {
        return Err(Error::Provision(format!(
            "PutTargets of {audit_schedule_rule}: {:?}",
            put.failed_entries()
        )));
    }
    let _ = clients
        .lambda
        .add_permission()
        .function_name(&names.auditor)
        .statement_id("eventbridge-schedule")
        .action("lambda:InvokeFunction")
        .principal("events.amazonaws.com")
        .source_arn(&rule_arn)
        .send()
        .await;

    // Alarms: any message in a dead-letter queue, any function error, any stuck raw object.
    for queue in [&names.stream_dlq, &names.transform_dlq] {
        alarm(
            clients,
            &format!("{queue}-not-empty"),
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            "QueueName",
            queue,
            &alarm_topic_arn,
        )
        .await?;
    }
    for function in [&names.stream_processor, &names.transformer, &names.auditor] {
        alarm(
            clients,
            &format!("{function}-errors"),
            "AWS/Lambda",
            "Errors",
            "FunctionName",
            function,
            &alarm_topic_arn,
        )
        .await?;
    }

    alarm(
        clients,
        &format!("{}-stuck-objects", names.auditor),
        pipeline_aws::emf::NAMESPACE,
        "StuckObjects",
        "Function",
        &names.auditor,
        &alarm_topic_arn,
    )
    .await?;

    let stack = Stack {
        environment: env.name.clone(),
        endpoint: clients.endpoint.clone(),
        stream: names.stream,
        stream_arn,
        raw_bucket: names.raw_bucket,
        processed_bucket: names.processed_bucket,
        metadata_table: names.metadata_table,
        stream_processor: names.stream_processor,
        stream_processor_arn,
        transformer: names.transformer,
        transformer_arn,
        auditor: names.auditor,
        auditor_arn,
        audit_schedule_rule,
        stream_dlq_url,
        stream_dlq_arn,
        transform_dlq_url,
        transform_dlq_arn,
        alarm_topic_arn,
        hmac_secret: names.hmac_secret,
    };
    Ok((stack, roles))
}

/// The customer managed key with the program's key policy, and its alias; returns the key id.
async fn kms_key(clients: &Clients, key: &crate::authz::Resource) -> Result<String, Error> {
    if let Some(alias) = &key.alias
        && let Ok(found) = clients.kms.describe_key().key_id(alias).send().await
        && let Some(meta) = found.key_metadata
    {
        if let Some(policy) = &key.policy {
            clients
                .kms
                .put_key_policy()
                .key_id(&meta.key_id)
                .policy(policy.to_string())
                .send()
                .await
                .map_err(|e| sdk("PutKeyPolicy", e.into_service_error()))?;
        }
        return Ok(meta.key_id);
    }
    // Its tags are what the roles' permissions boundary conditions on (`aws:ResourceTag/*`).
    let tags = key
        .rest
        .get("tags")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            aws_sdk_kms::types::Tag::builder()
                .tag_key(k)
                .tag_value(v.as_str()?)
                .build()
                .ok()
        })
        .collect::<Vec<_>>();
    let created = clients
        .kms
        .create_key()
        .description(format!("{} (local)", key.logical))
        .set_tags((!tags.is_empty()).then_some(tags))
        .set_policy(key.policy.as_ref().map(Value::to_string))
        .send()
        .await
        .map_err(|e| sdk("CreateKey", e.into_service_error()))?;
    let key_id = created
        .key_metadata
        .map(|m| m.key_id)
        .ok_or_else(|| Error::Provision("CreateKey returned no key".into()))?;
    if let Some(alias) = &key.alias {
        clients
            .kms
            .create_alias()
            .alias_name(alias)
            .target_key_id(&key_id)
            .send()
            .await
            .map_err(|e| sdk("CreateAlias", e.into_service_error()))?;
    }
    Ok(key_id)
}

/// Public access blocked, SSE-KMS (with an S3 Bucket Key when the program asks), the bucket policy.
async fn secure_bucket(
    clients: &Clients,
    bucket: &str,
    kms_key: Option<String>,
    bucket_key: Option<bool>,
    policy: Option<String>,
) -> Result<(), Error> {
    use aws_sdk_s3::types::{
        PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
        ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    };
    clients
        .s3
        .put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .block_public_policy(true)
                .ignore_public_acls(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .map_err(|e| sdk("PutPublicAccessBlock", e.into_service_error()))?;
    if let Some(key) = kms_key {
        let by_default = ServerSideEncryptionByDefault::builder()
            .sse_algorithm(ServerSideEncryption::AwsKms)
            .kms_master_key_id(key)
            .build()
            .map_err(|e| Error::Provision(e.to_string()))?;
        clients
            .s3
            .put_bucket_encryption()
            .bucket(bucket)
            .server_side_encryption_configuration(
                ServerSideEncryptionConfiguration::builder()
                    .rules(
                        ServerSideEncryptionRule::builder()
                            .apply_server_side_encryption_by_default(by_default)
                            .bucket_key_enabled(bucket_key.unwrap_or(false))
                            .build(),
                    )
                    .build()
                    .map_err(|e| Error::Provision(e.to_string()))?,
            )
            .send()
            .await
            .map_err(|e| sdk("PutBucketEncryption", e.into_service_error()))?;
    }
    if let Some(policy) = policy {
        clients
            .s3
            .put_bucket_policy()
            .bucket(bucket)
            .policy(policy)
            .send()
            .await
            .map_err(|e| sdk("PutBucketPolicy", e.into_service_error()))?;
    }
    Ok(())
}

/// A role with the program's trust policy, inline policies and permissions boundary.
async fn role(clients: &Clients, p: &crate::authz::Principal) -> Result<(), Error> {
    let boundary = match &p.permissions_boundary {
        Some(b) => {
            let name = b.arn.rsplit('/').next().unwrap_or(&b.arn).to_owned();
            if let Err(e) = clients
                .iam
                .create_policy()
                .policy_name(&name)
                .policy_document(b.document.to_string())
                .send()
                .await
            {
                let e = e.into_service_error();
                if e.code() != Some("EntityAlreadyExists") {
                    return Err(sdk("CreatePolicy", e));
                }
            }
            Some(b.arn.clone())
        }
        None => None,
    };
    let trust = p.trust_policy.to_string();
    if let Err(e) = clients
        .iam
        .create_role()
        .role_name(&p.role_name)
        .assume_role_policy_document(&trust)
        .set_permissions_boundary(boundary.clone())
        .send()
        .await
    {
        let e = e.into_service_error();
        if e.code() != Some("EntityAlreadyExists") {
            return Err(sdk("CreateRole", e));
        }
        clients
            .iam
            .update_assume_role_policy()
            .role_name(&p.role_name)
            .policy_document(&trust)
            .send()
            .await
            .map_err(|e| sdk("UpdateAssumeRolePolicy", e.into_service_error()))?;
        if let Some(arn) = &boundary {
            clients
                .iam
                .put_role_permissions_boundary()
                .role_name(&p.role_name)
                .permissions_boundary(arn)
                .send()
                .await
                .map_err(|e| sdk("PutRolePermissionsBoundary", e.into_service_error()))?;
        }
    }
    for policy in &p.policies {
        clients
            .iam
            .put_role_policy()
            .role_name(&p.role_name)
            .policy_name(&policy.name)
            .policy_document(policy.document.to_string())
            .send()
            .await
            .map_err(|e| sdk("PutRolePolicy", e.into_service_error()))?;
    }
    Ok(())
}

async fn wait_stream_active(clients: &Clients, stream: &str) -> Result<String, Error> {
    for _ in 0..100 {
        let d = clients
            .kinesis
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .map_err(|e| sdk("DescribeStreamSummary", e.into_service_error()))?;
        if let Some(s) = d.stream_description_summary
            && s.stream_status == aws_sdk_kinesis::types::StreamStatus::Active
        {
            return Ok(s.stream_arn);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Error::Provision(format!(
        "stream {stream} did not become ACTIVE"
    )))
}

async fn function(
    clients: &Clients,
    name: &str,
    role: Option<String>,
    zip: &Path,
    settings: &pipeline_config::Function,
    vars: HashMap<String, String>,
) -> Result<String, Error> {
    let code = std::fs::read(zip).map_err(|e| {
        Error::Provision(format!(
            "reading {}: {e}; build the zips with `cargo xtask package`",
            zip.display()
        ))
    })?;
    let env = LambdaEnv::builder().set_variables(Some(vars)).build();
    let created = clients
        .lambda
        .create_function()
        .function_name(name)
        .runtime(Runtime::Providedal2023)
        .handler("bootstrap")
        .role(
            role.clone()
                .unwrap_or_else(|| format!("arn:aws:iam::{ACCOUNT_ID}:role/{name}")),
        )
        .memory_size(settings.memory_mb as i32)
        .timeout(settings.timeout_seconds as i32)
        .environment(env.clone())
        .code(
            FunctionCode::builder()
                .zip_file(Blob::new(code.clone()))
                .build(),
        )
        .send()
        .await;
    let arn = match created {
        Ok(out) => out.function_arn.unwrap_or_default(),
        Err(e) => {
            let e = e.into_service_error();
            if !exists(&e) {
                return Err(sdk("CreateFunction", e));
            }
            // Already there: bring code and configuration up to date.
            clients
                .lambda
                .update_function_code()
                .function_name(name)
                .zip_file(Blob::new(code))
                .send()
                .await
                .map_err(|e| sdk("UpdateFunctionCode", e.into_service_error()))?;
            wait_function(clients, name).await?;
            clients
                .lambda
                .update_function_configuration()
                .function_name(name)
                .memory_size(settings.memory_mb as i32)
                .timeout(settings.timeout_seconds as i32)
                .set_role(role)
                .environment(env)
                .send()
                .await
                .map_err(|e| sdk("UpdateFunctionConfiguration", e.into_service_error()))?
                .function_arn
                .unwrap_or_default()
        }
    };
    wait_function(clients, name).await?;
    if let Some(n) = settings.reserved_concurrency {
        clients
            .lambda
            .put_function_concurrency()
            .function_name(name)
            .reserved_concurrent_executions(n as i32)
            .send()
            .await
            .map_err(|e| sdk("PutFunctionConcurrency", e.into_service_error()))?;
    }
    Ok(if arn.is_empty() {
        format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}")
    } else {
        arn
    })
}

/// The lower-case hex SHA-256 of a packaged zip: what a function's artifact digest is.
fn zip_sha256(zip: &Path) -> Result<String, Error> {
    use sha2::Digest;
    let bytes = std::fs::read(zip).map_err(|e| {
        Error::Provision(format!(
            "reading {}: {e}; build the zips with `cargo xtask package`",
            zip.display()
        ))
    })?;
    Ok(hex::encode(sha2::Sha256::digest(&bytes)))
}

async fn wait_function(clients: &Clients, name: &str) -> Result<(), Error> {
    for _ in 0..100 {
        let f = clients
            .lambda
            .get_function()
            .function_name(name)
            .send()
            .await
            .map_err(|e| sdk("GetFunction", e.into_service_error()))?;
        let c = f.configuration;
        let active = c
            .as_ref()
            .and_then(|c| c.state.as_ref())
            .is_none_or(|s| *s == aws_sdk_lambda::types::State::Active);
        let updated = c
            .as_ref()
            .and_then(|c| c.last_update_status.as_ref())
            .is_none_or(|s| *s == aws_sdk_lambda::types::LastUpdateStatus::Successful);
        if active && updated {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Error::Provision(format!(
        "function {name} did not become Active"
    )))
}

async fn alarm(
    clients: &Clients,
    name: &str,
    namespace: &str,
    metric: &str,
    dim: &str,
    value: &str,
    topic: &str,
) -> Result<(), Error> {
    clients
        .cloudwatch
        .put_metric_alarm()
        .alarm_name(name)
        .namespace(namespace)
        .metric_name(metric)
        .dimensions(
            aws_sdk_cloudwatch::types::Dimension::builder()
                .name(dim)
                .value(value)
                .build(),
        )
        .statistic(aws_sdk_cloudwatch::types::Statistic::Maximum)
        .period(60)
        .evaluation_periods(1)
        .threshold(0.0)
        .comparison_operator(aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold)
        .treat_missing_data("notBreaching")
        .alarm_actions(topic)
        .send()
        .await
        .map_err(|e| sdk("PutMetricAlarm", e.into_service_error()))?;
    Ok(())
}

/// The event-source mapping's checkpoint table of a stack: `<project>-<environment>-esm-checkpoints`.
pub fn checkpoint_table_name(env: &Environment) -> String {
    format!("{}-{}-esm-checkpoints", env.project, env.name)
}

/// The event-source mapping's lease and checkpoint table (see `checkpoint.rs`), idempotently:
/// `stream_arn` (partition key) + `shard_id` (sort key), on demand. In AWS the checkpoint is the
/// Lambda service's own state, so the table belongs to no role of the program: it is created
/// and used with the account's root credentials. Returns its name.
pub async fn checkpoint_table(clients: &Clients, env: &Environment) -> Result<String, Error> {
    let name = checkpoint_table_name(env);
    let key = |attribute: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(attribute)
            .key_type(kind)
            .build()
            .map_err(|e| Error::Provision(e.to_string()))
    };
    let attr = |attribute: &str| {
        AttributeDefinition::builder()
            .attribute_name(attribute)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| Error::Provision(e.to_string()))
    };
    let created = clients
        .dynamodb
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("stream_arn", KeyType::Hash)?)
        .key_schema(key("shard_id", KeyType::Range)?)
        .attribute_definitions(attr("stream_arn")?)
        .attribute_definitions(attr("shard_id")?)
        .send()
        .await;
    if let Err(e) = created {
        let e = e.into_service_error();
        if !exists(&e) {
            return Err(sdk("CreateTable (checkpoints)", e));
        }
    }
    for _ in 0..100 {
        let status = clients
            .dynamodb
            .describe_table()
            .table_name(&name)
            .send()
            .await
            .map_err(|e| sdk("DescribeTable (checkpoints)", e.into_service_error()))?
            .table
            .and_then(|t| t.table_status);
        if status == Some(aws_sdk_dynamodb::types::TableStatus::Active) {
            return Ok(name);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Error::Provision(format!(
        "table {name} did not become ACTIVE"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parity with the Pulumi program: both sides must produce the committed fixture from the same
    /// environment file (`pulumi/test/parity.test.ts` checks the other side).
    #[test]
    fn expressed_settings_match_the_pulumi_parity_fixture() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let text = std::fs::read_to_string(root.join("environments/local.toml")).unwrap();
        let env = Environment::from_toml("local.toml", &text).unwrap();
        let fixture: Value = serde_json::from_str(
            &std::fs::read_to_string(root.join("pulumi/test/fixtures/local-settings.json"))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(expressed_settings(&env, ACCOUNT_ID), fixture);
    }
}
