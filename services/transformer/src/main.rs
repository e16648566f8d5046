use lambda_runtime::{Error, LambdaEvent, service_fn};
use pipeline_aws::dynamodb::DynamoStore;
use pipeline_aws::emf::{Invocations, Metrics};
use pipeline_aws::s3::S3Store;
use pipeline_core::transform::Pseudonymizer;
use serde_json::Value;
use transformer::{Settings, Transformer};

/// mimalloc, as in every binary of the pipeline (ARCHITECTURE.md, "Allocation").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = Settings::from_env(|k| std::env::var(k).ok())?;
    let config = pipeline_aws::load_config(None).await;
    // The key is read once per container: a missing secret is a clear start-up error.
    let secret = |message: String| transformer::Error::Secret {
        secret: settings.hmac_secret_id.clone(),
        message,
    };
    let key = pipeline_aws::secrets::read(&config, &settings.hmac_secret_id)
        .await
        .map_err(|e| secret(e.message))?;
    let pii = Pseudonymizer::new(&key).map_err(|e| secret(e.to_string()))?;
    let handler = Transformer::new(
        S3Store::new(&config),
        DynamoStore::new(&config, &settings.metadata_table),
        pii,
        settings.clone(),
    );
    let invocations = Invocations::new(settings.function_name.clone());
    let (handler, invocations) = (&handler, &invocations);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let id = &event.context.request_id;
        invocations
            .run(id, async {
                match handler.handle(&event.payload, id).await {
                    Ok(report) => {
                        let response = serde_json::to_value(&report).map_err(Error::from);
                        (response, report.metrics)
                    }
                    // The failing record's event logged the error; what the records before it
                    // did is done and idempotent, and counted again by the retry.
                    Err(e) => (Err(Error::from(e)), Metrics::new()),
                }
            })
            .await
    }))
    .await
}
