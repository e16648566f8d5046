//! The S3 `ObjectCreated:Put` notification of one object, as S3 delivers it to a function: what
//! the auditor sends the transformer to re-drive an object, and what tests and tools use instead
//! of hand-built copies. The shape is `aws_lambda_events`' `S3Event` (a test checks it parses).

use aws_lambda_events::event::s3::{
    S3Bucket, S3Entity, S3Event, S3EventRecord, S3Object, S3UserIdentity,
};
use chrono::{DateTime, Utc};
use serde_json::Value;

/// The member of a transformer invocation's payload that marks a replay (`cargo xtask replay`):
/// an `ObjectCreated` notification with `"replay": true` beside its `Records`. The transformer then
/// re-transforms an object unless its own version processed the object's current content.
pub const REPLAY_MEMBER: &str = "replay";

/// Whether a payload is a replay's.
pub fn is_replay(payload: &Value) -> bool {
    payload.get(REPLAY_MEMBER).and_then(Value::as_bool) == Some(true)
}

/// One object of a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedObject<'a> {
    pub bucket: &'a str,
    /// The object's key, as stored (it is encoded as S3 encodes notification keys).
    pub key: &'a str,
    pub size: u64,
    /// S3's per-key ordering token, when there is one; a re-drive has none.
    pub sequencer: Option<&'a str>,
}

/// The notification of `objects`, one record each, sent at `event_time` (RFC 3339) in `region`
/// by `principal`: an [`S3Event`] as JSON, keys encoded as S3 encodes them.
pub fn object_created(
    objects: &[CreatedObject<'_>],
    event_time: DateTime<Utc>,
    region: &str,
    principal: &str,
) -> Value {
    let mut event = S3Event::default();
    event.records = objects
        .iter()
        .map(|o| {
            let mut identity = S3UserIdentity::default();
            identity.principal_id = Some(principal.to_owned());
            let mut bucket = S3Bucket::default();
            bucket.name = Some(o.bucket.to_owned());
            bucket.owner_identity = Some(identity.clone());
            bucket.arn = Some(format!("arn:aws:s3:::{}", o.bucket));
            let mut object = S3Object::default();
            object.key = Some(pipeline_core::keys::encode_s3_key(o.key));
            object.size = i64::try_from(o.size).ok();
            object.sequencer = o.sequencer.map(str::to_owned);
            let mut entity = S3Entity::default();
            entity.schema_version = Some("1.0".to_owned());
            entity.configuration_id = Some("raw-to-transformer".to_owned());
            entity.bucket = bucket;
            entity.object = object;
            let mut record = S3EventRecord::default();
            record.event_version = Some("2.1".to_owned());
            record.event_source = Some("aws:s3".to_owned());
            record.aws_region = Some(region.to_owned());
            record.event_time = event_time;
            record.event_name = Some("ObjectCreated:Put".to_owned());
            record.principal_id = identity;
            record.s3 = entity;
            record
        })
        .collect();
    // Serialising plain structs of strings and numbers cannot fail.
    serde_json::to_value(&event).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notification_is_an_s3_event_with_the_key_encoded_as_s3_encodes_it() {
        let key = "raw/dt=2026-11-30/hour=08/shard=shardId-000000000000/49 1.jsonl.gz";
        let value = object_created(
            &[CreatedObject {
                bucket: "b",
                key,
                size: 42,
                sequencer: Some("0067"),
            }],
            "2026-11-30T08:10:00Z".parse().expect("a time"),
            "eu-west-1",
            "auditor",
        );
        let event: S3Event = serde_json::from_value(value).expect("an S3Event");
        let record = &event.records[0];
        assert_eq!(record.event_name.as_deref(), Some("ObjectCreated:Put"));
        assert_eq!(record.s3.bucket.name.as_deref(), Some("b"));
        let encoded = record.s3.object.key.as_deref().unwrap_or_default();
        assert_eq!(
            encoded,
            "raw/dt%3D2026-11-30/hour%3D08/shard%3DshardId-000000000000/49+1.jsonl.gz"
        );
        assert_eq!(
            pipeline_core::keys::decode_s3_key(encoded).as_deref(),
            Ok(key)
        );
        assert_eq!(record.s3.object.size, Some(42));
        assert_eq!(record.s3.object.sequencer.as_deref(), Some("0067"));
    }
}
