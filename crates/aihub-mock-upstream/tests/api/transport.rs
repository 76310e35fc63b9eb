//! The HTTP layer itself: keep-alive across several requests on one connection, latency, and
//! the server going away when the handle is dropped.

use std::time::{Duration, Instant};

use aihub_mock_upstream::MockOptions;
use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

use crate::helpers::{client, post_openai, start, start_with};

/// Reads one HTTP/1.1 response head and its body (content-length or chunked).
async fn read_response(reader: &mut BufReader<TcpStream>) -> (String, String) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let lower = head.to_ascii_lowercase();
    let mut body = Vec::new();
    if let Some(len) = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
    {
        body.resize(len.trim().parse().unwrap(), 0);
        reader.read_exact(&mut body).await.unwrap();
    } else {
        assert!(lower.contains("transfer-encoding: chunked"), "{head}");
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).await.unwrap();
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).await.unwrap();
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    (head, String::from_utf8(body).unwrap())
}

#[tokio::test]
async fn one_connection_serves_many_requests() {
    let mock = start().await;
    let stream = TcpStream::connect(mock.addr()).await.unwrap();
    let mut reader = BufReader::new(stream);
    for (i, stream) in [false, true, false, true].into_iter().enumerate() {
        let body = json!({"model": "m", "stream": stream, "max_tokens": i + 1,
                          "messages": [{"role": "user", "content": "hi"}]})
        .to_string();
        let request = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: mock\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        reader
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .unwrap();
        let (head, body) = read_response(&mut reader).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(!head.to_ascii_lowercase().contains("connection: close"));
        if stream {
            assert!(body.ends_with("data: [DONE]\n\n"));
        } else {
            assert!(body.contains("chat.completion"));
        }
    }
    assert_eq!(mock.ledger().len(), 4);
    assert!(mock.ledger().iter().all(|e| e.completed));
}

#[tokio::test]
async fn latency_delays_the_headers() {
    let mock = start_with(MockOptions {
        latency: Duration::from_millis(150),
        ..MockOptions::default()
    })
    .await;
    let started = Instant::now();
    let response = post_openai(
        &mock,
        "/v1/chat/completions",
        &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn chunk_interval_paces_the_stream() {
    let mock = start_with(MockOptions {
        chunk_interval: Duration::from_millis(20),
        default_max_tokens: 5,
        ..MockOptions::default()
    })
    .await;
    let started = Instant::now();
    let text = post_openai(
        &mock,
        "/v1/chat/completions",
        &json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await
    .text()
    .await
    .unwrap();
    // role + 5 words + finish + [DONE]: 7 gaps.
    assert!(started.elapsed() >= Duration::from_millis(140));
    assert_eq!(text.matches("data: ").count(), 8);
    assert!(text.contains("\"finish_reason\":\"stop\""));
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let mock = start().await;
    let url = mock.url();
    assert!(url.starts_with("http://127.0.0.1:"));
    assert_eq!(
        client()
            .get(format!("{url}/v1/models"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    drop(mock);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let fresh = reqwest::Client::new();
    assert!(fresh.get(format!("{url}/v1/models")).send().await.is_err());
}
