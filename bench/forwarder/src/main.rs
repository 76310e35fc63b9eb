//! `aihub-bench-forwarder LISTEN UPSTREAM`: accepts HTTP/1.1 on `LISTEN` (`127.0.0.1:PORT`) and
//! forwards every request, unchanged, to `UPSTREAM` (`127.0.0.1:PORT`) through a pooled
//! keep-alive client, streaming the answer back. The benchmark's floor: the least any proxy
//! built on hyper and Tokio spends per request on this machine.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

type Upstream = Client<HttpConnector, Incoming>;
type Body = BoxBody<Bytes, hyper::Error>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(listen), Some(upstream), None) = (args.first(), args.get(1), args.get(2)) else {
        return usage();
    };
    let (Ok(listen), Ok(upstream)) = (listen.parse(), upstream.parse()) else {
        return usage();
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    match runtime.block_on(serve(listen, upstream)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn usage() -> ExitCode {
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        b"usage: aihub-bench-forwarder LISTEN_ADDR UPSTREAM_ADDR (e.g. 127.0.0.1:9000 127.0.0.1:9001)\n",
    );
    ExitCode::from(2)
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    let _ = std::io::Write::write_fmt(
        &mut std::io::stderr(),
        format_args!("aihub-bench-forwarder: {e}\n"),
    );
    ExitCode::FAILURE
}

/// Accepts connections until the process is stopped.
async fn serve(listen: SocketAddr, upstream: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    run(listener, upstream).await
}

async fn run(listener: TcpListener, upstream: SocketAddr) -> std::io::Result<()> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Upstream = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build(connector);
    let authority = http::uri::Authority::try_from(upstream.to_string())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        let authority = authority.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| forward(client.clone(), authority.clone(), req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Sends `req` on to the upstream with only its URI made absolute; a failure is a 502.
async fn forward(
    client: Upstream,
    authority: http::uri::Authority,
    mut req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Body>, Infallible> {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(http::uri::Scheme::HTTP);
    parts.authority = Some(authority);
    parts.path_and_query = req.uri().path_and_query().cloned();
    let Ok(uri) = http::Uri::from_parts(parts) else {
        return Ok(bad_gateway());
    };
    *req.uri_mut() = uri;
    match client.request(req).await {
        Ok(resp) => Ok(resp.map(BodyExt::boxed)),
        Err(_) => Ok(bad_gateway()),
    }
}

fn bad_gateway() -> hyper::Response<Body> {
    let mut resp = hyper::Response::new(
        Full::new(Bytes::from_static(b"bad gateway"))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = http::StatusCode::BAD_GATEWAY;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One raw HTTP/1.1 exchange on a fresh connection; returns the whole reply.
    async fn exchange(addr: SocketAddr, request: &str) -> String {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        conn.read_to_end(&mut out).await.unwrap();
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn forwards_method_path_headers_and_body_and_answers_502_without_upstream() {
        // The upstream: echoes what it received as its body.
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream_addr = upstream.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (stream, _) = upstream.accept().await.unwrap();
                tokio::spawn(async move {
                    let service = service_fn(|req: hyper::Request<Incoming>| async move {
                        let head = format!(
                            "{} {} auth={:?} ",
                            req.method(),
                            req.uri(),
                            req.headers().get("authorization")
                        );
                        let body = req.into_body().collect().await?.to_bytes();
                        let mut echo = head.into_bytes();
                        echo.extend_from_slice(&body);
                        Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from(echo))))
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front_addr = front.local_addr().unwrap();
        tokio::spawn(run(front, upstream_addr));

        let reply = exchange(
            front_addr,
            "POST /v1/chat/completions?x=1 HTTP/1.1\r\nhost: a\r\nauthorization: Bearer k\r\n\
             content-length: 5\r\nconnection: close\r\n\r\nhello",
        )
        .await;
        assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
        assert!(
            reply.ends_with("POST /v1/chat/completions?x=1 auth=Some(\"Bearer k\") hello"),
            "{reply}"
        );

        // No upstream: a 502, and the forwarder keeps serving.
        let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gone_addr = gone.local_addr().unwrap();
        drop(gone);
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front_addr = front.local_addr().unwrap();
        tokio::spawn(run(front, gone_addr));
        for _ in 0..2 {
            let reply = exchange(
                front_addr,
                "GET /x HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
            )
            .await;
            assert!(reply.starts_with("HTTP/1.1 502 Bad Gateway"), "{reply}");
        }
    }
}
