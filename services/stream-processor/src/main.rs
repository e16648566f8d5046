// The handler's future nested in the invocation wrapper's is deeper than the default limit of
// the compiler's layout queries.
#![recursion_limit = "256"]

use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use pipeline_aws::dynamodb::DynamoStore;
use pipeline_aws::emf::Invocations;
use pipeline_aws::s3::S3Store;
use stream_processor::{KinesisBatch, Settings, StreamProcessor};

/// mimalloc, as in every binary of the pipeline (ARCHITECTURE.md, "Allocation").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let invocations = Invocations::new(settings.function_name.clone());
    let (handler, invocations) = (&handler, &invocations);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<KinesisBatch>| async move {
            let id = &event.context.request_id;
            invocations
                .run(id, async {
                    let (response, report) = handler.handle_batch(&event.payload, id).await;
                    (Ok::<KinesisEventResponse, Error>(response), report.metrics)
                })
                .await
        },
    ))
    .await
}
