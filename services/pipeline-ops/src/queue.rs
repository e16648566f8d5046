//! Reading every message of an SQS queue: what reconciliation counts and what redrive works
//! through.
//!
//! SQS has no way to list a queue. A receive with a visibility timeout of 0 leaves the messages
//! visible, so the next receive may answer the same ones: the local emulator always answers the
//! first ten, and SQS answers a sample of its servers, so a loop of such receives cannot know it
//! has seen every message. So each receive **hides** what it returns (a peek hides it just long
//! enough for the read: [`Hold::Peek`]), every later receive answers messages not yet seen, and
//! the read ends when [`EMPTY_RECEIVES`] receives in a row bring no new message id. The queue's
//! `ApproximateNumberOfMessages` + `ApproximateNumberOfMessagesNotVisible`, taken before the read,
//! then tells whether the read saw everything: [`Read::unseen`] counts what it missed (messages
//! another reader holds, or a count that is only approximate); the caller decides whether that is
//! an error. Messages another peek holds come back within seconds: the read first waits up to
//! `settle` for the queue to have none in flight.

use std::collections::HashSet;
use std::future::Future;
use std::time::{Duration, Instant};

use aws_smithy_types::error::display::DisplayErrorContext;

use crate::{Clients, Error};

/// Receives in a row without a new message id that end a read.
pub const EMPTY_RECEIVES: u32 = 3;

/// How long a read waits, at most, for messages in flight (held by another reader) to come back.
pub const SETTLE: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: String,
    pub receipt: String,
    pub body: String,
    /// When the queue received it (`SentTimestamp`), Unix milliseconds.
    pub sent_at_ms: Option<i64>,
}

/// `ApproximateNumberOfMessages` and `ApproximateNumberOfMessagesNotVisible`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    pub visible: u64,
    pub not_visible: u64,
}

/// The two calls a read makes: the thin port over GetQueueAttributes and ReceiveMessage.
pub trait Queue: Sync {
    fn depth(&self) -> impl Future<Output = Result<Depth, Error>> + Send;
    /// Up to ten messages, hidden for `visibility_timeout` seconds.
    fn receive(
        &self,
        visibility_timeout: i32,
    ) -> impl Future<Output = Result<Vec<Message>, Error>> + Send;
}

/// How long the messages read stay hidden.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Long enough for the read (2 s, and 1 s more per 50 messages); then they are visible again.
    Peek,
    /// For this many seconds: the caller works through them and deletes them.
    Seconds(i32),
}

impl Hold {
    fn seconds(self, expected: u64) -> i32 {
        match self {
            Hold::Peek => i32::try_from(2 + expected / 50)
                .unwrap_or(i32::MAX)
                .min(43_200),
            Hold::Seconds(s) => s,
        }
    }
}

/// What a read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub messages: Vec<Message>,
    /// The queue's approximate number of messages (visible and in flight) before the read.
    pub expected: u64,
}

impl Read {
    /// Messages the queue counted that the read did not see.
    pub fn unseen(&self) -> u64 {
        self.expected.saturating_sub(self.messages.len() as u64)
    }
}

/// Reads every message of `queue` (see the module's documentation).
pub async fn read_all(queue: &impl Queue, hold: Hold, settle: Duration) -> Result<Read, Error> {
    let started = Instant::now();
    let mut depth = queue.depth().await?;
    while depth.not_visible > 0 && started.elapsed() < settle {
        tokio::time::sleep(Duration::from_millis(250)).await;
        depth = queue.depth().await?;
    }
    let expected = depth.visible + depth.not_visible;
    let visibility = hold.seconds(expected);
    let mut seen = HashSet::new();
    let mut messages = Vec::new();
    let mut empty = 0;
    while empty < EMPTY_RECEIVES {
        let mut new = 0;
        for m in queue.receive(visibility).await? {
            if seen.insert(m.id.clone()) {
                new += 1;
                messages.push(m);
            }
        }
        empty = if new == 0 { empty + 1 } else { 0 };
    }
    Ok(Read { messages, expected })
}

/// An SQS queue through the SDK.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    pub fn new(clients: &Clients, url: &str) -> Self {
        SqsQueue {
            client: clients.sqs.clone(),
            url: url.to_owned(),
        }
    }
}

impl Queue for SqsQueue {
    async fn depth(&self) -> Result<Depth, Error> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| Error::aws("sqs GetQueueAttributes", DisplayErrorContext(e)))?;
        let attrs = out.attributes.unwrap_or_default();
        let get = |a: A| {
            attrs
                .get(&a)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(Depth {
            visible: get(A::ApproximateNumberOfMessages),
            not_visible: get(A::ApproximateNumberOfMessagesNotVisible),
        })
    }

    async fn receive(&self, visibility_timeout: i32) -> Result<Vec<Message>, Error> {
        use aws_sdk_sqs::types::MessageSystemAttributeName;
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(10)
            .visibility_timeout(visibility_timeout)
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(|e| Error::aws("sqs ReceiveMessage", DisplayErrorContext(e)))?;
        out.messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| match (m.message_id, m.receipt_handle) {
                (Some(id), Some(receipt)) => Ok(Message {
                    id,
                    receipt,
                    body: m.body.unwrap_or_default(),
                    sent_at_ms: m
                        .attributes
                        .as_ref()
                        .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                        .and_then(|t| t.parse().ok()),
                }),
                _ => Err(Error::aws(
                    "sqs ReceiveMessage",
                    "a message without an id or a receipt handle",
                )),
            })
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
    use std::sync::Mutex;

    use super::*;

    /// A queue as the local emulator keeps one: a receive answers the first ten visible messages
    /// and hides them when the visibility timeout is not 0 (for the rest of the test: a read is
    /// shorter than any timeout here).
    #[derive(Default)]
    pub(crate) struct Fake {
        /// (id, body, hidden)
        messages: Mutex<Vec<(String, String, bool)>>,
        pub(crate) receives: Mutex<u32>,
    }

    impl Fake {
        pub(crate) fn with(bodies: impl IntoIterator<Item = String>) -> Fake {
            Fake {
                messages: Mutex::new(
                    bodies
                        .into_iter()
                        .enumerate()
                        .map(|(i, b)| (format!("m{i}"), b, false))
                        .collect(),
                ),
                receives: Mutex::new(0),
            }
        }

        /// Another reader holds the first `n` messages.
        pub(crate) fn hold(&self, n: usize) {
            for m in self.messages.lock().unwrap().iter_mut().take(n) {
                m.2 = true;
            }
        }
    }

    impl Queue for Fake {
        async fn depth(&self) -> Result<Depth, Error> {
            let m = self.messages.lock().unwrap();
            let hidden = m.iter().filter(|m| m.2).count() as u64;
            Ok(Depth {
                visible: m.len() as u64 - hidden,
                not_visible: hidden,
            })
        }

        async fn receive(&self, visibility_timeout: i32) -> Result<Vec<Message>, Error> {
            *self.receives.lock().unwrap() += 1;
            let mut all = self.messages.lock().unwrap();
            Ok(all
                .iter_mut()
                .filter(|m| !m.2)
                .take(10)
                .map(|m| {
                    m.2 = visibility_timeout > 0;
                    Message {
                        id: m.0.clone(),
                        receipt: format!("receipt-{}", m.0),
                        body: m.1.clone(),
                        sent_at_ms: None,
                    }
                })
                .collect())
        }
    }

    use test_support::block_on as block;

    #[test]
    fn a_read_sees_every_message_not_the_first_ten() {
        let queue = Fake::with((0..25).map(|i| format!("body {i}")));
        let read = block(read_all(&queue, Hold::Peek, Duration::ZERO)).unwrap();
        assert_eq!(read.messages.len(), 25);
        assert_eq!((read.expected, read.unseen()), (25, 0));
        let ids: HashSet<_> = read.messages.iter().map(|m| m.id.clone()).collect();
        assert_eq!(ids.len(), 25);
        assert_eq!(
            *queue.receives.lock().unwrap(),
            3 + EMPTY_RECEIVES,
            "three receives of ten, then the empty ones that end the read"
        );
    }

    #[test]
    fn messages_another_reader_holds_are_counted_as_unseen() {
        let queue = Fake::with((0..12).map(|i| format!("body {i}")));
        queue.hold(5);
        let read = block(read_all(&queue, Hold::Peek, Duration::ZERO)).unwrap();
        assert_eq!((read.messages.len(), read.unseen()), (7, 5));
    }

    #[test]
    fn an_empty_queue_reads_empty() {
        let queue = Fake::default();
        let read = block(read_all(&queue, Hold::Seconds(300), Duration::ZERO)).unwrap();
        assert_eq!((read.messages.len(), read.unseen()), (0, 0));
    }

    #[test]
    fn a_peek_hides_messages_for_seconds_that_grow_with_the_queue() {
        assert_eq!(Hold::Peek.seconds(0), 2);
        assert_eq!(Hold::Peek.seconds(1_000), 22);
        assert_eq!(Hold::Seconds(300).seconds(1_000), 300);
    }
}
