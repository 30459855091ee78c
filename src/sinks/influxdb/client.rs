//! HTTP to the server: the write request, what its answer means, and the start-up
//! health check.

use std::io::Write as _;
use std::time::Duration;

use flate2::write::GzEncoder;
use flate2::Compression;
use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode, Url};

use super::config::{parse_endpoint, Api, InfluxdbConfig};
use crate::component::BoxError;

/// The longest server message kept for logs and the dead-letter file.
const MAX_MESSAGE: usize = 1000;
/// The longest rejection kept to find the refused lines in (InfluxDB names every
/// unparsable line, so a big batch of them makes a long answer).
const MAX_REJECTION: usize = 1 << 20;

#[derive(Debug, Clone)]
enum Auth {
    None,
    Basic { username: String, password: Option<String> },
    Token(String),
}

/// What a write request came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Written,
    /// Worth trying again: a network error, a timeout, 5xx, 408, 429, or a setup
    /// problem someone can fix (401, 403, 404).
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// 413: the server wants smaller requests.
    TooLarge,
    /// Any other 4xx (400 field type conflict, 422…): the server will never take
    /// some of these points as they are. `message` is the server's error text (the
    /// `error` or `message` of a JSON answer), whole up to 1 MiB: [`refusal`]
    /// reads which lines it names.
    Rejected {
        status: u16,
        message: String,
    },
}

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    api: Api,
    base: Url,
    write_url: Url,
    gzip: bool,
    auth: Auth,
    database: Option<String>,
    bucket: Option<String>,
    org: Option<String>,
}

fn with_path(base: &Url, segments: &[&str]) -> Result<Url, BoxError> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|_| format!("`{base}` cannot take a path"))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

impl Client {
    pub fn new(c: &InfluxdbConfig) -> Result<Client, BoxError> {
        let base = parse_endpoint(&c.endpoint)?;
        let api = c.api();
        let precision = c.precision.param(api);
        let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        let (write_url, auth) = match api {
            Api::V1 => {
                let mut url = with_path(&base, &["write"])?;
                {
                    let mut q = url.query_pairs_mut();
                    q.append_pair("db", c.database.as_deref().unwrap_or_default());
                    if let Some(rp) = nonempty(&c.retention_policy) {
                        q.append_pair("rp", &rp);
                    }
                    q.append_pair("precision", precision);
                }
                let auth = match nonempty(&c.username) {
                    Some(username) => Auth::Basic {
                        username,
                        password: c.password.clone(),
                    },
                    None => Auth::None,
                };
                (url, auth)
            }
            Api::V2 => {
                let mut url = with_path(&base, &["api", "v2", "write"])?;
                url.query_pairs_mut()
                    .append_pair("org", c.org.as_deref().unwrap_or_default())
                    .append_pair("bucket", c.bucket.as_deref().unwrap_or_default())
                    .append_pair("precision", precision);
                let auth = nonempty(&c.token).map_or(Auth::None, Auth::Token);
                (url, auth)
            }
        };
        let http = reqwest::Client::builder()
            .timeout(c.request_timeout)
            .connect_timeout(c.request_timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("hpflow/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        Ok(Client {
            http,
            api,
            base,
            write_url,
            gzip: c.gzip,
            auth,
            database: nonempty(&c.database),
            bucket: nonempty(&c.bucket),
            org: nonempty(&c.org),
        })
    }

    /// The write URL (no secrets in it: credentials travel in headers).
    pub fn write_url(&self) -> &Url {
        &self.write_url
    }

    fn authorize(&self, req: RequestBuilder) -> RequestBuilder {
        match &self.auth {
            Auth::None => req,
            Auth::Basic { username, password } => req.basic_auth(username, password.as_ref()),
            Auth::Token(t) => req.header(AUTHORIZATION, format!("Token {t}")),
        }
    }

    /// Sends one batch of line protocol.
    pub async fn write(&self, body: &[u8]) -> Outcome {
        let mut req = self
            .http
            .post(self.write_url.clone())
            .header(CONTENT_TYPE, "text/plain; charset=utf-8");
        if self.gzip {
            match gzip(body) {
                Ok(z) => req = req.header(CONTENT_ENCODING, "gzip").body(z),
                // Compressing into memory cannot really fail; send it plain if it does.
                Err(_) => req = req.body(body.to_vec()),
            }
        } else {
            req = req.body(body.to_vec());
        }
        let resp = match self.authorize(req).send().await {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry {
                    reason: error_chain(&e),
                    after: None,
                }
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Outcome::Written;
        }
        let after = retry_after(resp.headers());
        let message = match resp.text().await {
            Ok(t) => error_text(&t),
            Err(e) => format!("(no body: {e})"),
        };
        classify(status, message, after)
    }

    /// Checks that the server answers and the database or bucket exists. Returns
    /// what is wrong, as sentences for WARN logs; nothing stops the sink.
    pub async fn health(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match self.api {
            Api::V1 => {
                match self.get(&["ping"], &[]).await {
                    Ok((s, _)) if s.is_success() => {}
                    Ok((s, body)) => problems.push(format!("GET /ping answered {s}: {body}")),
                    Err(e) => {
                        problems.push(format!("InfluxDB does not answer: {e}"));
                        return problems;
                    }
                }
                let Some(db) = &self.database else { return problems };
                match self.get(&["query"], &[("q", "SHOW DATABASES")]).await {
                    Ok((s, body)) if s.is_success() => match databases(&body) {
                        Some(dbs) if !dbs.iter().any(|d| d == db) => problems.push(format!(
                            "database `{db}` does not exist (found: {}); create it with `CREATE DATABASE \"{db}\"`",
                            dbs.join(", ")
                        )),
                        Some(_) => {}
                        None => problems.push(format!("cannot read the answer to SHOW DATABASES: {body}")),
                    },
                    Ok((s, body)) => problems.push(format!("SHOW DATABASES answered {s}: {body}")),
                    Err(e) => problems.push(format!("SHOW DATABASES failed: {e}")),
                }
            }
            Api::V2 => {
                let health = match self.get(&["health"], &[]).await {
                    Ok((s, _)) if s == StatusCode::NOT_FOUND => self.get(&["ping"], &[]).await,
                    other => other,
                };
                match health {
                    Ok((s, _)) if s.is_success() => {}
                    Ok((s, body)) => problems.push(format!("the health check answered {s}: {body}")),
                    Err(e) => {
                        problems.push(format!("the server does not answer: {e}"));
                        return problems;
                    }
                }
                let (Some(bucket), Some(org)) = (&self.bucket, &self.org) else {
                    return problems;
                };
                // InfluxDB 2 lists buckets; VictoriaMetrics and InfluxDB 3 have no such
                // endpoint, which is fine: they take any bucket.
                match self
                    .get(&["api", "v2", "buckets"], &[("name", bucket), ("org", org)])
                    .await
                {
                    Ok((s, body)) if s.is_success() && bucket_count(&body) == Some(0) => {
                        problems.push(format!("bucket `{bucket}` does not exist in org `{org}`"))
                    }
                    Ok((s, body)) if s == StatusCode::UNAUTHORIZED || s == StatusCode::FORBIDDEN => {
                        problems.push(format!("the token was refused ({s}): {body}"))
                    }
                    _ => {}
                }
            }
        }
        problems
    }

    async fn get(&self, path: &[&str], query: &[(&str, &str)]) -> Result<(StatusCode, String), String> {
        let mut url = with_path(&self.base, path).map_err(|e| e.to_string())?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let resp = self
            .authorize(self.http.get(url))
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        Ok((status, shorten(body.trim())))
    }
}

/// What an HTTP status means for a write.
pub fn classify(status: StatusCode, message: String, after: Option<Duration>) -> Outcome {
    let short = || shorten(&message);
    match status.as_u16() {
        200..=299 => Outcome::Written,
        408 | 429 | 500..=599 => Outcome::Retry {
            reason: format!("HTTP {status}: {}", short()),
            after,
        },
        // Wrong credentials or a missing database/bucket: the points are fine, the
        // setup is not. They wait in the buffer (bounded, drops counted) until
        // someone fixes it, rather than being set aside as if they were bad.
        401 | 403 => Outcome::Retry {
            reason: format!(
                "HTTP {status}: InfluxDB refused the credentials (check the token or user): {}",
                short()
            ),
            after: None,
        },
        404 => Outcome::Retry {
            reason: format!(
                "HTTP {status}: the database, bucket or org does not exist (create it or fix the sink's settings): {}",
                short()
            ),
            after: None,
        },
        413 => Outcome::TooLarge,
        code => Outcome::Rejected { status: code, message },
    }
}

/// The error text of an answer: InfluxDB 1.x says `{"error":"…"}`, 2.x and 3.x
/// `{"code":"…","message":"…"}`; anything else is taken as it is.
fn error_text(body: &str) -> String {
    let body = body.trim();
    let json = serde_json::from_str::<serde_json::Value>(body).ok();
    let text = json
        .as_ref()
        .and_then(|v| v.get("error").or_else(|| v.get("message")))
        .and_then(|v| v.as_str())
        .unwrap_or(body);
    if text.len() <= MAX_REJECTION {
        return text.to_string();
    }
    let mut end = MAX_REJECTION;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// What a rejection says about which lines of the request the server refused.
///
/// Found against the real servers (see the sink's tests): InfluxDB 1.x writes
/// every line it can and answers `partial write: unable to parse '<line>': <why>`
/// (one per bad line, `dropped=0` at the end) when only parse errors occurred, but
/// `partial write: field type conflict: … dropped=N` or `partial write: points
/// beyond retention policy dropped=N` when points were dropped: then the lines are
/// not named, N can be lower than the points actually refused, and unparsable
/// lines of the same request are not mentioned at all. A request with nothing
/// but unparsable lines gets their list without `partial write`. InfluxDB 2.x
/// writes nothing of a request with a parse error and names its line
/// (`unable to parse '<line>'` or `line <n>: <why>`). VictoriaMetrics answers 204
/// and skips unparsable lines silently.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Refusal {
    /// `partial write`: the lines the answer does not name or count were written.
    pub partial: bool,
    /// `dropped=N`: points refused without being named.
    pub dropped: Option<u64>,
    /// Lines named as unparsable, with why; only lines `is_line` recognises as
    /// lines of the request are taken.
    pub unparsable: Vec<(String, String)>,
    /// 1-based numbers of lines named as refused (`line <n>: <why>`), with why.
    pub line_numbers: Vec<(usize, String)>,
}

/// Reads a rejection's `message` (see [`Refusal`]). `is_line` tells whether a
/// text is one of the request's lines (without its newline); a line's own text
/// may hold `': `, so the end of a quoted line is where a known line ends.
pub fn refusal(message: &str, is_line: impl Fn(&str) -> bool) -> Refusal {
    const UNPARSABLE: &str = "unable to parse '";
    let mut r = Refusal {
        partial: message.contains("partial write"),
        dropped: message
            .rfind("dropped=")
            .and_then(|i| leading_number(&message[i + 8..])),
        ..Refusal::default()
    };
    let mut rest = message;
    while let Some(i) = rest.find(UNPARSABLE) {
        let quoted = &rest[i + UNPARSABLE.len()..];
        let end = quoted
            .match_indices('\'')
            .map(|(j, _)| j)
            .find(|&j| is_line(&quoted[..j]));
        let Some(end) = end else {
            rest = quoted;
            continue;
        };
        let tail = &quoted[end + 1..];
        let why = tail.strip_prefix(": ").unwrap_or(tail);
        let why = &why[..why.find('\n').unwrap_or(why.len())];
        r.unparsable
            .push((quoted[..end].to_string(), strip_dropped(why).to_string()));
        rest = tail;
    }
    for l in message.lines() {
        let Some(after) = l.trim_start().strip_prefix("line ") else {
            continue;
        };
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if let (Some(n), Some(why)) = (leading_number(after), after[digits..].strip_prefix(':')) {
            if let Ok(n) = usize::try_from(n) {
                r.line_numbers.push((n, strip_dropped(why.trim()).to_string()));
            }
        }
    }
    r
}

fn leading_number(s: &str) -> Option<u64> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    s[..digits].parse().ok()
}

fn strip_dropped(s: &str) -> &str {
    match s.rfind(" dropped=") {
        Some(i) if leading_number(&s[i + 9..]).is_some() => s[..i].trim_end(),
        _ => s.trim_end(),
    }
}

/// A rejection reduced to its kind, for logging each kind once: the status and the
/// message with quoted line text, numbers and repeats taken out, so that the same
/// field type conflict on other points, or the same parse error on other lines,
/// is the same reason. Field and measurement names stay: another field's conflict
/// is another problem to fix.
pub fn reason_key(status: u16, message: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    for line in message.lines() {
        let line = match line.find("unable to parse '") {
            Some(i) => match line.rfind("': ") {
                Some(j) if j > i => format!("{}unable to parse: {}", &line[..i], &line[j + 3..]),
                _ => format!("{}unable to parse", &line[..i]),
            },
            None => line.to_string(),
        };
        let mut norm = String::with_capacity(line.len());
        let mut in_number = false;
        for c in line.chars() {
            if c.is_ascii_digit() {
                if !in_number {
                    norm.push('N');
                }
                in_number = true;
            } else {
                in_number = false;
                norm.push(c);
            }
        }
        let norm = norm.trim().to_string();
        if !norm.is_empty() && !parts.contains(&norm) {
            parts.push(norm);
        }
    }
    format!("HTTP {status}: {}", shorten(&parts.join("; ")))
}

/// `Retry-After` in seconds (the HTTP-date form is not used by InfluxDB).
fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let secs: u64 = h.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut z = GzEncoder::new(Vec::with_capacity(body.len() / 4 + 64), Compression::fast());
    z.write_all(body)?;
    z.finish()
}

/// `s` cut to 1000 bytes (at a character boundary), for logs.
pub fn shorten(s: &str) -> String {
    if s.len() <= MAX_MESSAGE {
        return s.to_string();
    }
    let mut end = MAX_MESSAGE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// An error with its causes (reqwest's own message hides "connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let c_s = c.to_string();
        if !s.contains(&c_s) {
            s.push_str(": ");
            s.push_str(&c_s);
        }
        cause = c.source();
    }
    s
}

fn databases(body: &str) -> Option<Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let series = v.get("results")?.get(0)?.get("series");
    let Some(series) = series else { return Some(Vec::new()) };
    let Some(values) = series.get(0)?.get("values") else {
        return Some(Vec::new());
    };
    let values = values.as_array()?;
    Some(
        values
            .iter()
            .filter_map(|row| row.get(0)?.as_str().map(str::to_string))
            .collect(),
    )
}

fn bucket_count(body: &str) -> Option<usize> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    Some(v.get("buckets")?.as_array()?.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> InfluxdbConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn v1_urls_carry_db_rp_and_precision() {
        let c = Client::new(&config(
            "endpoint = \"http://h:8086\"\ndatabase = \"hp data\"\nretention_policy = \"rp\"\nprecision = \"ns\"",
        ))
        .unwrap();
        assert_eq!(
            c.write_url().as_str(),
            "http://h:8086/write?db=hp+data&rp=rp&precision=n"
        );
    }

    #[test]
    fn v2_urls_keep_a_path_prefix() {
        let c = Client::new(&config(
            "endpoint = \"https://h/influx/\"\nbucket = \"b\"\norg = \"o&o\"\nprecision = \"s\"",
        ))
        .unwrap();
        assert_eq!(
            c.write_url().as_str(),
            "https://h/influx/api/v2/write?org=o%26o&bucket=b&precision=s"
        );
    }

    #[test]
    fn statuses_map_to_retry_split_or_reject() {
        let m = || "x".to_string();
        assert_eq!(classify(StatusCode::NO_CONTENT, m(), None), Outcome::Written);
        assert!(matches!(
            classify(StatusCode::SERVICE_UNAVAILABLE, m(), None),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, m(), Some(Duration::from_secs(3))),
            Outcome::Retry { after: Some(d), .. } if d == Duration::from_secs(3)
        ));
        assert_eq!(classify(StatusCode::PAYLOAD_TOO_LARGE, m(), None), Outcome::TooLarge);
        // A setup problem, not bad points: they wait in the buffer.
        for code in [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN, StatusCode::NOT_FOUND] {
            assert!(
                matches!(classify(code, m(), None), Outcome::Retry { ref reason, after: None } if reason.contains(code.as_str())),
                "{code}"
            );
        }
        assert_eq!(
            classify(StatusCode::BAD_REQUEST, m(), None),
            Outcome::Rejected {
                status: 400,
                message: m()
            }
        );
    }

    #[test]
    fn json_answers_give_their_error_text() {
        assert_eq!(
            error_text("{\"error\":\"partial write: x \\\"q\\\"\\nnext\"}\n"),
            "partial write: x \"q\"\nnext"
        );
        assert_eq!(error_text("{\"code\":\"invalid\",\"message\":\"bad\"}"), "bad");
        assert_eq!(error_text("  plain text \n"), "plain text");
        assert_eq!(error_text(&"x".repeat(MAX_REJECTION + 10)).len(), MAX_REJECTION);
        // Logs and retry reasons stay short.
        let long = "y".repeat(5000);
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY, long, None),
            Outcome::Retry { reason, .. } if reason.len() < 1100
        ));
    }

    // The answers below are influxd 1.6's own, captured from the real server.
    #[test]
    fn a_partial_write_with_parse_errors_names_each_line() {
        let lines = ["m x= 8000", "m,bad tag x=1i 10000", "m x=9i 9000"];
        let msg = "partial write: unable to parse 'm x= 8000': missing field value\n\
                   unable to parse 'm,bad tag x=1i 10000': missing tag value dropped=0";
        let r = refusal(msg, |l| lines.contains(&l));
        assert!(r.partial);
        assert_eq!(r.dropped, Some(0));
        assert_eq!(
            r.unparsable,
            [
                ("m x= 8000".to_string(), "missing field value".to_string()),
                ("m,bad tag x=1i 10000".to_string(), "missing tag value".to_string())
            ]
        );
        assert!(r.line_numbers.is_empty());
    }

    #[test]
    fn a_quoted_line_may_hold_quotes_and_colons() {
        let line = "m s=\"it's': odd\" 1";
        let msg = format!("unable to parse '{line}': invalid field format");
        let r = refusal(&msg, |l| l == line);
        assert!(!r.partial);
        assert_eq!(r.dropped, None);
        assert_eq!(r.unparsable, [(line.to_string(), "invalid field format".to_string())]);
        // A line that is not one of ours is not taken.
        assert!(refusal(&msg, |_| false).unparsable.is_empty());
    }

    #[test]
    fn a_field_type_conflict_gives_a_count_and_no_lines() {
        let msg = "partial write: field type conflict: input field \"x\" on measurement \"m\" is type float, \
                   already exists as type integer dropped=2";
        let r = refusal(msg, |_| true);
        assert_eq!((r.partial, r.dropped), (true, Some(2)));
        assert!(r.unparsable.is_empty() && r.line_numbers.is_empty());
        let r = refusal("partial write: points beyond retention policy dropped=17", |_| true);
        assert_eq!(r.dropped, Some(17));
    }

    #[test]
    fn line_numbers_are_read() {
        let msg = "failed to parse line protocol: errors encountered on line(s):\nline 2: missing field value\nline 14: bad timestamp";
        let r = refusal(msg, |_| false);
        assert_eq!(
            r.line_numbers,
            [
                (2, "missing field value".to_string()),
                (14, "bad timestamp".to_string())
            ]
        );
        assert!(!r.partial && r.dropped.is_none());
    }

    #[test]
    fn one_kind_of_rejection_is_one_reason() {
        let a = reason_key(
            400,
            "partial write: field type conflict: input field \"x\" on measurement \"m\" is type float, already exists as type integer dropped=2",
        );
        let b = reason_key(
            400,
            "partial write: field type conflict: input field \"x\" on measurement \"m\" is type float, already exists as type integer dropped=117",
        );
        let other_field = reason_key(
            400,
            "partial write: field type conflict: input field \"y\" on measurement \"m\" is type float, already exists as type integer dropped=2",
        );
        assert_eq!(a, b);
        assert_ne!(a, other_field);
        assert_ne!(a, a.replacen("400", "422", 1));
        assert!(a.starts_with("HTTP 400: ") && a.ends_with("dropped=N"), "{a}");
        let p1 = reason_key(400, "unable to parse 'm x= 8000': missing field value");
        let p2 = reason_key(
            400,
            "partial write: unable to parse 'n,a=b y= 1': missing field value\nunable to parse 'q x= 2': missing field value dropped=0",
        );
        assert_eq!(p1, "HTTP 400: unable to parse: missing field value");
        assert_eq!(
            p2,
            "HTTP 400: partial write: unable to parse: missing field value; unable to parse: missing field value dropped=N"
        );
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn show_databases_answers_are_read() {
        let body = r#"{"results":[{"statement_id":0,"series":[{"name":"databases","columns":["name"],"values":[["_internal"],["hp"]]}]}]}"#;
        assert_eq!(databases(body).unwrap(), vec!["_internal", "hp"]);
        assert_eq!(
            databases(r#"{"results":[{"statement_id":0}]}"#).unwrap(),
            Vec::<String>::new()
        );
        let none = r#"{"results":[{"statement_id":0,"series":[{"name":"databases","columns":["name"]}]}]}"#;
        assert_eq!(databases(none).unwrap(), Vec::<String>::new());
        assert_eq!(bucket_count(r#"{"buckets":[]}"#), Some(0));
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read;
        let z = gzip(b"m v=1i 1\n").unwrap();
        let mut out = String::new();
        flate2::read::GzDecoder::new(&z[..]).read_to_string(&mut out).unwrap();
        assert_eq!(out, "m v=1i 1\n");
    }
}
