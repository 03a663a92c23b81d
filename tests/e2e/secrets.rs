//! Credentials never shown: a registry and a token server that echo the request's
//! `Authorization` header (and the credentials inside it, decoded and re-encoded) into
//! their error bodies and headers. farm prints those errors; it must print them without
//! the secret in any form it was sent in, and write it to no file but auth.json.

use std::io::BufReader;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;

use crate::support::http;
use crate::support::Farm;

const USER: &str = "echo-user";
/// Space, `@`, `/`, `+`, `&`, `=`: its form, percent and base64 encodings all differ.
const PASSWORD: &str = "s3cr3t p@ss/+&=";
const TOKEN: &str = "tok/en+SECRET-123==";

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// `WWW-Authenticate: Basic`; a request with credentials gets an echoing 400.
    Basic,
    /// A Bearer challenge whose realm is this server; it issues [`TOKEN`] for Basic
    /// credentials; the registry echoes the Bearer header.
    Bearer,
    /// The token server itself answers an echoing 400 (OAuth2 error body).
    TokenEcho,
}

struct EchoServer {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn form(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        match b {
            b' ' => out.push('+'),
            b if b.is_ascii_alphanumeric() || b"-._*".contains(&b) => out.push(char::from(b)),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Every way the server repeats what it got: the header, the decoded pair, the password
/// raw and form-encoded, the token raw and form-encoded; with escapes and a long tail.
fn echo_text(authorization: &str) -> String {
    let mut text = format!("echo: [{authorization}] \u{1b}[31m");
    if let Some(b64) = authorization.strip_prefix("Basic ") {
        let pair = String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap();
        let password = pair.split_once(':').unwrap().1.to_owned();
        text.push_str(&format!(
            " pair=[{pair}] pw=[{password}] form=[{}] nopad=[{}]",
            form(&password),
            b64.trim_end_matches('=')
        ));
    }
    if let Some(token) = authorization.strip_prefix("Bearer ") {
        text.push_str(&format!(" token=[{token}] form=[{}]", form(token)));
    }
    text.push_str(&"x".repeat(5000));
    text
}

fn start(mode: Mode) -> EchoServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    std::thread::spawn(move || {
        while !stopped.load(Ordering::Relaxed) {
            let Ok((stream, _)) = listener.accept() else {
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            };
            stream.set_nonblocking(false).unwrap();
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                let Ok(Some(head)) = http::read_request_head(&mut reader) else {
                    return;
                };
                let auth = head.header("authorization").map(str::to_owned);
                let json = "application/json".to_owned();
                let (status, headers, body) = match (mode, head.path(), auth) {
                    (Mode::Basic, _, None) => (
                        401,
                        vec![("WWW-Authenticate", r#"Basic realm="echo""#.to_owned())],
                        String::new(),
                    ),
                    (Mode::Bearer | Mode::TokenEcho, "/token", Some(auth)) => {
                        if mode == Mode::TokenEcho {
                            let body = serde_json::json!({
                                "error": "invalid_grant",
                                "error_description": echo_text(&auth),
                            });
                            (400, vec![("Content-Type", json)], body.to_string())
                        } else {
                            let body = serde_json::json!({"token": TOKEN, "expires_in": 300});
                            (200, vec![("Content-Type", json)], body.to_string())
                        }
                    }
                    (Mode::Bearer | Mode::TokenEcho, _, None) => (
                        401,
                        vec![(
                            "WWW-Authenticate",
                            format!(
                                r#"Bearer realm="http://127.0.0.1:{port}/token",service="echo""#
                            ),
                        )],
                        String::new(),
                    ),
                    (_, _, Some(auth)) => {
                        let body = serde_json::json!({"errors": [{
                            "code": "UNSUPPORTED",
                            "message": echo_text(&auth),
                        }]});
                        let headers = vec![
                            ("Content-Type", json),
                            ("X-Echo", auth.clone()),
                            ("Content-Type-Echo", auth),
                        ];
                        (400, headers, body.to_string())
                    }
                };
                let _ = http::write_response(&mut writer, status, &headers, body.as_bytes());
            });
        }
    });
    EchoServer { port, stop }
}

/// Every encoding of the secrets farm used (and the decoded pair).
fn forbidden() -> Vec<String> {
    let pair = format!("{USER}:{PASSWORD}");
    vec![
        PASSWORD.to_owned(),
        form(PASSWORD),
        pair.clone(),
        STANDARD.encode(&pair),
        STANDARD_NO_PAD.encode(&pair),
        TOKEN.to_owned(),
        form(TOKEN),
    ]
}

#[track_caller]
fn assert_shown_scrubbed(run: &crate::support::Run, farm: &Farm) {
    run.assert_farm_error();
    let output = run.all_output();
    for secret in forbidden() {
        assert!(
            !output.contains(&secret),
            "farm printed the secret form {secret:?}: {run:#?}"
        );
    }
    // The server's words were shown (so the check above means something), masked.
    assert!(output.contains("echo: ["), "the echo was shown: {run:#?}");
    assert!(output.contains("***"), "the secret was masked: {run:#?}");
    assert!(!output.contains('\u{1b}'), "no escape reached the terminal");
    assert!(output.len() < 6000, "the 5000-byte tail was cut: {run:#?}");
    // No file farm wrote (but its credential store) holds it.
    for path in crate::support::walk_names(&farm.root()) {
        let full = farm.root().join(&path);
        if path.ends_with("auth.json") || !full.is_file() {
            continue;
        }
        let bytes = std::fs::read(&full).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        for secret in forbidden() {
            assert!(
                !text.contains(&secret),
                "{} holds {secret:?}",
                full.display()
            );
        }
    }
}

/// `farm login` and `farm pull --username` against `server`: both show its echo scrubbed.
fn login_and_pull(server: &EchoServer) -> (Farm, String, String) {
    let host = format!("127.0.0.1:{}", server.port);
    let farm = Farm::new();
    let run = farm.run_stdin(&["login", "-u", USER, "--password-stdin", &host], PASSWORD);
    assert_shown_scrubbed(&run, &farm);
    let image = format!("{host}/e2e/echo:1");
    let run = farm.run_stdin(
        &["pull", "--username", USER, "--password-stdin", &image],
        PASSWORD,
    );
    assert_shown_scrubbed(&run, &farm);
    (farm, host, image)
}

#[test]
fn registry_echoing_basic_authorization_in_error_body_shows_no_secret() {
    let server = start(Mode::Basic);
    login_and_pull(&server);
}

#[test]
fn registry_echoing_bearer_token_in_error_body_shows_no_secret() {
    let server = start(Mode::Bearer);
    let (farm, host, image) = login_and_pull(&server);
    // Stored credentials (as `farm login` writes them) through `farm run`'s pull.
    let auth = serde_json::json!({"auths": {&host: {"auth": STANDARD.encode(format!("{USER}:{PASSWORD}"))}}});
    std::fs::create_dir_all(farm.root()).unwrap();
    std::fs::write(farm.root().join("auth.json"), auth.to_string()).unwrap();
    let run = farm.run(&["run", "--rm", &image, "true"]);
    assert_shown_scrubbed(&run, &farm);
}

#[test]
fn token_server_echoing_basic_credentials_shows_no_secret() {
    let server = start(Mode::TokenEcho);
    let host = format!("127.0.0.1:{}", server.port);
    let farm = Farm::new();
    let image = format!("{host}/e2e/echo:1");
    let run = farm.run_stdin(
        &["pull", "--username", USER, "--password-stdin", &image],
        PASSWORD,
    );
    assert_shown_scrubbed(&run, &farm);
}
