//! The client against [`super::testserver::TestServer`]s on 127.0.0.1 and 127.0.0.2.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

use super::testserver::{Reply, Seen, TestServer};
use super::*;
use crate::content::ContentStore;

fn client(options: RegistryOptions) -> RegistryClient {
    let timing = Timing {
        idle: Duration::from_secs(5),
        backoff: Duration::from_millis(5),
        attempts: 5,
    };
    RegistryClient::with_timing(options, timing).unwrap()
}

fn client_with_idle(idle: Duration) -> RegistryClient {
    let timing = Timing {
        idle,
        backoff: Duration::from_millis(5),
        attempts: 5,
    };
    RegistryClient::with_timing(RegistryOptions::default(), timing).unwrap()
}

fn target(server: &TestServer) -> Target {
    Target::new(&server.host(), &server.host(), "foo/bar")
}

fn descriptor(data: &[u8]) -> Descriptor {
    serde_json::from_value(serde_json::json!({
        "mediaType": crate::image::media_types::OCI_LAYER_GZIP,
        "digest": Digest::of(data).to_string(),
        "size": data.len(),
    }))
    .unwrap()
}

fn blob_data() -> Vec<u8> {
    (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

fn basic_header(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

fn with_creds(user: &str, pass: &str) -> RegistryOptions {
    RegistryOptions {
        credentials: Some(Credentials::new(user, pass)),
        ..Default::default()
    }
}

fn registry_requests(server: &TestServer) -> Vec<Seen> {
    server.seen()
}

#[tokio::test]
async fn cut_connection_resumes_with_range() {
    let data = Arc::new(blob_data());
    let served = data.clone();
    let server = TestServer::start("127.0.0.1", move |req| match req.header("range") {
        None => Reply::new(200, served.to_vec()).cut_after(30_000),
        Some(range) => {
            let start: usize = range
                .trim_start_matches("bytes=")
                .trim_end_matches('-')
                .parse()
                .unwrap();
            Reply::new(206, served[start..].to_vec()).header(
                "Content-Range",
                &format!("bytes {start}-{}/{}", served.len() - 1, served.len()),
            )
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    let desc = descriptor(&data);
    let mut ingest = store.ingest(&desc.digest, desc.size).unwrap();
    let last = Arc::new(AtomicUsize::new(0));
    let seen_progress = last.clone();
    let progress = move |n: u64| seen_progress.store(n as usize, Ordering::SeqCst);
    client(RegistryOptions::default())
        .fetch_blob_at(&target(&server), &desc, &mut ingest, &progress)
        .await
        .unwrap();
    assert_eq!(last.load(Ordering::SeqCst), data.len());
    let path = ingest.commit().await.unwrap();
    assert_eq!(std::fs::read(path).unwrap(), *data);
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].path(), format!("/v2/foo/bar/blobs/{}", desc.digest));
    assert_eq!(seen[0].header("range"), None);
    assert_eq!(seen[1].header("range"), Some("bytes=30000-"));
    assert!(seen[0].header("user-agent").unwrap().starts_with("farm/"));
}

#[tokio::test]
async fn server_ignoring_range_restarts_from_zero() {
    let data = Arc::new(blob_data());
    let served = data.clone();
    let count = Arc::new(AtomicUsize::new(0));
    let n = count.clone();
    let server = TestServer::start("127.0.0.1", move |_| {
        if n.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::new(200, served.to_vec()).cut_after(10_000)
        } else {
            Reply::new(200, served.to_vec())
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    let desc = descriptor(&data);
    let mut ingest = store.ingest(&desc.digest, desc.size).unwrap();
    client(RegistryOptions::default())
        .fetch_blob_at(&target(&server), &desc, &mut ingest, &|_| {})
        .await
        .unwrap();
    ingest.commit().await.unwrap();
    assert_eq!(server.seen()[1].header("range"), Some("bytes=10000-"));
}

#[tokio::test]
async fn blob_larger_than_descriptor_is_refused() {
    let data = blob_data();
    let mut bigger = data.clone();
    bigger.extend_from_slice(b"extra");
    let server = TestServer::start("127.0.0.1", move |_| Reply::new(200, bigger.clone()));
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    let desc = descriptor(&data);
    let mut ingest = store.ingest(&desc.digest, desc.size).unwrap();
    let err = client(RegistryOptions::default())
        .fetch_blob_at(&target(&server), &desc, &mut ingest, &|_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Content(ContentError::TooLarge { .. })),
        "{err}"
    );
    assert_eq!(server.seen().len(), 1, "too large is final, not retried");
}

#[tokio::test]
async fn retries_5xx_and_stops_on_404() {
    let data = Arc::new(blob_data());
    let served = data.clone();
    let count = Arc::new(AtomicUsize::new(0));
    let n = count.clone();
    let server = TestServer::start("127.0.0.1", move |req| {
        if req.path().contains("missing") {
            return Reply::new(
                404,
                r#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}"#,
            );
        }
        match n.fetch_add(1, Ordering::SeqCst) {
            0 => Reply::new(503, "busy"),
            1 => Reply::new(429, r#"{"errors":[{"code":"TOOMANYREQUESTS"}]}"#),
            _ => Reply::new(200, served.to_vec()),
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    let desc = descriptor(&data);
    let mut ingest = store.ingest(&desc.digest, desc.size).unwrap();
    let client = client(RegistryOptions::default());
    client
        .fetch_blob_at(&target(&server), &desc, &mut ingest, &|_| {})
        .await
        .unwrap();
    ingest.commit().await.unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 3);

    let missing = Target::new(&server.host(), &server.host(), "foo/missing");
    let other = descriptor(b"other");
    let mut ingest = store.ingest(&other.digest, other.size).unwrap();
    let before = server.seen().len();
    let err = client
        .fetch_blob_at(&missing, &other, &mut ingest, &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::BlobNotFound { .. }), "{err}");
    assert_eq!(server.seen().len(), before + 1);
}

/// A registry that wants `Bearer <token>` and names `realm` in its challenge.
fn bearer_registry(realm: String, token: &'static str, manifest: Vec<u8>) -> TestServer {
    TestServer::start("127.0.0.1", move |req| {
        if req.header("authorization") != Some(&format!("Bearer {token}")) {
            return Reply::new(401, r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#).header(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="{realm}",service="test-registry",scope="repository:foo/bar:pull""#),
            );
        }
        if req.path().contains("/manifests/") {
            Reply::new(200, manifest.clone())
                .header("Content-Type", crate::image::media_types::OCI_MANIFEST)
        } else {
            Reply::new(200, b"layer".to_vec())
        }
    })
}

#[tokio::test]
async fn bearer_flow_sends_credentials_to_trusted_realm_and_reuses_the_token() {
    let tokens = TestServer::start("127.0.0.1", |req| {
        if req.header("authorization") == Some(&basic_header("alice", "pw")) {
            Reply::new(200, r#"{"token":"tok-alice","expires_in":300}"#)
        } else {
            Reply::new(401, "{}")
        }
    });
    let manifest = br#"{"schemaVersion":2}"#.to_vec();
    let registry = bearer_registry(
        format!("http://{}/token", tokens.host()),
        "tok-alice",
        manifest.clone(),
    );
    let client = client(with_creds("alice", "pw"));
    let target = target(&registry);
    let fetched = client.fetch_manifest_at(&target, "latest").await.unwrap();
    assert_eq!(fetched.body, manifest);
    assert_eq!(fetched.digest, Digest::of(&manifest));
    assert_eq!(
        fetched.content_type.as_deref(),
        Some(crate::image::media_types::OCI_MANIFEST)
    );

    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    let desc = descriptor(b"layer");
    let mut ingest = store.ingest(&desc.digest, desc.size).unwrap();
    client
        .fetch_blob_at(&target, &desc, &mut ingest, &|_| {})
        .await
        .unwrap();
    ingest.commit().await.unwrap();

    let token_requests = tokens.seen();
    assert_eq!(
        token_requests.len(),
        1,
        "one token for the manifest and the blob"
    );
    let query = &token_requests[0].target;
    assert!(query.contains("service=test-registry"), "{query}");
    assert!(
        query.contains("scope=repository%3Afoo%2Fbar%3Apull"),
        "{query}"
    );
    let seen = registry_requests(&registry);
    assert_eq!(
        seen.len(),
        3,
        "401, manifest with token, blob with cached token"
    );
    assert_eq!(seen[0].header("authorization"), None);
    assert_eq!(
        seen[0].header("accept"),
        Some(crate::image::media_types::MANIFEST_ACCEPT)
    );
    assert_eq!(seen[1].header("authorization"), Some("Bearer tok-alice"));
    assert_eq!(seen[2].header("authorization"), Some("Bearer tok-alice"));
}

/// CVE-2026-33540: the Go clients sent the user's Basic credentials to whatever realm the
/// registry named. A registry on 127.0.0.1 naming a realm on 127.0.0.2 gets an anonymous
/// token request: the realm must see no Authorization header.
#[tokio::test]
async fn cve_2026_33540_foreign_realm_sees_no_credentials() {
    let tokens = TestServer::start("127.0.0.2", |_| {
        Reply::new(200, r#"{"access_token":"anon-tok"}"#)
    });
    let registry = bearer_registry(
        format!("http://{}/token", tokens.host()),
        "anon-tok",
        b"{}".to_vec(),
    );
    let client = client(with_creds("alice", "secret-password"));
    client
        .fetch_manifest_at(&target(&registry), "latest")
        .await
        .unwrap();
    let token_requests = tokens.seen();
    assert_eq!(token_requests.len(), 1);
    assert_eq!(token_requests[0].header("authorization"), None);
    assert!(!format!("{:?}", token_requests[0]).contains("secret-password"));
}

#[tokio::test]
async fn identity_token_is_posted_as_refresh_token() {
    let tokens = TestServer::start("127.0.0.1", |req| {
        let body = String::from_utf8_lossy(&req.body);
        if req.method == "POST"
            && body.contains("grant_type=refresh_token")
            && body.contains("refresh_token=refresh-1")
        {
            Reply::new(200, r#"{"access_token":"from-refresh","expires_in":120}"#)
        } else {
            Reply::new(400, "{}")
        }
    });
    let registry = bearer_registry(
        format!("http://{}/token", tokens.host()),
        "from-refresh",
        b"{}".to_vec(),
    );
    let client = client(with_creds(credentials::IDENTITY_TOKEN_USER, "refresh-1"));
    client
        .fetch_manifest_at(&target(&registry), "v1")
        .await
        .unwrap();
    let seen = tokens.seen();
    let body = String::from_utf8_lossy(&seen[0].body);
    assert!(
        body.contains("client_id=farm") && body.contains("service=test-registry"),
        "{body}"
    );
    assert!(
        body.contains("scope=repository%3Afoo%2Fbar%3Apull"),
        "{body}"
    );
    assert_eq!(seen[0].header("authorization"), None);
}

#[tokio::test]
async fn link_local_realm_is_refused_before_any_request() {
    let registry = bearer_registry(
        "http://169.254.169.254/token".to_owned(),
        "x",
        b"{}".to_vec(),
    );
    let err = client(with_creds("a", "b"))
        .fetch_manifest_at(&target(&registry), "latest")
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::RealmRefused { .. }), "{err}");
    assert!(err.to_string().contains("link-local"), "{err}");
}

#[tokio::test]
async fn redirect_to_another_host_carries_no_authorization() {
    let data = Arc::new(blob_data());
    let served = data.clone();
    let cdn = TestServer::start("127.0.0.2", move |_| Reply::new(200, served.to_vec()));
    let location = format!("http://{}/cdn/blob?sig=abc", cdn.host());
    let registry = TestServer::start("127.0.0.1", move |req| {
        if req.header("authorization") != Some(&basic_header("bob", "pw")) {
            return Reply::new(401, "").header("WWW-Authenticate", r#"Basic realm="registry""#);
        }
        Reply::new(307, "").header("Location", &location)
    });
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    let desc = descriptor(&data);
    let mut ingest = store.ingest(&desc.digest, desc.size).unwrap();
    client(with_creds("bob", "pw"))
        .fetch_blob_at(&target(&registry), &desc, &mut ingest, &|_| {})
        .await
        .unwrap();
    ingest.commit().await.unwrap();
    let cdn_seen = cdn.seen();
    assert_eq!(cdn_seen.len(), 1);
    assert_eq!(cdn_seen[0].header("authorization"), None);
    assert_eq!(cdn_seen[0].target, "/cdn/blob?sig=abc");
    let seen = registry.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[1].header("authorization"),
        Some(basic_header("bob", "pw").as_str())
    );
}

#[tokio::test]
async fn redirects_to_metadata_and_loops_are_refused() {
    let metadata = TestServer::start("127.0.0.1", |_| {
        Reply::new(302, "").header("Location", "http://169.254.169.254/latest/meta-data/")
    });
    let err = client(RegistryOptions::default())
        .fetch_manifest_at(&target(&metadata), "latest")
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::RedirectRefused { .. }),
        "{err}"
    );
    let looping = TestServer::start("127.0.0.1", |req| {
        Reply::new(301, "").header("Location", &format!("{}x", req.target))
    });
    let err = client(RegistryOptions::default())
        .fetch_manifest_at(&target(&looping), "latest")
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::TooManyRedirects { .. }),
        "{err}"
    );
    assert_eq!(looping.seen().len(), MAX_REDIRECTS + 1);
}

#[tokio::test]
async fn too_large_manifest_is_refused() {
    let big = vec![b' '; crate::image::MAX_DOCUMENT_BYTES as usize + 1];
    let server = TestServer::start("127.0.0.1", move |_| Reply::new(200, big.clone()));
    let err = client(RegistryOptions::default())
        .fetch_manifest_at(&target(&server), "latest")
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::ManifestTooLarge { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn manifest_digests_are_checked() {
    let body = br#"{"schemaVersion":2,"layers":[]}"#.to_vec();
    let good = Digest::of(&body);
    let liar = Digest::of(b"something else");
    let header = liar.to_string();
    let served = body.clone();
    let server = TestServer::start("127.0.0.1", move |req| {
        if req.path().ends_with("/lying") {
            Reply::new(200, served.clone()).header("Docker-Content-Digest", &header)
        } else {
            Reply::new(200, served.clone()).header("Docker-Content-Digest", "not-a-digest")
        }
    });
    let client = client(RegistryOptions::default());
    let target = target(&server);
    let err = client
        .fetch_manifest_at(&target, "lying")
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::ContentDigestHeaderMismatch { .. }),
        "{err}"
    );
    // A malformed header is only a hint: ignored; the body is hashed here.
    assert_eq!(
        client
            .fetch_manifest_at(&target, "latest")
            .await
            .unwrap()
            .digest,
        good
    );
    assert_eq!(
        client
            .fetch_manifest_at(&target, &good.to_string())
            .await
            .unwrap()
            .digest,
        good
    );
    let err = client
        .fetch_manifest_at(&target, &liar.to_string())
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::ManifestDigestMismatch { .. }),
        "{err}"
    );
    let err = client
        .fetch_manifest_at(&target, "../../etc")
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::InvalidRequest { .. }), "{err}");
}

#[tokio::test]
async fn registry_errors_become_clear_messages() {
    let server = TestServer::start("127.0.0.1", |req| {
        if req.path().contains("/nope/") {
            Reply::new(
                404,
                r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#,
            )
        } else if req.path().ends_with("/limited") {
            Reply::new(
                429,
                r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
            )
        } else {
            Reply::new(
                404,
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            )
        }
    });
    let client = client(RegistryOptions::default());
    let host = server.host();
    let err = client
        .fetch_manifest_at(&target(&server), "missing")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("manifest for {host}/foo/bar:missing not found: check the tag")
    );
    let err = client
        .fetch_manifest_at(&Target::new(&host, &host, "nope/x"), "latest")
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::NameUnknown { .. }), "{err}");
    let err = client
        .fetch_manifest_at(&target(&server), "limited")
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::TooManyRequests { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("farm login"), "{err}");
}

#[tokio::test]
async fn rejected_credentials_give_access_denied_without_the_password() {
    let server = TestServer::start("127.0.0.1", |_| {
        Reply::new(401, "").header("WWW-Authenticate", r#"Basic realm="r""#)
    });
    let err = client(with_creds("mallory", "hunter2"))
        .fetch_manifest_at(&target(&server), "latest")
        .await
        .unwrap_err();
    let host = server.host();
    assert_eq!(
        err.to_string(),
        format!(
            "access denied to foo/bar on {host}: run `farm login {host}` or check the credentials"
        )
    );
    assert!(!format!("{err:?}").contains("hunter2"));
    assert_eq!(
        server.seen().len(),
        2,
        "one anonymous try, one with credentials"
    );
}

#[tokio::test]
async fn check_login_basic_and_bearer() {
    let basic = TestServer::start("127.0.0.1", |req| {
        if req.header("authorization") == Some(&basic_header("u", "right")) {
            Reply::new(200, "{}")
        } else {
            Reply::new(401, "").header("WWW-Authenticate", r#"Basic realm="r""#)
        }
    });
    let client = client(RegistryOptions::default());
    client
        .check_login(&basic.host(), &Credentials::new("u", "right"))
        .await
        .unwrap();
    let err = client
        .check_login(&basic.host(), &Credentials::new("u", "wrong"))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::AccessDenied { .. }), "{err}");

    let tokens = TestServer::start("127.0.0.1", |req| {
        if req.header("authorization") == Some(&basic_header("u", "right")) {
            Reply::new(200, r#"{"token":"t"}"#)
        } else {
            Reply::new(401, "{}")
        }
    });
    let realm = format!("http://{}/token", tokens.host());
    let bearer = TestServer::start("127.0.0.1", move |req| {
        if req.header("authorization") == Some("Bearer t") {
            Reply::new(200, "{}")
        } else {
            Reply::new(401, "").header(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="{realm}",service="s""#),
            )
        }
    });
    client
        .check_login(&bearer.host(), &Credentials::new("u", "right"))
        .await
        .unwrap();
    let err = client
        .check_login(&bearer.host(), &Credentials::new("u", "wrong"))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::AccessDenied { .. }), "{err}");
}

#[test]
fn client_debug_shows_no_credentials() {
    let client = client(with_creds("alice", "hunter2"));
    assert!(!format!("{client:?}").contains("hunter2"));
}

#[test]
fn redirect_rules() {
    let https = Url::parse("https://registry.example.com/v2/x/blobs/sha256:1").unwrap();
    let http = Url::parse("http://127.0.0.1:5000/v2/x/blobs/sha256:1").unwrap();
    assert!(redirect_target(&https, "http://cdn.example.com/blob")
        .unwrap_err()
        .contains("plain http"));
    assert_eq!(
        redirect_target(&https, "/other").unwrap().as_str(),
        "https://registry.example.com/other"
    );
    assert!(redirect_target(&https, "https://cdn.example.com/b?sig=1").is_ok());
    assert!(redirect_target(&http, "http://127.0.0.2:1/b").is_ok());
    assert!(redirect_target(&http, "https://cdn.example.com/b").is_ok());
    assert!(redirect_target(&https, "file:///etc/shadow").is_err());
    assert!(redirect_target(&https, "https://user:pw@cdn.example.com/b").is_err());
}

#[test]
fn plain_http_only_for_loopback_and_insecure_hosts() {
    let options = RegistryOptions {
        insecure: vec!["registry.lan:5000".to_owned()],
        ..Default::default()
    };
    let client = client(options);
    assert!(client.insecure_allowed("127.0.0.1:5000"));
    assert!(client.insecure_allowed("localhost"));
    assert!(client.insecure_allowed("[::1]:80"));
    assert!(client.insecure_allowed("registry.lan:5000"));
    assert!(!client.insecure_allowed("registry.lan:5001"));
    assert!(!client.insecure_allowed("registry.lan"));
    assert!(!client.insecure_allowed("ghcr.io"));
}

#[tokio::test]
async fn too_large_manifest_without_content_length_is_cut_at_the_cap() {
    let big = vec![b' '; crate::image::MAX_DOCUMENT_BYTES as usize + 4096];
    let server = TestServer::start("127.0.0.1", move |_| {
        Reply::new(200, big.clone()).no_length()
    });
    let err = client(RegistryOptions::default())
        .fetch_manifest_at(&target(&server), "latest")
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::ManifestTooLarge { .. }),
        "{err}"
    );
    // A body that fits is read to the end of the connection.
    let small = TestServer::start("127.0.0.1", |_| Reply::new(200, b"{}".to_vec()).no_length());
    let fetched = client(RegistryOptions::default())
        .fetch_manifest_at(&target(&small), "latest")
        .await
        .unwrap();
    assert_eq!(fetched.body, b"{}");
}

#[tokio::test]
async fn stalled_blob_times_out_and_resumes_with_range() {
    let data = Arc::new(blob_data());
    let served = data.clone();
    let server = TestServer::start("127.0.0.1", move |req| match req.header("range") {
        None => Reply::new(200, served.to_vec()).stall_after(20_000, Duration::from_secs(3)),
        Some(_) => Reply::new(206, served[20_000..].to_vec()).header(
            "Content-Range",
            &format!("bytes 20000-{}/{}", served.len() - 1, served.len()),
        ),
    });
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    let desc = descriptor(&data);
    let mut ingest = store.ingest(&desc.digest, desc.size).unwrap();
    let started = std::time::Instant::now();
    client_with_idle(Duration::from_millis(300))
        .fetch_blob_at(&target(&server), &desc, &mut ingest, &|_| {})
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the idle timeout cut the stall short"
    );
    ingest.commit().await.unwrap();
    assert_eq!(server.seen()[1].header("range"), Some("bytes=20000-"));
}
