//! An upstream that serves fixed documents: a real HTTP/1.1 server (hyper) on loopback, so the
//! mask suite can send the gateway exactly the bytes it masks (odd spacing, a 30-digit number,
//! escapes), which a demo bank, answering with serde_json's compact output, never would.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A document: its path, `Content-Type` and body.
pub struct Document {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: String,
}

/// The running server, stopped on drop.
pub struct Documents {
    port: u16,
    server: JoinHandle<()>,
}

impl Documents {
    /// Serves `documents` (anything else is 404) on a port of its own.
    pub async fn start(documents: Vec<Document>) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        let by_path: Arc<HashMap<&'static str, Document>> =
            Arc::new(documents.into_iter().map(|d| (d.path, d)).collect());
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let by_path = by_path.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let answer = answer(&by_path, request.uri().path());
                        async move { Ok::<_, std::convert::Infallible>(answer) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { port, server }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn answer(by_path: &HashMap<&'static str, Document>, path: &str) -> Response<Full<Bytes>> {
    let Some(document) = by_path.get(path) else {
        let mut missing = Response::new(Full::new(Bytes::from_static(b"no such document")));
        *missing.status_mut() = StatusCode::NOT_FOUND;
        return missing;
    };
    Response::builder()
        .header("content-type", document.content_type)
        .header("x-document", document.path)
        .body(Full::new(Bytes::from(document.body.clone())))
        .expect("a valid response")
}

impl Drop for Documents {
    fn drop(&mut self) {
        self.server.abort();
    }
}
