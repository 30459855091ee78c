//! Who may change settings, and from where.
//!
//! Reading is open. Changing needs the admin token (`HPFLOW_ADMIN_TOKEN`, or the
//! file named by `admin_token_file`): either sent as `Authorization: Bearer` (API
//! clients) or typed once into the login form, which sets a random session id
//! (never the token) in an `HttpOnly; SameSite=Strict` cookie. Sessions live in
//! memory: a restart logs everybody out. Without a token nothing can be changed.
//!
//! Every state-changing request must also come from the dashboard's own origin:
//! its `Origin` (else `Referer`) must name the `Host` it was sent to, or one of
//! `trusted_origins` (a reverse proxy that rewrites `Host`). A request with
//! neither header is only accepted with a bearer token, which browsers never
//! attach on their own.
//!
//! Every request, reading too, must name a `Host` the dashboard answers to: an
//! IP literal, `localhost`, a name in `allowed_hosts` (with the machine's own
//! name added by the config) or the host of one of `trusted_origins`. A page of another site whose name was rebound to the
//! dashboard's address (DNS rebinding) sends its own name and is refused.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::header::{AUTHORIZATION, COOKIE, HOST, ORIGIN, REFERER};
use axum::http::{HeaderMap, Uri};

/// How long a login lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
const MAX_SESSIONS: usize = 64;
/// Failed credentials (a wrong login or bearer token) allowed per client
/// address and minute before its attempts get `429`.
const MAX_FAILURES_PER_MINUTE: usize = 10;
/// Client addresses the limiter remembers at most.
const MAX_CLIENTS: usize = 4096;
const WINDOW: Duration = Duration::from_secs(60);

/// How a request proved it may change things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    Bearer,
    Session,
}

/// Why a change was refused; each becomes a status code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "Settings are read-only: no admin token is configured. Set the HPFLOW_ADMIN_TOKEN environment variable, or `admin_token_file` in the dashboard sink's section of the pipeline file, and restart hpflow."
    )]
    NoToken,
    #[error("Log in with the admin token to change settings.")]
    NotLoggedIn,
    #[error("The admin token is wrong.")]
    WrongToken,
    #[error("Too many failed attempts from your address; wait a minute and try again.")]
    TooManyFailures,
    #[error("Refused a change sent from another site ({0}).")]
    CrossOrigin(String),
}

pub struct Auth {
    token: Option<String>,
    cookie: String,
    sessions: Mutex<HashMap<String, Instant>>,
    /// Recent failed credentials by client address (`None`: unknown address).
    failures: Mutex<HashMap<Option<IpAddr>, VecDeque<Instant>>>,
    trusted_origins: Vec<String>,
    /// Host names answered besides IP literals and `localhost`, lowercase.
    allowed_hosts: Vec<String>,
}

impl Auth {
    /// `id` (the sink id) names the cookie, so two dashboards on one host
    /// (cookies ignore ports) do not log each other out.
    pub fn new(token: Option<String>, id: &str, trusted_origins: Vec<String>, allowed_hosts: Vec<String>) -> Self {
        let safe: String = id
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        Auth {
            token: token.filter(|t| !t.is_empty()),
            cookie: format!("hpflow_{safe}_session"),
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            allowed_hosts: allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .chain(trusted_origins.iter().filter_map(|o| {
                    let authority = o.split_once("://")?.1.trim_end_matches('/');
                    Some(host_part(authority).to_ascii_lowercase())
                }))
                .collect(),
            trusted_origins: trusted_origins
                .into_iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        }
    }

    /// True when a request naming `host` (a `Host` header: name or IP literal,
    /// with an optional port) may be answered.
    pub fn host_allowed(&self, host: &str) -> bool {
        let name = host_part(host.trim()).to_ascii_lowercase();
        let literal = name.trim_start_matches('[').trim_end_matches(']');
        literal.parse::<std::net::IpAddr>().is_ok()
            || name == "localhost"
            || name.ends_with(".localhost")
            || self.allowed_hosts.contains(&name)
    }

    pub fn enabled(&self) -> bool {
        self.token.is_some()
    }

    pub fn cookie_name(&self) -> &str {
        &self.cookie
    }

    /// The credential of a request, if it carries a valid one.
    pub fn credential(&self, headers: &HeaderMap) -> Result<Credential, Refusal> {
        let Some(token) = &self.token else {
            return Err(Refusal::NoToken);
        };
        if let Some(auth) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
            let given = auth
                .strip_prefix("Bearer ")
                .or_else(|| auth.strip_prefix("bearer "))
                .unwrap_or("");
            return if constant_time_eq(given.trim().as_bytes(), token.as_bytes()) {
                Ok(Credential::Bearer)
            } else {
                Err(Refusal::WrongToken)
            };
        }
        match self.session_of(headers) {
            Some(id) if self.session_valid(&id) => Ok(Credential::Session),
            _ => Err(Refusal::NotLoggedIn),
        }
    }

    /// True when the request's session cookie names a live session.
    pub fn logged_in(&self, headers: &HeaderMap) -> bool {
        self.token.is_some() && self.session_of(headers).is_some_and(|id| self.session_valid(&id))
    }

    /// Checks a typed token and opens a session; returns the session id.
    pub fn login(&self, given: &str) -> Result<String, Refusal> {
        let Some(token) = &self.token else {
            return Err(Refusal::NoToken);
        };
        let now = Instant::now();
        if !constant_time_eq(given.trim().as_bytes(), token.as_bytes()) {
            return Err(Refusal::WrongToken);
        }
        let id = random_id().map_err(|_| Refusal::NotLoggedIn)?;
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, expiry| *expiry > now);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions.iter().min_by_key(|(_, e)| **e).map(|(k, _)| k.clone()) {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(id.clone(), now + SESSION_TTL);
        Ok(id)
    }

    /// True while `client` has used up its failed attempts of the last minute.
    pub fn throttled(&self, client: Option<IpAddr>) -> bool {
        let now = Instant::now();
        let mut failures = lock(&self.failures);
        match failures.get_mut(&client) {
            Some(times) => {
                while times.front().is_some_and(|t| now.duration_since(*t) > WINDOW) {
                    times.pop_front();
                }
                times.len() >= MAX_FAILURES_PER_MINUTE
            }
            None => false,
        }
    }

    /// Counts a failed credential (login form or bearer) of `client`.
    pub fn failed(&self, client: Option<IpAddr>) {
        let now = Instant::now();
        let mut failures = lock(&self.failures);
        if failures.len() >= MAX_CLIENTS && !failures.contains_key(&client) {
            failures.retain(|_, times| times.back().is_some_and(|t| now.duration_since(*t) <= WINDOW));
            if failures.len() >= MAX_CLIENTS {
                // Still full of live guessers: forget one rather than grow.
                if let Some(k) = failures.keys().next().copied() {
                    failures.remove(&k);
                }
            }
        }
        let times = failures.entry(client).or_default();
        times.push_back(now);
        while times.len() > MAX_FAILURES_PER_MINUTE {
            times.pop_front();
        }
    }

    pub fn logout(&self, headers: &HeaderMap) {
        if let Some(id) = self.session_of(headers) {
            lock(&self.sessions).remove(&id);
        }
    }

    /// The `Set-Cookie` value for a new session.
    pub fn session_cookie(&self, id: &str) -> String {
        format!(
            "{}={id}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict",
            self.cookie,
            SESSION_TTL.as_secs()
        )
    }

    /// The `Set-Cookie` value that removes the session cookie.
    pub fn clear_cookie(&self) -> String {
        format!("{}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict", self.cookie)
    }

    fn session_of(&self, headers: &HeaderMap) -> Option<String> {
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == self.cookie)
            .map(|(_, v)| v.to_string())
    }

    fn session_valid(&self, id: &str) -> bool {
        let sessions = lock(&self.sessions);
        // The map lookup hashes the id, so its timing tells nothing about near misses.
        sessions.get(id).is_some_and(|expiry| *expiry > Instant::now())
    }

    /// Refuses a state-changing request from another origin. `credential` is
    /// what the request authenticated with, if anything: without `Origin` and
    /// `Referer` only a bearer token is enough.
    pub fn same_origin(&self, headers: &HeaderMap, uri: &Uri, credential: Option<Credential>) -> Result<(), Refusal> {
        let host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| uri.authority().map(|a| a.as_str()))
            .map(str::to_ascii_lowercase);
        let claimed = match (headers.get(ORIGIN), headers.get(REFERER)) {
            (Some(o), _) => o.to_str().ok().map(str::to_string).unwrap_or_default(),
            (None, Some(r)) => r.to_str().ok().map(origin_of).unwrap_or_default(),
            (None, None) => {
                return match credential {
                    Some(Credential::Bearer) => Ok(()),
                    _ => Err(Refusal::CrossOrigin("the request names no Origin or Referer".into())),
                }
            }
        };
        let claimed = claimed.trim_end_matches('/').to_ascii_lowercase();
        let authority = claimed.split_once("://").map(|(_, a)| a);
        if authority.is_some() && authority == host.as_deref() {
            return Ok(());
        }
        if self.trusted_origins.contains(&claimed) {
            return Ok(());
        }
        let host = host.unwrap_or_else(|| "no Host".into());
        Err(Refusal::CrossOrigin(format!(
            "origin `{claimed}`, but this dashboard is `{host}`"
        )))
    }
}

/// The host of an authority (`name:port`, `[v6]:port`), without the port.
fn host_part(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().map_or(authority, |h| &authority[..h.len() + 2]);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

/// `scheme://authority` of a URL (the part of a Referer an Origin would hold).
fn origin_of(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            format!("{scheme}://{authority}")
        }
        None => String::new(),
    }
}

/// Compares without stopping at the first difference, so the time taken does
/// not tell an attacker how much of a guess was right (only the longer length).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    std::hint::black_box(diff) == 0
}

/// 128 random bits from the operating system, hex-encoded.
fn random_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(axum::http::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn tokens_compare_equal_only_when_identical() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn a_login_opens_a_random_session_that_is_not_the_token() {
        let auth = Auth::new(Some("correct horse".into()), "dash", vec![], vec![]);
        let id = auth.login("correct horse").unwrap();
        assert_eq!(id.len(), 32);
        assert_ne!(id, auth.login("correct horse").unwrap());
        let cookie = auth.session_cookie(&id);
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        let h = headers(&[(COOKIE, &format!("other=1; hpflow_dash_session={id}"))]);
        assert_eq!(auth.credential(&h), Ok(Credential::Session));
        auth.logout(&h);
        assert_eq!(auth.credential(&h), Err(Refusal::NotLoggedIn));
    }

    #[test]
    fn failures_are_throttled_per_client_address() {
        let auth = Auth::new(Some("t0ken".into()), "d", vec![], vec![]);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for _ in 0..MAX_FAILURES_PER_MINUTE {
            assert!(!auth.throttled(Some(a)));
            auth.failed(Some(a));
        }
        assert!(auth.throttled(Some(a)));
        assert!(!auth.throttled(Some(b)), "another address is not locked out");
        assert!(!auth.throttled(None));
        for i in 0..MAX_CLIENTS as u32 + 10 {
            auth.failed(Some(IpAddr::from(i.to_be_bytes())));
        }
        assert!(lock(&auth.failures).len() <= MAX_CLIENTS, "memory stays bounded");
    }

    #[test]
    fn without_a_token_nothing_is_allowed() {
        let auth = Auth::new(None, "d", vec![], vec![]);
        assert_eq!(auth.login(""), Err(Refusal::NoToken));
        let h = headers(&[(AUTHORIZATION, "Bearer ")]);
        assert_eq!(auth.credential(&h), Err(Refusal::NoToken));
    }

    #[test]
    fn only_ip_literals_localhost_and_listed_names_are_answered() {
        let auth = Auth::new(
            None,
            "d",
            vec!["https://proxy.example.org".into()],
            vec!["Heat.Example.org".into()],
        );
        for ok in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "192.168.1.20:8080",
            "[::1]:8080",
            "[fe80::1]",
            "localhost:8080",
            "LOCALHOST",
            "hp.localhost",
            "heat.example.org",
            "heat.example.org:443",
            "proxy.example.org",
        ] {
            assert!(auth.host_allowed(ok), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            "heat.example.org.evil.example",
            "",
        ] {
            assert!(!auth.host_allowed(refused), "{refused}");
        }
    }

    #[test]
    fn origin_must_match_host_and_referer_stands_in() {
        let auth = Auth::new(Some("t".into()), "d", vec!["https://hp.example.org".into()], vec![]);
        let uri = Uri::from_static("/settings");
        let ok = |pairs: &[(axum::http::HeaderName, &str)], c| auth.same_origin(&headers(pairs), &uri, c).is_ok();
        assert!(ok(&[(HOST, "127.0.0.1:8080"), (ORIGIN, "http://127.0.0.1:8080")], None));
        assert!(!ok(&[(HOST, "127.0.0.1:8080"), (ORIGIN, "http://evil.example")], None));
        assert!(!ok(&[(HOST, "127.0.0.1:8080"), (ORIGIN, "null")], None));
        assert!(ok(
            &[(HOST, "127.0.0.1:8080"), (REFERER, "http://127.0.0.1:8080/settings?x")],
            None
        ));
        assert!(!ok(
            &[(HOST, "127.0.0.1:8080"), (REFERER, "http://127.0.0.1:8080.evil/x")],
            None
        ));
        assert!(ok(&[(HOST, "internal:8080"), (ORIGIN, "https://hp.example.org")], None));
        assert!(!ok(&[(HOST, "127.0.0.1:8080")], Some(Credential::Session)));
        assert!(ok(&[(HOST, "127.0.0.1:8080")], Some(Credential::Bearer)));
    }
}
