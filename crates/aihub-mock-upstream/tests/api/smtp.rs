//! The SMTP sink over a raw TCP conversation: the command sequence, dot-unstuffing, RSET,
//! refusals, and waiting for messages.

use std::time::Duration;

use aihub_mock_upstream::smtp::SmtpSink;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Client {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Client {
    async fn connect(sink: &SmtpSink) -> Self {
        let (r, w) = TcpStream::connect(sink.addr()).await.unwrap().into_split();
        let mut c = Self {
            reader: BufReader::new(r),
            writer: w,
        };
        assert!(c.reply().await.starts_with("220 "));
        c
    }

    /// The whole (possibly multi-line) reply.
    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).await.unwrap();
            assert!(line.ends_with("\r\n"), "{line:?}");
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        self.reply().await
    }
}

#[tokio::test]
async fn a_conversation_stores_the_message() {
    let sink = SmtpSink::start().await.unwrap();
    let mut c = Client::connect(&sink).await;
    assert!(
        c.cmd("MAIL FROM:<a@x>").await.starts_with("503"),
        "EHLO first"
    );
    let ehlo = c.cmd("EHLO client.test").await;
    assert!(
        ehlo.starts_with("250-") && ehlo.contains("250 SIZE"),
        "{ehlo}"
    );
    assert!(c.cmd("NOOP").await.starts_with("250"));
    assert!(
        c.cmd("RCPT TO:<b@x>").await.starts_with("503"),
        "MAIL first"
    );
    assert!(c.cmd("MAIL FROM:<dropped@x>").await.starts_with("250"));
    assert!(c.cmd("RSET").await.starts_with("250"));
    assert!(
        c.cmd("DATA").await.starts_with("503"),
        "RSET forgot the sender"
    );
    assert!(
        c.cmd("mail from:<alerts@aihub.test> BODY=8BITMIME")
            .await
            .starts_with("250")
    );
    assert!(c.cmd("RCPT TO:<one@x>").await.starts_with("250"));
    assert!(c.cmd("RCPT TO:<two@x>").await.starts_with("250"));
    assert!(c.cmd("DATA").await.starts_with("354"));
    let reply = c
        .cmd("Subject: hi\r\n\r\nline one\r\n..leading dot\r\n.")
        .await;
    assert!(reply.starts_with("250"), "{reply}");
    assert!(c.cmd("BOGUS").await.starts_with("500"));
    assert!(c.cmd("QUIT").await.starts_with("221"));

    let mails = sink.wait_for(1, Duration::from_secs(5)).await.unwrap();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].from, "alerts@aihub.test");
    assert_eq!(mails[0].to, vec!["one@x".to_owned(), "two@x".to_owned()]);
    assert_eq!(mails[0].header("subject").as_deref(), Some("hi"));
    assert_eq!(mails[0].body(), "line one\r\n.leading dot\r\n");
}

#[tokio::test]
async fn refusals_are_transient_and_counted() {
    let sink = SmtpSink::start().await.unwrap();
    sink.refuse_next(1);
    let mut c = Client::connect(&sink).await;
    c.cmd("HELO client.test").await;
    for expected in ["451", "250"] {
        assert!(c.cmd("MAIL FROM:<a@x>").await.starts_with("250"));
        assert!(c.cmd("RCPT TO:<b@x>").await.starts_with("250"));
        assert!(c.cmd("DATA").await.starts_with("354"));
        assert!(
            c.cmd("Subject: s\r\n\r\nbody\r\n.")
                .await
                .starts_with(expected)
        );
    }
    assert_eq!(sink.messages().len(), 1);
    // Waiting for more than arrives times out.
    assert!(sink.wait_for(2, Duration::from_millis(100)).await.is_none());
}
