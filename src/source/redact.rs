//! URLs as they may be shown in logs, `--json` output, stored errors and alert emails.
//!
//! A webhook URL is often a secret by itself (Slack's `/services/T…/B…/XXXX`, Telegram's
//! `/bot<token>/…`, `?token=…`). The shown form keeps what helps a person find the receiver
//! (scheme, host, port, the path's plain words) and hides the userinfo, every query value, the
//! fragment, and every path segment that came from a `${…}` value or looks like a token. This is
//! the one place that decides how a URL is shown; it must never return the secret parts.

/// What replaces a hidden part.
pub const HIDDEN: &str = "***";

/// `url` as it may be shown. `secrets` are the values interpolated into it (from `${NAME}` or
/// `${file:…}`): any path segment that is part of one, or contains one, is hidden.
pub fn url(url: &str, secrets: &[String]) -> String {
    let Ok(parsed) = url::Url::parse(url) else {
        // Not even a URL: nothing of it can be shown safely.
        return format!("(an unreadable URL, {} characters)", url.chars().count());
    };
    let mut out = format!("{}://", parsed.scheme());
    if !parsed.username().is_empty() || parsed.password().is_some() {
        out.push_str(HIDDEN);
        out.push('@');
    }
    if let Some(host) = parsed.host_str() {
        out.push_str(host);
    }
    if let Some(port) = parsed.port() {
        out.push_str(&format!(":{port}"));
    }
    match parsed.path_segments() {
        Some(segments) => {
            for segment in segments {
                out.push('/');
                if hide_segment(segment, secrets) {
                    out.push_str(HIDDEN);
                } else {
                    out.push_str(segment);
                }
            }
        }
        None => {
            // `mailto:`-like URLs have no segments: their whole path may be the secret.
            if !parsed.path().is_empty() {
                out.push_str(HIDDEN);
            }
        }
    }
    if let Some(query) = parsed.query() {
        out.push('?');
        let parts: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if !hide_segment(key, secrets) => format!("{key}={HIDDEN}"),
                _ if pair.is_empty() => String::new(),
                _ => HIDDEN.to_string(),
            })
            .collect();
        out.push_str(&parts.join("&"));
    }
    if parsed.fragment().is_some() {
        out.push('#');
        out.push_str(HIDDEN);
    }
    out
}

/// `text` (an answer from the receiver, a library's message) with the URL and every part of it
/// that its shown form hides replaced by `***`: a receiver may echo the request line back.
/// `shown` is what `url(real, …)` returned for it.
pub fn in_text(text: &str, real: &str, shown: &str) -> String {
    let mut out = if real.is_empty() {
        text.to_string()
    } else {
        text.replace(real, shown)
    };
    let mut parts = hidden_parts(real, shown);
    // Longest first, so a part containing another is replaced whole.
    crate::sorting::sort_by_key(&mut parts, |p| std::cmp::Reverse(p.len()));
    for part in parts {
        // Shorter parts (`1`, `en`) cannot be secrets, and replacing them would garble the text.
        if part.chars().count() >= 4 {
            out = out.replace(&part, HIDDEN);
        }
    }
    out
}

/// The parts of `real` that `shown` hides: userinfo, query values, the fragment, and the path
/// segments shown as `***` (raw and percent-decoded).
fn hidden_parts(real: &str, shown: &str) -> Vec<String> {
    let Ok(parsed) = url::Url::parse(real) else {
        return vec![real.to_string()];
    };
    let mut parts = vec![parsed.username().to_string()];
    parts.extend(parsed.password().map(str::to_string));
    parts.extend(parsed.fragment().map(str::to_string));
    if let Some(query) = parsed.query() {
        for pair in query.split('&') {
            let value = pair.split_once('=').map_or(pair, |(_, v)| v);
            parts.push(value.to_string());
            parts.push(percent_decode(value));
        }
    }
    // The shown form keeps the segments in place: `***` where one is hidden.
    let shown_path = shown
        .split_once("://")
        .map_or("", |(_, rest)| rest)
        .split(['?', '#'])
        .next()
        .unwrap_or_default();
    let shown_segments: Vec<&str> = shown_path.split('/').skip(1).collect();
    if let Some(segments) = parsed.path_segments() {
        for (i, segment) in segments.enumerate() {
            if shown_segments.get(i).is_none_or(|s| *s == HIDDEN) {
                parts.push(segment.to_string());
                parts.push(percent_decode(segment));
            }
        }
    }
    parts.retain(|p| !p.is_empty());
    parts
}

fn hide_segment(raw: &str, secrets: &[String]) -> bool {
    if raw.is_empty() {
        return false;
    }
    let decoded = percent_decode(raw);
    let from_secret = secrets.iter().filter(|s| !s.is_empty()).any(|s| {
        s.contains(decoded.as_str())
            || s.contains(raw)
            || (s.chars().count() >= 4
                && (decoded.contains(s.as_str()) || raw.contains(s.as_str())))
    });
    from_secret || looks_like_token(&decoded)
}

/// Long mixes of letters and digits are how services spell their tokens; a word of a path
/// (`services`, `api`, `v1`, `sendMessage`) is short or has no digit.
fn looks_like_token(segment: &str) -> bool {
    segment.chars().count() >= 16
        && segment.chars().any(|c| c.is_ascii_digit())
        && segment.chars().any(|c| c.is_alphabetic())
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_userinfo_query_values_fragments_and_tokens() {
        assert_eq!(
            url(
                "https://user:pw@hooks.example.com:8443/a/b?token=abc&x=1#frag",
                &[]
            ),
            "https://***@hooks.example.com:8443/a/b?token=***&x=***#***"
        );
        // Slack: the last segment is a token by its shape.
        assert_eq!(
            url(
                "https://hooks.slack.com/services/T0001/B0001/XXXXXXXXXXXXXXXXXXXXXXX1",
                &[]
            ),
            "https://hooks.slack.com/services/T0001/B0001/***"
        );
        // Telegram: the bot token sits in a segment with a prefix.
        assert_eq!(
            url(
                "https://api.telegram.org/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/sendMessage",
                &[]
            ),
            "https://api.telegram.org/***/sendMessage"
        );
    }

    #[test]
    fn hides_segments_that_came_from_a_secret() {
        let secrets = vec!["T01/B02/short".to_string()];
        assert_eq!(
            url("https://hooks.example.com/services/T01/B02/short", &secrets),
            "https://hooks.example.com/services/***/***/***"
        );
        let whole = vec!["https://hooks.example.com/x/y".to_string()];
        assert_eq!(
            url("https://hooks.example.com/x/y", &whole),
            "https://hooks.example.com/***/***"
        );
        assert_eq!(url("not a url", &[]), "(an unreadable URL, 9 characters)");
        let real = "https://h.example/hook/T0001/XXXXXXXXXXXXXXXXXXXX1234?k=s3cr3t";
        let shown = url(real, &[]);
        let text = format!(
            "POST {real} failed; the server said: bad POST /hook/T0001/XXXXXXXXXXXXXXXXXXXX1234?k=s3cr3t"
        );
        let cleaned = in_text(&text, real, &shown);
        assert!(
            !cleaned.contains("s3cr3t") && !cleaned.contains("XXXXXXXXXXXXXXXXXXXX1234"),
            "{cleaned}"
        );
        assert!(
            cleaned.contains("https://h.example/hook/T0001/***?k=***"),
            "{cleaned}"
        );
    }
}
