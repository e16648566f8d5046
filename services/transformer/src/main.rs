use lambda_runtime::{Error, LambdaEvent, service_fn};
use pipeline_aws::dynamodb::DynamoStore;
use pipeline_aws::emf::Invocations;
use pipeline_aws::s3::S3Store;
use pipeline_core::transform::Pseudonymizer;
use serde_json::Value;
use transformer::{Report, Settings, Transformer};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = Settings::from_env(|k| std::env::var(k).ok())?;
    let config = pipeline_aws::load_config(None).await;
    // The key is read once per container: a missing secret is a clear start-up error.
    let key = read_secret(&config, &settings.hmac_secret_id).await?;
    let pii = Pseudonymizer::new(&key).map_err(|e| transformer::Error::Secret {
        secret: settings.hmac_secret_id.clone(),
        message: e.to_string(),
    })?;
    let handler = Transformer::new(
        S3Store::new(&config),
        DynamoStore::new(&config, &settings.metadata_table),
        pii,
        settings.clone(),
    );
    let invocations = Invocations::new(settings.function_name.clone());
    let (handler, invocations) = (&handler, &invocations);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let invocation = invocations.start(event.context.request_id.clone());
        let result = handler
            .handle(&event.payload, &event.context.request_id)
            .await;
        let report = result.as_ref().cloned().unwrap_or_default();
        let mut metrics = report.metrics(invocation.function());
        metrics.count("InvocationsFailed", u64::from(result.is_err()));
        invocation.finish(metrics);
        result
            .map_err(Error::from)
            .map(|r: Report| serde_json::to_value(r).unwrap_or(Value::Null))
    }))
    .await
}

async fn read_secret(
    config: &aws_config::SdkConfig,
    secret_id: &str,
) -> Result<Vec<u8>, transformer::Error> {
    let client = aws_sdk_secretsmanager::Client::new(config);
    let out = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| transformer::Error::Secret {
            secret: secret_id.to_owned(),
            message: aws_smithy_types::error::display::DisplayErrorContext(&e).to_string(),
        })?;
    match (out.secret_string(), out.secret_binary()) {
        (Some(s), _) if !s.is_empty() => Ok(s.as_bytes().to_vec()),
        (_, Some(b)) if !b.as_ref().is_empty() => Ok(b.as_ref().to_vec()),
        _ => Err(transformer::Error::Secret {
            secret: secret_id.to_owned(),
            message: "the secret has no value".to_owned(),
        }),
    }
}
