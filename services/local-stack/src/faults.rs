//! A fault injector between the pipeline (the functions and the tools) and the emulator.
//!
//! An HTTPS proxy on a free loopback port, with the emulator's certificate: every request is
//! forwarded unchanged (signature, host and all) to the emulator, except that a configurable share
//! of them fails the way AWS fails under load or on a bad network:
//!
//! - S3 `503 SlowDown` and `500 InternalError`; DynamoDB `ProvisionedThroughputExceededException`
//!   and `ThrottlingException`; Kinesis `ProvisionedThroughputExceededException` — answered
//!   before the request reaches the emulator, in the service's own protocol;
//! - a connection reset before the request is forwarded;
//! - a **lost response after the request took effect**: forwarded, applied, and the connection
//!   reset instead of the answer, so the caller retries a write that already happened.
//!
//! STS is never faulted (a role session is how a caller gets to act at all); neither is anything
//! that does not name a service in its SigV4 credential scope.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pipeline_ops::faults::{Fault, Stats};
use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;

use crate::Error;

/// What to inject: the share of requests that fail, and the seed of the choice.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    pub rate: f64,
    pub seed: u64,
}

/// The faults a service can get.
fn faults_for(service: &str, write: bool) -> Vec<Fault> {
    let mut out = match service {
        "s3" => vec![Fault::SlowDown, Fault::InternalError],
        "dynamodb" => vec![Fault::ProvisionedThroughputExceeded, Fault::Throttling],
        "kinesis" => vec![Fault::ProvisionedThroughputExceeded],
        _ => Vec::new(),
    };
    out.push(Fault::ConnectionReset);
    if write {
        out.push(Fault::LostResponseAfterWrite);
    }
    out
}

/// The service a SigV4 request is signed for: `Credential=<key>/<date>/<region>/<service>/aws4_request`.
pub fn signed_service(authorization: &str) -> Option<&str> {
    let scope = authorization.split("Credential=").nth(1)?;
    let scope = scope.split([',', ' ']).next()?;
    scope.split('/').nth(3)
}

/// Whether the request changes something (and so can take effect before its response is lost).
fn is_write(method: &http::Method, target: Option<&str>) -> bool {
    if let Some(target) = target {
        let op = target.rsplit('.').next().unwrap_or(target);
        return !(op.starts_with("Get")
            || op.starts_with("Describe")
            || op.starts_with("List")
            || op.starts_with("Query")
            || op.starts_with("Scan")
            || op.starts_with("Receive"));
    }
    !matches!(*method, http::Method::GET | http::Method::HEAD)
}

/// The body AWS answers a fault with, in the service's protocol.
fn fault_response(fault: Fault, service: &str) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (fault, service) {
        (Fault::SlowDown, _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "application/xml",
            "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>".to_owned(),
        ),
        (Fault::InternalError, _) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "application/xml",
            "<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error>".to_owned(),
        ),
        (Fault::ProvisionedThroughputExceeded, "dynamodb") => (
            StatusCode::BAD_REQUEST,
            "application/x-amz-json-1.0",
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"The level of configured provisioned throughput for the table was exceeded."}"#.to_owned(),
        ),
        (Fault::Throttling, _) => (
            StatusCode::BAD_REQUEST,
            "application/x-amz-json-1.0",
            r#"{"__type":"com.amazon.coral.availability#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}"#.to_owned(),
        ),
        (Fault::ProvisionedThroughputExceeded, _) => (
            StatusCode::BAD_REQUEST,
            "application/x-amz-json-1.1",
            r#"{"__type":"ProvisionedThroughputExceededException","message":"Rate exceeded for shard."}"#.to_owned(),
        ),
        // The others never produce a response.
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "text/plain", String::new()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    response
}

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    pub endpoint: String,
    stats: Arc<Mutex<Stats>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    upstream: String,
    plan: Plan,
    rng: Mutex<rand::rngs::StdRng>,
    stats: Arc<Mutex<Stats>>,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// Why a connection is cut instead of answered.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Cut(&'static str);

impl FaultProxy {
    /// Listens on `127.0.0.1:port` with the certificate `certificate`/`key` and forwards to
    /// `upstream` (`https://127.0.0.1:<emulator port>`), trusting `ca`.
    pub async fn start(
        port: u16,
        upstream: &str,
        certificate: &Path,
        key: &Path,
        ca: &Path,
        plan: Plan,
    ) -> Result<FaultProxy, Error> {
        use rustls_pki_types::pem::PemObject;
        let e = |what: &str, e: &dyn std::fmt::Display| {
            Error::Emulator(format!("fault injector: {what}: {e}"))
        };
        let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(certificate)
            .map_err(|x| e("reading its certificate", &x))?
            .collect::<Result<_, _>>()
            .map_err(|x| e("reading its certificate", &x))?;
        let private = rustls_pki_types::PrivateKeyDer::from_pem_file(key)
            .map_err(|x| e("reading its key", &x))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|x| e("tls", &x))?
            .with_no_client_auth()
            .with_single_cert(certs, private)
            .map_err(|x| e("tls", &x))?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));

        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca)
            .map_err(|x| e("reading the CA", &x))?
        {
            roots
                .add(cert.map_err(|x| e("reading the CA", &x))?)
                .map_err(|x| e("trusting the CA", &x))?;
        }
        let client_tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|x| e("tls", &x))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(client_tls)
            .https_only()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);

        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .map_err(|x| e(&format!("listening on 127.0.0.1:{port}"), &x))?;
        let stats = Arc::new(Mutex::new(Stats::default()));
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            plan,
            rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(plan.seed)),
            stats: stats.clone(),
            client,
        });
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, shared) = (acceptor.clone(), shared.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { handle(&shared, req).await }
                    });
                    // A cut connection ends here with an error: that is the fault.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Ok(FaultProxy {
            endpoint: format!("https://127.0.0.1:{port}"),
            stats,
            task,
        })
    }

    pub fn stats(&self) -> Stats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Cut> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|_| Cut("the request body was cut"))?
        .to_bytes();
    let service = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(signed_service)
        .map(str::to_owned);
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok());
    let write = is_write(&parts.method, target);
    let fault = match service.as_deref() {
        Some(s) if s != "sts" => {
            let mut rng = shared.rng.lock().map_err(|_| Cut("poisoned"))?;
            if rng.random::<f64>() < shared.plan.rate {
                let choices = faults_for(s, write);
                Some(choices[rng.random_range(0..choices.len())])
            } else {
                None
            }
        }
        _ => None,
    };
    if let Ok(mut stats) = shared.stats.lock() {
        stats.requests += 1;
        if let (Some(f), Some(s)) = (fault, &service) {
            *stats
                .faults
                .entry(s.clone())
                .or_default()
                .entry(f)
                .or_default() += 1;
        }
    }
    let service = service.unwrap_or_default();
    match fault {
        Some(Fault::ConnectionReset) => return Err(Cut("connection reset (injected)")),
        Some(
            f @ (Fault::SlowDown
            | Fault::InternalError
            | Fault::ProvisionedThroughputExceeded
            | Fault::Throttling),
        ) => {
            return Ok(fault_response(f, &service));
        }
        _ => {}
    }
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let uri: http::Uri = format!("{}{path}", shared.upstream)
        .parse()
        .map_err(|_| Cut("an unforwardable URI"))?;
    let mut upstream = Request::builder().method(parts.method.clone()).uri(uri);
    for (name, value) in &parts.headers {
        upstream = upstream.header(name, value);
    }
    let upstream = upstream
        .body(Full::new(body))
        .map_err(|_| Cut("an unforwardable request"))?;
    let response = shared
        .client
        .request(upstream)
        .await
        .map_err(|_| Cut("the emulator did not answer"))?;
    if fault == Some(Fault::LostResponseAfterWrite) {
        // The write happened; its answer never arrives.
        return Err(Cut("response lost after the write (injected)"));
    }
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|_| Cut("the emulator's answer was cut"))?
        .to_bytes();
    Ok(Response::from_parts(parts, Full::new(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_is_read_from_the_credential_scope() {
        let auth = "AWS4-HMAC-SHA256 Credential=ASIAXYZ/20261202/us-east-1/dynamodb/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc";
        assert_eq!(signed_service(auth), Some("dynamodb"));
        assert_eq!(signed_service("Bearer x"), None);
    }

    #[test]
    fn reads_are_never_lost_after_the_write_and_each_service_gets_its_own_faults() {
        assert!(!is_write(
            &http::Method::POST,
            Some("DynamoDB_20120810.GetItem")
        ));
        assert!(is_write(
            &http::Method::POST,
            Some("DynamoDB_20120810.UpdateItem")
        ));
        assert!(!is_write(&http::Method::GET, None));
        assert!(is_write(&http::Method::PUT, None));
        assert!(!faults_for("s3", false).contains(&Fault::LostResponseAfterWrite));
        assert!(faults_for("s3", true).contains(&Fault::SlowDown));
        assert!(faults_for("kinesis", true).contains(&Fault::ProvisionedThroughputExceeded));
        assert!(!faults_for("sqs", true).contains(&Fault::SlowDown));
    }

    #[test]
    fn fault_answers_are_in_the_service_protocol() {
        let r = fault_response(Fault::ProvisionedThroughputExceeded, "dynamodb");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            r.headers()[http::header::CONTENT_TYPE],
            "application/x-amz-json-1.0"
        );
        assert_eq!(fault_response(Fault::SlowDown, "s3").status(), 503);
    }
}
