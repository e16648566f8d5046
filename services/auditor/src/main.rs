use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use auditor::{Auditor, LambdaRedrive, Report, Settings};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use pipeline_aws::dynamodb::DynamoStore;
use pipeline_aws::s3::S3Store;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = Settings::from_env(|k| std::env::var(k).ok())?;
    let table = std::env::var("METADATA_TABLE")
        .map_err(|_| pipeline_aws::env::EnvError::Missing("METADATA_TABLE"))?;
    let config = pipeline_aws::load_config(None).await;
    let handler = Auditor::new(
        S3Store::new(&config),
        DynamoStore::new(&config, &table),
        LambdaRedrive::new(&config, &settings.transformer_function),
        settings.clone(),
    );
    let cold = AtomicBool::new(true);
    let (handler, cold, function) = (&handler, &cold, settings.function_name.as_str());
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let started = Instant::now();
        let now = auditor::scheduled_time(&event.payload).unwrap_or_else(chrono::Utc::now);
        let result = handler.audit(now, &event.context.request_id).await;
        let cold_start = cold.swap(false, Ordering::Relaxed);
        // A failed run reports no findings: a zero would read as "nothing stuck".
        let mut metrics = match &result {
            Ok(report) => report.metrics(function, started, cold_start),
            Err(_) => pipeline_aws::emf::Metrics::new(function),
        };
        metrics.count("InvocationsFailed", u64::from(result.is_err()));
        metrics.property("RequestId", event.context.request_id.clone());
        metrics.emit();
        result
            .map_err(Error::from)
            .map(|r: Report| serde_json::to_value(r).unwrap_or(Value::Null))
    }))
    .await
}
