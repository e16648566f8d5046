use auditor::{Auditor, LambdaRedrive, Settings};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use pipeline_aws::dynamodb::DynamoStore;
use pipeline_aws::emf::{Invocations, Metrics};
use pipeline_aws::s3::S3Store;
use serde_json::Value;

/// mimalloc, as in every binary of the pipeline (ARCHITECTURE.md, "Allocation").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        let id = &event.context.request_id;
        invocations
            .run(id, async {
                let now = auditor::scheduled_time(&event.payload).unwrap_or_else(chrono::Utc::now);
                match handler.audit(now, id).await {
                    Ok(report) => {
                        let response = serde_json::to_value(&report).map_err(Error::from);
                        (response, report.metrics)
                    }
                    // A failed run reports no findings: a zero would read as "nothing stuck".
                    Err(e) => (Err(Error::from(e)), Metrics::new()),
                }
            })
            .await
    }))
    .await
}
