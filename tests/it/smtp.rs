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

/// One MIME entity of a received email, parsed just enough to check what a mail client sees:
/// headers (unfolded), the media type, the parts of a multipart, a leaf's decoded body.
#[derive(Debug)]
#[allow(dead_code)]
pub struct Mime {
    pub headers: Vec<(String, String)>,
    /// Lower case, without parameters: `multipart/alternative`, `text/plain`, `image/png`.
    pub media_type: String,
    pub parts: Vec<Mime>,
    /// A leaf's body, decoded from quoted-printable or base64.
    pub body: Vec<u8>,
}

#[allow(dead_code)]
impl Mime {
    pub fn parse(text: &str) -> Mime {
        let text = text.replace("\r\n", "\n");
        let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
        let mut mime = Mime {
            headers,
            media_type: String::new(),
            parts: Vec::new(),
            body: Vec::new(),
        };
        let content_type = mime
            .header("Content-Type")
            .unwrap_or("text/plain")
            .to_string();
        mime.media_type = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if mime.media_type.starts_with("multipart/") {
            let boundary = content_type
                .split(';')
                .filter_map(|p| p.trim().strip_prefix("boundary="))
                .next()
                .expect("a multipart has a boundary")
                .trim_matches('"')
                .to_string();
            let delimiter = format!("--{boundary}");
            let mut current: Option<String> = None;
            for line in body.lines() {
                if line == delimiter || line == format!("{delimiter}--") {
                    if let Some(part) = current.take() {
                        mime.parts.push(Mime::parse(&part));
                    }
                    if line == delimiter {
                        current = Some(String::new());
                    }
                } else if let Some(part) = current.as_mut() {
                    part.push_str(line);
                    part.push('\n');
                }
            }
        } else {
            mime.body = match mime
                .header("Content-Transfer-Encoding")
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("base64") => {
                    use bitcoin::base64::Engine;
                    let compact: String = body.split_whitespace().collect();
                    bitcoin::base64::engine::general_purpose::STANDARD
                        .decode(compact)
                        .expect("valid base64")
                }
                Some("quoted-printable") => quoted_printable(body),
                _ => body.as_bytes().to_vec(),
            };
        }
        mime
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The tree of media types, e.g. `multipart/alternative[text/plain,text/html]`.
    pub fn structure(&self) -> String {
        if self.parts.is_empty() {
            return self.media_type.clone();
        }
        let parts: Vec<String> = self.parts.iter().map(Mime::structure).collect();
        format!("{}[{}]", self.media_type, parts.join(","))
    }

    /// Every leaf, depth first.
    pub fn leaves(&self) -> Vec<&Mime> {
        if self.parts.is_empty() {
            return vec![self];
        }
        self.parts.iter().flat_map(Mime::leaves).collect()
    }

    /// The decoded text of the first leaf of `media_type`.
    pub fn text(&self, media_type: &str) -> Option<String> {
        self.leaves()
            .into_iter()
            .find(|l| l.media_type == media_type)
            .map(|l| String::from_utf8_lossy(&l.body).into_owned())
    }

    /// Checks what every satflow email must be: MIME 1.0, with a text and an HTML version of
    /// one content, each image shown inline from the HTML.
    pub fn assert_readable(&self) {
        assert_eq!(self.header("MIME-Version"), Some("1.0"), "{self:#?}");
        assert!(self.header("Date").is_some(), "{self:#?}");
        let alternative = if self.media_type == "multipart/alternative" {
            self
        } else {
            assert_eq!(self.media_type, "multipart/mixed", "{}", self.structure());
            &self.parts[0]
        };
        assert_eq!(
            alternative.media_type,
            "multipart/alternative",
            "{}",
            self.structure()
        );
        assert_eq!(
            alternative.parts[0].media_type,
            "text/plain",
            "{}",
            self.structure()
        );
        let html = &alternative.parts[1];
        let html_leaf = match html.media_type.as_str() {
            "text/html" => html,
            "multipart/related" => {
                for image in &html.parts[1..] {
                    let cid = image
                        .header("Content-ID")
                        .expect("an inline image has a Content-ID");
                    let cid = cid.trim_matches(['<', '>']);
                    let page = String::from_utf8_lossy(&html.parts[0].body);
                    assert!(page.contains(&format!("cid:{cid}")), "the HTML shows {cid}");
                }
                &html.parts[0]
            }
            other => panic!("the second alternative is {other}: {}", self.structure()),
        };
        assert_eq!(html_leaf.media_type, "text/html", "{}", self.structure());
    }
}

fn quoted_printable(body: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in body.split('\n') {
        let (line, soft) = match line.strip_suffix('=') {
            Some(l) => (l, true),
            None => (line, false),
        };
        let bytes = line.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'='
                && i + 2 < bytes.len()
                && let Ok(b) = u8::from_str_radix(&line[i + 1..i + 3], 16)
            {
                out.push(b);
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        if !soft {
            out.push(b'\n');
        }
    }
    out
}
