//! The event-source mapping's checkpoints, kept as the Kinesis Client Library keeps them: one lease
//! item per shard in a DynamoDB table (`<project>-<environment>-esm-checkpoints`, created by the
//! provisioner; key: stream ARN + shard id) holding the checkpoint (the highest sequence number
//! up to which every record is acknowledged or dead-lettered, or `SHARD_END` once a closed shard
//! is done), the lease's owner and its counter.
//!
//! A mapping takes a shard's lease when it starts (the counter moves on, fencing off the previous
//! owner), resumes after the checkpoint, and writes each checkpoint on the condition that the lease
//! is still the one it holds (owner and counter): a mapping whose lease another has taken fails
//! its next write with [`Error::Lease`] and stops, so two mappings never both move one shard on.
//!
//! In AWS the checkpoint is Lambda's own, internal state, not the function's: the table is read and
//! written with the account's root credentials (`Local::admin`), never with the stream
//! processor's role, which only reads the stream and sends to its on-failure queue.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::{Clients, Error};

/// The checkpoint of a closed shard whose records are all done.
pub const SHARD_END: &str = "SHARD_END";

/// Where a shard's mapping resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checkpoint {
    /// Every record up to and including this sequence number is acknowledged or dead-lettered.
    After(String),
    /// The shard is closed and every record of it is done.
    ShardEnd,
}

impl Checkpoint {
    fn to_attribute(&self) -> String {
        match self {
            Checkpoint::After(seq) => seq.clone(),
            Checkpoint::ShardEnd => SHARD_END.to_owned(),
        }
    }

    fn from_attribute(s: &str) -> Checkpoint {
        if s == SHARD_END {
            Checkpoint::ShardEnd
        } else {
            Checkpoint::After(s.to_owned())
        }
    }
}

/// A shard's lease as its holder knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub shard_id: String,
    pub owner: String,
    /// Moves on with every write; a write is conditional on the value its writer read.
    pub counter: u64,
    pub checkpoint: Option<Checkpoint>,
}

/// Where the mapping keeps its leases and checkpoints.
pub trait CheckpointStore: Send + Sync {
    /// Takes the shard's lease for `owner` (a new lease has no checkpoint); the previous owner's
    /// next write fails.
    fn take(
        &self,
        shard_id: &str,
        owner: &str,
    ) -> impl Future<Output = Result<Lease, Error>> + Send;
    /// Writes `checkpoint` if `lease` is still the shard's lease; returns the lease after it.
    /// Fails with [`Error::Lease`] when another owner has taken it.
    fn save(
        &self,
        lease: &Lease,
        checkpoint: Checkpoint,
    ) -> impl Future<Output = Result<Lease, Error>> + Send;
    /// The shard's checkpoint, whoever holds its lease.
    fn checkpoint(
        &self,
        shard_id: &str,
    ) -> impl Future<Output = Result<Option<Checkpoint>, Error>> + Send;
}

fn lost(lease: &Lease) -> Error {
    Error::Lease(format!(
        "the lease of {} is no longer {}'s (another event-source mapping took it); this one stops",
        lease.shard_id, lease.owner
    ))
}

/// No store: a mapping that only delivers what it is given (redrive).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCheckpoints;

impl CheckpointStore for NoCheckpoints {
    async fn take(&self, shard_id: &str, owner: &str) -> Result<Lease, Error> {
        Ok(Lease {
            shard_id: shard_id.to_owned(),
            owner: owner.to_owned(),
            counter: 0,
            checkpoint: None,
        })
    }

    async fn save(&self, lease: &Lease, checkpoint: Checkpoint) -> Result<Lease, Error> {
        Ok(Lease {
            checkpoint: Some(checkpoint),
            ..lease.clone()
        })
    }

    async fn checkpoint(&self, _shard_id: &str) -> Result<Option<Checkpoint>, Error> {
        Ok(None)
    }
}

/// In memory, with the same conditional writes; every write is kept, for tests.
#[derive(Debug, Clone, Default)]
pub struct MemoryCheckpoints {
    inner: Arc<Mutex<Memory>>,
}

#[derive(Debug, Default)]
struct Memory {
    leases: BTreeMap<String, Lease>,
    writes: Vec<(String, Checkpoint)>,
    /// Saves to fail before the next one succeeds, per shard.
    failures: HashMap<String, usize>,
}

impl MemoryCheckpoints {
    fn memory(&self) -> Result<std::sync::MutexGuard<'_, Memory>, Error> {
        self.inner
            .lock()
            .map_err(|_| Error::Lease("the in-memory checkpoint store is poisoned".into()))
    }

    /// Every checkpoint written, in order: (shard id, checkpoint).
    pub fn writes(&self) -> Vec<(String, Checkpoint)> {
        self.memory().map(|m| m.writes.clone()).unwrap_or_default()
    }

    /// The shard's lease as the store holds it.
    pub fn lease(&self, shard_id: &str) -> Option<Lease> {
        self.memory()
            .ok()
            .and_then(|m| m.leases.get(shard_id).cloned())
    }

    /// A shard whose checkpoint is already `checkpoint` (as another mapping left it).
    pub fn set(&self, shard_id: &str, checkpoint: Checkpoint) {
        if let Ok(mut m) = self.memory() {
            let lease = m.leases.entry(shard_id.to_owned()).or_insert(Lease {
                shard_id: shard_id.to_owned(),
                owner: "earlier".into(),
                counter: 1,
                checkpoint: None,
            });
            lease.checkpoint = Some(checkpoint);
        }
    }

    /// The next `n` saves of the shard fail as a throttled request would.
    pub fn fail_next_saves(&self, shard_id: &str, n: usize) {
        if let Ok(mut m) = self.memory() {
            m.failures.insert(shard_id.to_owned(), n);
        }
    }
}

impl CheckpointStore for MemoryCheckpoints {
    async fn take(&self, shard_id: &str, owner: &str) -> Result<Lease, Error> {
        let mut m = self.memory()?;
        let lease = m.leases.entry(shard_id.to_owned()).or_insert(Lease {
            shard_id: shard_id.to_owned(),
            owner: owner.to_owned(),
            counter: 0,
            checkpoint: None,
        });
        lease.owner = owner.to_owned();
        lease.counter += 1;
        Ok(lease.clone())
    }

    async fn save(&self, lease: &Lease, checkpoint: Checkpoint) -> Result<Lease, Error> {
        let mut m = self.memory()?;
        if let Some(n) = m.failures.get_mut(&lease.shard_id)
            && *n > 0
        {
            *n -= 1;
            return Err(Error::aws(
                "dynamodb UpdateItem",
                "ProvisionedThroughputExceededException",
            ));
        }
        let held = m
            .leases
            .get_mut(&lease.shard_id)
            .filter(|l| l.owner == lease.owner && l.counter == lease.counter)
            .ok_or_else(|| lost(lease))?;
        held.counter += 1;
        held.checkpoint = Some(checkpoint.clone());
        let next = held.clone();
        m.writes.push((lease.shard_id.clone(), checkpoint));
        Ok(next)
    }

    async fn checkpoint(&self, shard_id: &str) -> Result<Option<Checkpoint>, Error> {
        Ok(self
            .memory()?
            .leases
            .get(shard_id)
            .and_then(|l| l.checkpoint.clone()))
    }
}

/// The lease table in DynamoDB: one item per shard, `stream_arn` (partition key) + `shard_id`
/// (sort key), with `checkpoint`, `owner` and `lease_counter`.
#[derive(Debug, Clone)]
pub struct DynamoCheckpoints {
    client: aws_sdk_dynamodb::Client,
    table: String,
    stream_arn: String,
}

impl DynamoCheckpoints {
    /// `clients` are the account's root: the checkpoint is the Lambda service's own state.
    pub fn new(clients: &Clients, table: &str, stream_arn: &str) -> Self {
        DynamoCheckpoints {
            client: clients.dynamodb.clone(),
            table: table.to_owned(),
            stream_arn: stream_arn.to_owned(),
        }
    }

    fn key(&self, shard_id: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (
                "stream_arn".to_owned(),
                AttributeValue::S(self.stream_arn.clone()),
            ),
            (
                "shard_id".to_owned(),
                AttributeValue::S(shard_id.to_owned()),
            ),
        ])
    }

    async fn item(&self, shard_id: &str) -> Result<Option<Lease>, Error> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(self.key(shard_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| Error::aws("dynamodb GetItem (checkpoint)", DisplayErrorContext(e)))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        let counter = item
            .get("lease_counter")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| {
                Error::Lease(format!(
                    "the lease item of {shard_id} in {} has no lease_counter",
                    self.table
                ))
            })?;
        Ok(Some(Lease {
            shard_id: shard_id.to_owned(),
            owner: s("owner").unwrap_or_default(),
            counter,
            checkpoint: s("checkpoint").as_deref().map(Checkpoint::from_attribute),
        }))
    }
}

fn conditional_failed<E: ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

impl CheckpointStore for DynamoCheckpoints {
    async fn take(&self, shard_id: &str, owner: &str) -> Result<Lease, Error> {
        // Two tries: another mapping may create or take the lease between the read and the write.
        for _ in 0..2 {
            match self.item(shard_id).await? {
                None => {
                    let mut item = self.key(shard_id);
                    item.insert("owner".into(), AttributeValue::S(owner.to_owned()));
                    item.insert("lease_counter".into(), AttributeValue::N("1".into()));
                    match self
                        .client
                        .put_item()
                        .table_name(&self.table)
                        .set_item(Some(item))
                        .condition_expression("attribute_not_exists(shard_id)")
                        .send()
                        .await
                    {
                        Ok(_) => {
                            return Ok(Lease {
                                shard_id: shard_id.to_owned(),
                                owner: owner.to_owned(),
                                counter: 1,
                                checkpoint: None,
                            });
                        }
                        Err(e) if e.as_service_error().is_some_and(conditional_failed) => continue,
                        Err(e) => {
                            return Err(Error::aws(
                                "dynamodb PutItem (lease)",
                                DisplayErrorContext(e),
                            ));
                        }
                    }
                }
                Some(held) => {
                    match self
                        .client
                        .update_item()
                        .table_name(&self.table)
                        .set_key(Some(self.key(shard_id)))
                        .update_expression("SET #owner = :owner, lease_counter = :next")
                        .condition_expression("lease_counter = :counter")
                        .expression_attribute_names("#owner", "owner")
                        .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()))
                        .expression_attribute_values(
                            ":counter",
                            AttributeValue::N(held.counter.to_string()),
                        )
                        .expression_attribute_values(
                            ":next",
                            AttributeValue::N((held.counter + 1).to_string()),
                        )
                        .send()
                        .await
                    {
                        Ok(_) => {
                            return Ok(Lease {
                                owner: owner.to_owned(),
                                counter: held.counter + 1,
                                ..held
                            });
                        }
                        Err(e) if e.as_service_error().is_some_and(conditional_failed) => continue,
                        Err(e) => {
                            return Err(Error::aws(
                                "dynamodb UpdateItem (lease)",
                                DisplayErrorContext(e),
                            ));
                        }
                    }
                }
            }
        }
        Err(Error::Lease(format!(
            "another event-source mapping keeps taking the lease of {shard_id}"
        )))
    }

    async fn save(&self, lease: &Lease, checkpoint: Checkpoint) -> Result<Lease, Error> {
        match self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(&lease.shard_id)))
            .update_expression("SET #checkpoint = :checkpoint, lease_counter = :next")
            .condition_expression("#owner = :owner AND lease_counter = :counter")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#checkpoint", "checkpoint")
            .expression_attribute_values(
                ":checkpoint",
                AttributeValue::S(checkpoint.to_attribute()),
            )
            .expression_attribute_values(":owner", AttributeValue::S(lease.owner.clone()))
            .expression_attribute_values(":counter", AttributeValue::N(lease.counter.to_string()))
            .expression_attribute_values(
                ":next",
                AttributeValue::N((lease.counter + 1).to_string()),
            )
            .send()
            .await
        {
            Ok(_) => Ok(Lease {
                counter: lease.counter + 1,
                checkpoint: Some(checkpoint),
                ..lease.clone()
            }),
            Err(e) if e.as_service_error().is_some_and(conditional_failed) => Err(lost(lease)),
            Err(e) => Err(Error::aws(
                "dynamodb UpdateItem (checkpoint)",
                DisplayErrorContext(e),
            )),
        }
    }

    async fn checkpoint(&self, shard_id: &str) -> Result<Option<Checkpoint>, Error> {
        Ok(self.item(shard_id).await?.and_then(|l| l.checkpoint))
    }
}
