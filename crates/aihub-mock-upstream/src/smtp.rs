//! A local SMTP sink for tests: a real TCP server on `127.0.0.1:0` that speaks enough RFC 5321
//! (greeting, EHLO/HELO, MAIL FROM, RCPT TO, DATA with dot-unstuffing, RSET, NOOP, QUIT) for an
//! ordinary SMTP client, keeps every message it accepts, and can refuse the next few with a
//! transient error to exercise retries. No TLS and no authentication.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::time::Duration;
//! use aihub_mock_upstream::smtp::SmtpSink;
//! let sink = SmtpSink::start().await?;
//! // … point the SMTP client at sink.addr() …
//! let mails = sink.wait_for(1, Duration::from_secs(5)).await.expect("one e-mail");
//! assert_eq!(mails[0].to, vec!["ops@example.com".to_owned()]);
//! # Ok(()) }
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Largest message accepted, advertised with `SIZE`.
const MAX_MESSAGE_BYTES: usize = 10 * 1024 * 1024;
/// Longest command or text line (RFC 5321 asks for 512 and 1000; clients stay well under).
const MAX_LINE_BYTES: usize = 64 * 1024;
/// A client silent for this long is disconnected.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// One message the sink accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The `MAIL FROM` address, without angle brackets (empty for the null sender).
    pub from: String,
    /// The `RCPT TO` addresses, in order.
    pub to: Vec<String>,
    /// The message as sent after `DATA`, dot-unstuffed, lines ending in CRLF, without the final
    /// `.` line.
    pub data: String,
}

impl ReceivedMail {
    /// The first header `name` (case-insensitive), unfolded. Encoded words are left as sent.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        let mut found: Option<String> = None;
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(value) = found.as_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
                continue;
            }
            if found.is_some() {
                break;
            }
            if let Some((n, v)) = line.split_once(':')
                && n.trim().eq_ignore_ascii_case(name)
            {
                found = Some(v.trim().to_owned());
            }
        }
        found
    }

    /// Everything after the header block.
    #[must_use]
    pub fn body(&self) -> &str {
        self.data
            .split_once("\r\n\r\n")
            .map_or("", |(_, body)| body)
    }
}

struct Shared {
    messages: Mutex<Vec<ReceivedMail>>,
    count: watch::Sender<usize>,
    /// Messages still to be refused at the end of `DATA` with a transient `451`.
    refuse: AtomicU32,
}

impl Shared {
    fn messages(&self) -> std::sync::MutexGuard<'_, Vec<ReceivedMail>> {
        self.messages.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running SMTP sink. Dropping it stops the server and drops its connections.
pub struct SmtpSink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for SmtpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSink")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl SmtpSink {
    /// Binds `127.0.0.1:0` and serves in a background task until dropped.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            messages: Mutex::new(Vec::new()),
            count: watch::Sender::new(0),
            refuse: AtomicU32::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(Self { addr, shared, task })
    }

    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    #[must_use]
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every message accepted so far, in order.
    #[must_use]
    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.shared.messages().clone()
    }

    /// Refuses the next `n` messages with `451` (a transient error) after their data is sent.
    pub fn refuse_next(&self, n: u32) {
        self.shared.refuse.store(n, Ordering::SeqCst);
    }

    /// Waits until at least `n` messages were accepted and returns all of them, or `None` if
    /// that does not happen within `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Option<Vec<ReceivedMail>> {
        let mut rx = self.shared.count.subscribe();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n)).await;
        match reached {
            Ok(Ok(_)) => Some(self.messages()),
            _ => None,
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Dropped with this task, so aborting it closes every connection.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let shared = Arc::clone(&shared);
                    connections.spawn(async move {
                        if let Err(e) = session(stream, &shared).await {
                            tracing::debug!(error = %e, "smtp sink session ended");
                        }
                    });
                }
                Err(e) => {
                    tracing::debug!(error = %e, "smtp sink accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
}

/// The envelope of the transaction in progress.
#[derive(Default)]
struct Transaction {
    from: Option<String>,
    to: Vec<String>,
}

async fn session(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    write
        .write_all(b"220 localhost AI Hub test SMTP sink ready\r\n")
        .await?;
    let mut greeted = false;
    let mut tx = Transaction::default();
    loop {
        let Some(line) = read_line(&mut reader).await? else {
            return Ok(());
        };
        let (verb, arg) = match line.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.trim()),
            None => (line.to_ascii_uppercase(), ""),
        };
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => {
                greeted = true;
                tx = Transaction::default();
                let ehlo = format!(
                    "250-localhost greets {arg}\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n\
                     250 SIZE {MAX_MESSAGE_BYTES}\r\n"
                );
                write.write_all(ehlo.as_bytes()).await?;
                continue;
            }
            "HELO" => {
                greeted = true;
                tx = Transaction::default();
                b"250 localhost\r\n"
            }
            "MAIL" if !greeted => b"503 5.5.1 Send EHLO or HELO first\r\n",
            "MAIL" if tx.from.is_some() => b"503 5.5.1 Sender already given\r\n",
            "MAIL" => match path_arg(arg, "FROM:") {
                Some(from) => {
                    tx.from = Some(from);
                    b"250 2.1.0 OK\r\n"
                }
                None => b"501 5.5.4 Syntax: MAIL FROM:<address>\r\n",
            },
            "RCPT" if tx.from.is_none() => b"503 5.5.1 Need MAIL before RCPT\r\n",
            "RCPT" => match path_arg(arg, "TO:") {
                Some(to) if !to.is_empty() => {
                    tx.to.push(to);
                    b"250 2.1.5 OK\r\n"
                }
                _ => b"501 5.5.4 Syntax: RCPT TO:<address>\r\n",
            },
            "DATA" if tx.to.is_empty() => b"503 5.5.1 Need RCPT before DATA\r\n",
            "DATA" => {
                write
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let Some(data) = read_data(&mut reader).await? else {
                    return Ok(());
                };
                let done = std::mem::take(&mut tx);
                if data.len() > MAX_MESSAGE_BYTES {
                    b"552 5.3.4 Message too big\r\n"
                } else if shared
                    .refuse
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    b"451 4.3.0 Try again later\r\n"
                } else {
                    let mail = ReceivedMail {
                        from: done.from.unwrap_or_default(),
                        to: done.to,
                        data,
                    };
                    let count = {
                        let mut messages = shared.messages();
                        messages.push(mail);
                        messages.len()
                    };
                    shared.count.send_replace(count);
                    b"250 2.0.0 OK queued\r\n"
                }
            }
            "RSET" => {
                tx = Transaction::default();
                b"250 2.0.0 OK\r\n"
            }
            "NOOP" => b"250 2.0.0 OK\r\n",
            "VRFY" => b"252 2.1.5 Cannot verify, will accept\r\n",
            "QUIT" => {
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => b"500 5.5.2 Command not recognized\r\n",
        };
        write.write_all(reply).await?;
    }
}

/// `FROM:<a@b> SIZE=1` → `a@b`. The null path `<>` gives an empty string.
fn path_arg(arg: &str, prefix: &str) -> Option<String> {
    let head = arg.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = arg.get(prefix.len()..)?.trim_start();
    let inner = rest.strip_prefix('<')?;
    let end = inner.find('>')?;
    inner.get(..end).map(str::to_owned)
}

/// One line without its line ending; `None` at end of stream.
async fn read_line<R: AsyncBufReadExt + Unpin>(reader: &mut R) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = tokio::time::timeout(
        IDLE_TIMEOUT,
        (&mut *reader)
            .take(MAX_LINE_BYTES as u64)
            .read_until(b'\n', &mut buf),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "idle client"))??;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "line too long",
        ));
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// The message text up to the lone `.` line, dot-unstuffed; `None` if the client went away.
async fn read_data<R: AsyncBufReadExt + Unpin>(reader: &mut R) -> std::io::Result<Option<String>> {
    let mut data = String::new();
    loop {
        let Some(line) = read_line(reader).await? else {
            return Ok(None);
        };
        if line == "." {
            return Ok(Some(data));
        }
        // RFC 5321 4.5.2: a leading dot was doubled by the sender.
        let line = line.strip_prefix('.').unwrap_or(&line);
        // Keep reading past the limit so the client gets its 552 after the final dot.
        if data.len() <= MAX_MESSAGE_BYTES {
            data.push_str(line);
            data.push_str("\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_parsed() {
        assert_eq!(
            path_arg("FROM:<a@b.example> SIZE=10", "FROM:").as_deref(),
            Some("a@b.example")
        );
        assert_eq!(path_arg("to: <x@y>", "TO:").as_deref(), Some("x@y"));
        assert_eq!(path_arg("FROM:<>", "FROM:").as_deref(), Some(""));
        assert_eq!(path_arg("FROM:a@b", "FROM:"), None);
        assert_eq!(path_arg("TO:<x@y>", "FROM:"), None);
    }

    #[test]
    fn headers_unfold_and_body_follows() {
        let m = ReceivedMail {
            from: String::new(),
            to: vec![],
            data: "Subject: a\r\n b\r\nTo: x@y\r\n\r\nhello\r\n".into(),
        };
        assert_eq!(m.header("subject").as_deref(), Some("a b"));
        assert_eq!(m.header("TO").as_deref(), Some("x@y"));
        assert_eq!(m.header("from"), None);
        assert_eq!(m.body(), "hello\r\n");
    }
}
