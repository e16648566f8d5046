//! What a tool needs to find a stack: its resources' names, ARNs and queue URLs, for the local
//! stack (written by its provisioner) and for a deployed one (read from the Pulumi outputs).

use serde::{Deserialize, Serialize};

/// Everything the tools need to find a stack.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stack {
    pub environment: String,
    pub endpoint: String,
    pub stream: String,
    pub stream_arn: String,
    pub raw_bucket: String,
    pub processed_bucket: String,
    pub metadata_table: String,
    pub stream_processor: String,
    pub stream_processor_arn: String,
    pub transformer: String,
    pub transformer_arn: String,
    pub auditor: String,
    pub auditor_arn: String,
    /// The EventBridge rule that runs the auditor on its schedule.
    pub audit_schedule_rule: String,
    pub stream_dlq_url: String,
    pub stream_dlq_arn: String,
    pub transform_dlq_url: String,
    pub transform_dlq_arn: String,
    pub alarm_topic_arn: String,
    pub hmac_secret: String,
}

impl Stack {
    /// The stack's region, from its stream's ARN.
    pub fn region(&self) -> &str {
        arn_part(&self.stream_arn, 3)
    }

    /// The stack's account, from its stream's ARN.
    pub fn account_id(&self) -> &str {
        arn_account(&self.stream_arn)
    }
}

/// The account of an ARN (`arn:partition:service:region:account:resource`); empty if it has none.
pub fn arn_account(arn: &str) -> &str {
    arn_part(arn, 4)
}

fn arn_part(arn: &str, i: usize) -> &str {
    arn.split(':').nth(i).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn region_and_account_come_from_the_stream_arn() {
        let stack = super::Stack {
            stream_arn: "arn:aws:kinesis:eu-central-1:123456789012:stream/eventpipe-dev-events"
                .into(),
            ..Default::default()
        };
        assert_eq!(stack.region(), "eu-central-1");
        assert_eq!(stack.account_id(), "123456789012");
        assert_eq!(super::arn_account("not-an-arn"), "");
    }
}
