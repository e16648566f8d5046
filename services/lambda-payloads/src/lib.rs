//! The payloads Lambda delivers to our functions, built and read over `aws_lambda_events`' types
//! (one definition of each shape), without the AWS SDK, so that the offline `pipeline` command can
//! use them too:
//! - the Kinesis event of the stream processor (`kinesis`: building one for a batch, reading its
//!   records; `KinesisBatch` reads one in a single pass);
//! - the S3 `ObjectCreated` notification of the transformer (`s3`), as the auditor and replay send
//!   it.

mod batch;
pub mod kinesis;
pub mod s3;

pub use batch::KinesisBatch;
