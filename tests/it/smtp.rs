//! A minimal SMTP server on loopback that accepts every message and keeps it, so emails are
//! tested over the real protocol. It speaks just enough ESMTP for lettre: no TLS, no auth. It
//! can also refuse at one stage (`MAIL`, `RCPT`, or `DATA` once the message is sent) with a
//! given reply, for the outcomes of SMTP replies.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    messages: Arc<Mutex<Vec<String>>>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        SmtpSink::start_with(None).await
    }

    /// A server answering `reply` (e.g. `451 4.3.0 try again`) at `stage`.
    #[allow(dead_code)]
    pub async fn start_failing(stage: &'static str, reply: &'static str) -> SmtpSink {
        SmtpSink::start_with(Some((stage, reply))).await
    }

    async fn start_with(fail: Option<(&'static str, &'static str)>) -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let store = Arc::clone(&messages);
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let (read, mut write) = socket.into_split();
                    let mut lines = BufReader::new(read).lines();
                    write.write_all(b"220 sink ESMTP\r\n").await.ok();
                    let mut data: Option<String> = None;
                    while let Ok(Some(line)) = lines.next_line().await {
                        if let Some(body) = data.as_mut() {
                            if line == "." {
                                let message = std::mem::take(body);
                                data = None;
                                if let Some(("DATA", reply)) = fail {
                                    write
                                        .write_all(format!("{reply}\r\n").as_bytes())
                                        .await
                                        .ok();
                                    continue;
                                }
                                store.lock().unwrap().push(message);
                                write.write_all(b"250 queued\r\n").await.ok();
                            } else {
                                body.push_str(line.strip_prefix('.').unwrap_or(&line));
                                body.push('\n');
                            }
                            continue;
                        }
                        let verb = line
                            .split_whitespace()
                            .next()
                            .unwrap_or("")
                            .to_ascii_uppercase();
                        if let Some((stage, reply)) = fail
                            && stage != "DATA"
                            && verb == stage
                        {
                            write
                                .write_all(format!("{reply}\r\n").as_bytes())
                                .await
                                .ok();
                            continue;
                        }
                        let reply: &[u8] = match verb.as_str() {
                            "EHLO" | "HELO" => b"250-sink\r\n250 8BITMIME\r\n",
                            "DATA" => {
                                data = Some(String::new());
                                b"354 go ahead\r\n"
                            }
                            "QUIT" => {
                                write.write_all(b"221 bye\r\n").await.ok();
                                break;
                            }
                            _ => b"250 ok\r\n",
                        };
                        write.write_all(reply).await.ok();
                    }
                });
            }
        });
        SmtpSink { port, messages }
    }

    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }
}
