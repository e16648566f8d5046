//! What the tests of the functions, the model and the benchmarks share, kept out of the
//! production crates: the in-memory object and metadata stores with fault injection (`memory`),
//! with the same conditional writes and item limits as the DynamoDB store, and [`block_on`].

pub mod memory;

use std::future::Future;

/// Runs a future to completion on a fresh current-thread runtime, with timers.
pub fn block_on<F: Future>(f: F) -> F::Output {
    match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt.block_on(f),
        Err(e) => panic!("a test runtime: {e}"),
    }
}
