//! Reading a secret's value from Secrets Manager, once per container.

use aws_smithy_types::error::display::DisplayErrorContext;

/// A secret that could not be read, or has no value.
#[derive(Debug, thiserror::Error)]
#[error("secret {secret} cannot be read: {message}")]
pub struct SecretError {
    pub secret: String,
    pub message: String,
}

/// The secret's value: its string, or else its binary; an empty secret is an error.
pub async fn read(config: &aws_config::SdkConfig, secret_id: &str) -> Result<Vec<u8>, SecretError> {
    let error = |message: String| SecretError {
        secret: secret_id.to_owned(),
        message,
    };
    let out = aws_sdk_secretsmanager::Client::new(config)
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| error(DisplayErrorContext(&e).to_string()))?;
    value(out.secret_string(), out.secret_binary().map(|b| b.as_ref()))
        .ok_or_else(|| error("the secret has no value".to_owned()))
}

fn value(string: Option<&str>, binary: Option<&[u8]>) -> Option<Vec<u8>> {
    match (string, binary) {
        (Some(s), _) if !s.is_empty() => Some(s.as_bytes().to_vec()),
        (_, Some(b)) if !b.is_empty() => Some(b.to_vec()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_string_comes_first_then_the_binary_and_nothing_is_no_value() {
        assert_eq!(value(Some("k"), Some(b"b")), Some(b"k".to_vec()));
        assert_eq!(value(Some(""), Some(b"b")), Some(b"b".to_vec()));
        assert_eq!(value(None, Some(b"b")), Some(b"b".to_vec()));
        assert_eq!(value(Some(""), Some(b"")), None);
        assert_eq!(value(None, None), None);
    }
}
