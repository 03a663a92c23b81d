//! A token server as distribution's token auth expects: checks Basic credentials and
//! issues RS256 JWTs whose JOSE header carries `x5c` (a self-signed certificate the
//! registry trusts through `rootcertbundle`). Keys come from the `openssl` CLI at test time.
//! Every request's target and Authorization header is recorded.

use std::io::BufReader;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;

use super::http;
use super::registry::{RegistryAuth, PASSWORD, USER};

pub const SERVICE: &str = "farm-test-registry";
pub const ISSUER: &str = "farm-test-issuer";

#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub target: String,
    pub authorization: Option<String>,
}

pub struct TokenServer {
    dir: tempfile::TempDir,
    port: u16,
    pub requests: Arc<Mutex<Vec<TokenRequest>>>,
    stop: Arc<AtomicBool>,
}

struct Keys {
    key_pem: PathBuf,
    x5c: String,
}

impl TokenServer {
    /// Start on a free port; anonymous requests get tokens for the repositories in `public`
    /// only (as Docker Hub does), credentialed ones for what they ask.
    pub fn start(public: &[&str]) -> TokenServer {
        let dir = tempfile::Builder::new()
            .prefix("farm-e2e-token-")
            .tempdir()
            .unwrap();
        let key_pem = dir.path().join("key.pem");
        let cert_pem = dir.path().join("cert.pem");
        let out = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=farm-test-token-issuer",
            ])
            .arg("-keyout")
            .arg(&key_pem)
            .arg("-out")
            .arg(&cert_pem)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl req failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert_pem)
            .output()
            .expect("run openssl x509");
        assert!(der.status.success());
        let keys = Arc::new(Keys {
            key_pem,
            x5c: STANDARD.encode(&der.stdout),
        });

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let public: Vec<String> = public.iter().map(|s| s.to_string()).collect();
        {
            let requests = requests.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            stream.set_nonblocking(false).unwrap();
                            let keys = keys.clone();
                            let requests = requests.clone();
                            let public = public.clone();
                            std::thread::spawn(move || serve(stream, &keys, &requests, &public));
                        }
                        Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                    }
                }
            });
        }
        TokenServer {
            dir,
            port,
            requests,
            stop,
        }
    }

    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// The registry auth config that trusts this server.
    pub fn registry_auth(&self) -> RegistryAuth {
        RegistryAuth::Token {
            realm: self.realm(),
            service: SERVICE.to_string(),
            issuer: ISSUER.to_string(),
            root_cert_bundle: self.dir.path().join("cert.pem"),
        }
    }

    pub fn requests(&self) -> Vec<TokenRequest> {
        self.requests.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.requests.lock().unwrap().clear();
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

fn serve(
    stream: std::net::TcpStream,
    keys: &Keys,
    requests: &Mutex<Vec<TokenRequest>>,
    public: &[String],
) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let Ok(Some(head)) = http::read_request_head(&mut reader) else {
        return;
    };
    let authorization = head.header("authorization").map(str::to_string);
    requests.lock().unwrap().push(TokenRequest {
        target: head.target.clone(),
        authorization: authorization.clone(),
    });

    let authenticated = match authorization.as_deref() {
        None => false,
        Some(value) if value == basic(USER, PASSWORD) => true,
        Some(_) => {
            let _ = http::write_response(
                &mut writer,
                401,
                &[("Content-Type", "application/json".into())],
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#,
            );
            return;
        }
    };
    let query = head.target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut access = Vec::new();
    for (key, value) in query.split('&').filter_map(|kv| kv.split_once('=')) {
        if key != "scope" {
            continue;
        }
        let scope = percent_decode(value);
        // repository:NAME:ACTIONS (NAME may hold ':' only with a port, never here)
        let mut parts = scope.splitn(3, ':');
        let (Some(kind), Some(name), Some(actions)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if kind != "repository" || !(authenticated || public.iter().any(|p| p == name)) {
            continue;
        }
        let actions: Vec<&str> = actions
            .split(',')
            .filter(|a| *a == "pull" || *a == "push")
            .collect();
        access.push(serde_json::json!({"type": "repository", "name": name, "actions": actions}));
    }
    let token = sign_token(keys, if authenticated { USER } else { "" }, access);
    let body = serde_json::json!({"token": token, "access_token": token, "expires_in": 300});
    let _ = http::write_response(
        &mut writer,
        200,
        &[("Content-Type", "application/json".into())],
        body.to_string().as_bytes(),
    );
}

fn sign_token(keys: &Keys, subject: &str, access: Vec<serde_json::Value>) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [keys.x5c]});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": subject, "aud": SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now,
        "jti": format!("jti-{now}-{}", rand_suffix()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(&keys.key_pem)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run openssl dgst");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(signing_input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl dgst -sign failed");
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(out.stdout))
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    h.finish()
}

pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 3;
                }
                Err(_) => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
