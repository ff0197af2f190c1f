//! An outbox email payload as a MIME message a mail client shows well: always `MIME-Version`,
//! a text part and an HTML part (`multipart/alternative`); images inside the HTML
//! (`multipart/related`, `cid:` references: the payment QR code, the stacking chart); other
//! attachments beside it (`multipart/mixed`). The HTML is made from the text, so both say the
//! same; the text part is what was composed, unchanged.
//!
//! It never sends and never reads a clock: the `Date:` is the one composed into the payload
//! (the engine's clock, so the demo's emails carry the demo's dates), or lettre's own.

use lettre::Message;
use lettre::message::header::{
    ContentDisposition, ContentId, ContentTransferEncoding, ContentType,
};
use lettre::message::{Body, MultiPart, SinglePart};
use serde::{Deserialize, Serialize};

/// The payload of an `email` item: composed when it was queued (`notify::email`), sent as is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailPayload {
    pub from: String,
    #[serde(default)]
    pub to: Vec<String>,
    pub subject: String,
    pub body: String,
    /// Derived from the outbox key: a resend is recognisably the same message.
    pub message_id: String,
    /// A built-in alert: one that dies does not alert again.
    #[serde(default)]
    pub alert: bool,
    /// When it was composed, in RFC 3339, by the engine's clock (the demo's dates in the demo);
    /// rows from before it was kept have none and get lettre's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(default = "default_filename")]
    pub filename: String,
    #[serde(default = "default_content_type")]
    pub content_type: String,
    #[serde(default)]
    pub base64: String,
}

fn default_filename() -> String {
    "attachment".into()
}

fn default_content_type() -> String {
    "application/octet-stream".into()
}

/// One attachment of the payload, decoded.
struct Part {
    filename: String,
    content_type: ContentType,
    image: bool,
    data: Vec<u8>,
}

impl Part {
    fn is_image(&self) -> bool {
        self.image
    }

    /// The Content-ID the HTML refers to: from the file name, so it is stable across resends.
    fn content_id(&self) -> String {
        let name: String = self
            .filename
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        format!("{name}@satflow")
    }
}

/// The message for an outbox email payload (`from`, `to`, `subject`, `body`, `message_id`,
/// optional `date` in RFC 3339 and `attachments`); the reason when it cannot be made.
pub fn build(payload: &EmailPayload) -> Result<Message, String> {
    let mut builder = Message::builder()
        .from(
            payload
                .from
                .parse()
                .map_err(|e| format!("bad sender: {e}"))?,
        )
        .subject(payload.subject.as_str())
        .message_id(Some(payload.message_id.clone()));
    if let Some(date) = &payload.date {
        let date = chrono::DateTime::parse_from_rfc3339(date)
            .map_err(|e| format!("the email's date {date:?} is not RFC 3339: {e}"))?;
        builder = builder.date(std::time::SystemTime::from(date));
    }
    for to in &payload.to {
        builder = builder.to(to.parse().map_err(|e| format!("bad recipient {to}: {e}"))?);
    }
    let text = payload.body.clone();
    let parts = attachments(payload)?;
    let (images, files): (Vec<&Part>, Vec<&Part>) = parts.iter().partition(|p| p.is_image());

    let html = text_part(ContentType::TEXT_HTML, html(&text, &images));
    let html_and_images = if images.is_empty() {
        None
    } else {
        let mut related = MultiPart::related().singlepart(html.clone());
        for image in &images {
            related = related.singlepart(
                SinglePart::builder()
                    .header(image.content_type.clone())
                    .header(ContentDisposition::inline_with_name(&image.filename))
                    .header(ContentId::from(format!("<{}>", image.content_id())))
                    .body(image.data.clone()),
            );
        }
        Some(related)
    };
    let alternative = MultiPart::alternative().singlepart(text_part(ContentType::TEXT_PLAIN, text));
    let alternative = match html_and_images {
        Some(related) => alternative.multipart(related),
        None => alternative.singlepart(html),
    };
    let body = if files.is_empty() {
        alternative
    } else {
        let mut mixed = MultiPart::mixed().multipart(alternative);
        for file in files {
            mixed = mixed.singlepart(
                lettre::message::Attachment::new(file.filename.clone())
                    .body(file.data.clone(), file.content_type.clone()),
            );
        }
        mixed
    };
    builder
        .multipart(body)
        .map_err(|e| format!("cannot build the email: {e}"))
}

/// A text part, left readable in the raw message (7bit, lines as written: RFC 5322 allows up
/// to 998 characters) when it is ASCII without bare CRs; otherwise quoted-printable, as lettre
/// chooses. (lettre's own choice wraps any line over 76 characters.)
fn text_part(kind: ContentType, text: String) -> SinglePart {
    let plain = text.is_ascii()
        && !text.contains('\0')
        && !text.replace("\r\n", "\n").contains('\r')
        && text.lines().all(|l| l.len() <= 998);
    let body = if plain {
        let crlf = text.replace("\r\n", "\n").replace('\n', "\r\n");
        Body::dangerous_pre_encoded(crlf.into_bytes(), ContentTransferEncoding::SevenBit)
    } else {
        Body::new(text)
    };
    SinglePart::builder().header(kind).body(body)
}

fn attachments(payload: &EmailPayload) -> Result<Vec<Part>, String> {
    use bitcoin::base64::Engine;
    let mut out = Vec::new();
    for a in &payload.attachments {
        let filename = a.filename.clone();
        let kind = a.content_type.as_str();
        let content_type =
            ContentType::parse(kind).map_err(|e| format!("attachment {filename}: {e}"))?;
        let data = bitcoin::base64::engine::general_purpose::STANDARD
            .decode(&a.base64)
            .map_err(|e| format!("attachment {filename}: {e}"))?;
        out.push(Part {
            filename,
            content_type,
            image: kind.trim().to_ascii_lowercase().starts_with("image/"),
            data,
        });
    }
    Ok(out)
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn push_images(body: &mut String, images: &[&Part]) {
    for image in images {
        body.push_str(&format!(
            "<p><img src=\"cid:{}\" alt=\"{}\" style=\"max-width:100%;height:auto\"></p>\n",
            escape(&image.content_id()),
            escape(&image.filename)
        ));
    }
}

/// The HTML of `text`: its paragraphs (blank-line separated) as paragraphs, a paragraph
/// whose lines are all indented (bank details, lists of entries, commands) in a fixed-width
/// font so that its columns stay aligned; the images before the signature (or at the end).
fn html(text: &str, images: &[&Part]) -> String {
    let mut body = String::new();
    let normalized = text.replace("\r\n", "\n");
    // The images go where the message ends, before the signature ("-- satflow, …").
    let paragraphs: Vec<&str> = normalized.split("\n\n").collect();
    let count = paragraphs.len();
    let signature = paragraphs
        .iter()
        .rposition(|p| p.trim_start_matches('\n').starts_with("-- "))
        .unwrap_or(paragraphs.len());
    for (n, paragraph) in paragraphs.into_iter().enumerate() {
        if n == signature {
            push_images(&mut body, images);
        }
        let paragraph = paragraph.trim_matches('\n');
        if paragraph.trim().is_empty() {
            continue;
        }
        let lines: Vec<&str> = paragraph.lines().collect();
        let indented = lines.iter().all(|l| l.starts_with("  "));
        if indented || lines.iter().filter(|l| l.starts_with("  ")).count() * 2 > lines.len() {
            body.push_str(
                "<pre style=\"font-family:ui-monospace,Menlo,Consolas,monospace;font-size:13px;background:#f6f6f6;padding:10px 12px;border-radius:4px;white-space:pre-wrap\">",
            );
            body.push_str(&escape(paragraph));
            body.push_str("</pre>\n");
        } else {
            body.push_str("<p>");
            body.push_str(
                &lines
                    .iter()
                    .map(|l| escape(l))
                    .collect::<Vec<_>>()
                    .join("<br>\n"),
            );
            body.push_str("</p>\n");
        }
    }
    if signature == count {
        push_images(&mut body, images);
    }
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head>\n<body style=\"font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;font-size:15px;line-height:1.45;color:#222;max-width:760px\">\n{body}</body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// The message for a payload in its stored JSON form.
    fn build_value(v: &Value) -> Result<Message, String> {
        build(&serde_json::from_value(v.clone()).map_err(|e| e.to_string())?)
    }

    fn payload() -> Value {
        json!({
            "from": "satflow <satflow@example.com>",
            "to": ["me@example.com"],
            "subject": "satflow: test",
            "body": "Hello <you> & all.\n\n  IBAN:  CH93 0076\n  Ref:   123\n\nBye",
            "message_id": "<abc.satflow@example.com>",
            "date": "2026-12-07T08:00:00Z",
        })
    }

    #[test]
    fn a_plain_email_has_a_text_and_an_html_part_and_the_composed_date() {
        let text = String::from_utf8(build_value(&payload()).unwrap().formatted()).unwrap();
        assert!(text.contains("MIME-Version: 1.0"), "{text}");
        assert!(
            text.contains("Content-Type: multipart/alternative"),
            "{text}"
        );
        assert!(
            text.contains("Content-Type: text/plain; charset=utf-8"),
            "{text}"
        );
        assert!(
            text.contains("Content-Type: text/html; charset=utf-8"),
            "{text}"
        );
        assert!(
            text.contains("Date: Mon, 07 Dec 2026 08:00:00 +0000"),
            "{text}"
        );
        assert!(text.contains("Hello &lt;you&gt; &amp; all."), "{text}");
        assert!(
            text.contains("Content-Transfer-Encoding: 7bit"),
            "readable as it is: {text}"
        );
        assert!(
            text.contains("<pre"),
            "indented lines keep their columns: {text}"
        );
        assert!(!text.contains("multipart/mixed"), "{text}");
    }

    #[test]
    fn images_come_before_the_signature() {
        use bitcoin::base64::Engine;
        let mut p = payload();
        p["body"] = json!("Pay this.\n\n-- satflow, workflow dca, run 1");
        p["attachments"] = json!([{
            "filename": "payment-qr.png", "content_type": "image/png",
            "base64": bitcoin::base64::engine::general_purpose::STANDARD.encode(b"\x89PNG"),
        }]);
        let text = String::from_utf8(build_value(&p).unwrap().formatted()).unwrap();
        let image = text.find("<img").expect("an image");
        let signature = text.find("<p>-- satflow").expect("the signature");
        assert!(text.find("<p>Pay this.</p>").unwrap() < image, "{text}");
        assert!(image < signature, "{text}");
    }

    #[test]
    fn images_are_inline_in_the_html_and_other_files_are_attached() {
        use bitcoin::base64::Engine;
        let b64 = |d: &[u8]| bitcoin::base64::engine::general_purpose::STANDARD.encode(d);
        let mut p = payload();
        p["attachments"] = json!([
            { "filename": "payment-qr.png", "content_type": "image/png", "base64": b64(b"\x89PNG") },
            { "filename": "report.csv", "content_type": "text/csv", "base64": b64(b"a,b") },
        ]);
        let text = String::from_utf8(build_value(&p).unwrap().formatted()).unwrap();
        let at = |s: &str| text.find(s).unwrap_or_else(|| panic!("no {s} in {text}"));
        assert!(at("multipart/mixed") < at("multipart/alternative"));
        assert!(at("multipart/alternative") < at("text/plain"));
        assert!(at("text/plain") < at("multipart/related"));
        assert!(at("multipart/related") < at("text/html"));
        assert!(at("text/html") < at("Content-Type: image/png"));
        assert!(text.contains("cid:payment-qr.png@satflow\""), "{text}");
        assert!(
            text.contains("Content-ID: <payment-qr.png@satflow>"),
            "{text}"
        );
        assert!(
            text.contains("Content-Disposition: inline; filename=\"payment-qr.png\""),
            "{text}"
        );
        assert!(
            text.contains("Content-Disposition: attachment; filename=\"report.csv\""),
            "{text}"
        );
    }

    #[test]
    fn a_bad_date_is_refused_with_the_value() {
        let mut p = payload();
        p["date"] = json!("yesterday");
        assert!(build_value(&p).unwrap_err().contains("\"yesterday\""));
    }
}
