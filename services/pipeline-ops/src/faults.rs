//! The vocabulary of injected faults and their counts: what a run's report shows when a fault
//! injector (the local stack's proxy) sat between the pipeline and the endpoint.

use std::collections::BTreeMap;

use serde::Serialize;

/// A fault an injector can cause, the way AWS fails under load or on a bad network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    SlowDown,
    InternalError,
    ProvisionedThroughputExceeded,
    Throttling,
    ConnectionReset,
    LostResponseAfterWrite,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::SlowDown => "s3 503 SlowDown",
            Fault::InternalError => "s3 500 InternalError",
            Fault::ProvisionedThroughputExceeded => "ProvisionedThroughputExceededException",
            Fault::Throttling => "ThrottlingException",
            Fault::ConnectionReset => "connection reset",
            Fault::LostResponseAfterWrite => "response lost after the write",
        }
    }
}

/// Counts of what an injector did, by service and fault.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub requests: u64,
    pub faults: BTreeMap<String, BTreeMap<Fault, u64>>,
}

impl Stats {
    pub fn injected(&self) -> u64 {
        self.faults.values().flat_map(BTreeMap::values).sum()
    }
}
