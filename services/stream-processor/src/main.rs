use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use pipeline_aws::dynamodb::DynamoStore;
use pipeline_aws::s3::S3Store;
use stream_processor::{KinesisBatch, Settings, StreamProcessor};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = Settings::from_env(|k| std::env::var(k).ok())?;
    let config = pipeline_aws::load_config(None).await;
    let handler = StreamProcessor::new(
        S3Store::new(&config),
        DynamoStore::new(&config, &settings.metadata_table),
        settings.clone(),
    );
    let cold = AtomicBool::new(true);
    let (handler, cold, function) = (&handler, &cold, settings.function_name.as_str());
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<KinesisBatch>| async move {
            let started = Instant::now();
            let (response, report) = handler
                .handle_batch(
                    &event.payload,
                    &event.context.request_id,
                    chrono::Utc::now(),
                )
                .await;
            let mut metrics =
                report.metrics(function, started, cold.swap(false, Ordering::Relaxed));
            metrics.property("RequestId", event.context.request_id.clone());
            metrics.emit();
            Ok::<KinesisEventResponse, Error>(response)
        },
    ))
    .await
}
