use auditor::{Auditor, LambdaRedrive, Report, Settings};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use pipeline_aws::dynamodb::DynamoStore;
use pipeline_aws::emf::{Invocations, Metrics};
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
    let invocations = Invocations::new(settings.function_name.clone());
    let (handler, invocations) = (&handler, &invocations);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let invocation = invocations.start(event.context.request_id.clone());
        let now = auditor::scheduled_time(&event.payload).unwrap_or_else(chrono::Utc::now);
        let result = handler.audit(now, &event.context.request_id).await;
        // A failed run reports no findings: a zero would read as "nothing stuck".
        let mut metrics = match &result {
            Ok(report) => report.metrics(invocation.function()),
            Err(_) => Metrics::new(invocation.function()),
        };
        metrics.count("InvocationsFailed", u64::from(result.is_err()));
        invocation.finish(metrics);
        result
            .map_err(Error::from)
            .map(|r: Report| serde_json::to_value(r).unwrap_or(Value::Null))
    }))
    .await
}
