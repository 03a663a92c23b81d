//! `TestRegistry`: Debian's `docker-registry` (distribution 2.8) on a free loopback port
//! with a temp storage root, anonymous, htpasswd or token auth.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::http;
use super::REGISTRY_BIN;

pub const USER: &str = "farmuser";
pub const PASSWORD: &str = "s3cret-Pa55word-never-printed";

/// How the registry authenticates clients.
#[derive(Debug, Clone)]
pub enum RegistryAuth {
    Anonymous,
    /// htpasswd with [`USER`] / [`PASSWORD`].
    Htpasswd,
    /// Bearer tokens from a token server.
    Token {
        realm: String,
        service: String,
        issuer: String,
        root_cert_bundle: PathBuf,
    },
}

pub struct TestRegistry {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
    pub auth: RegistryAuth,
}

pub fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl TestRegistry {
    pub fn anonymous() -> TestRegistry {
        TestRegistry::start(RegistryAuth::Anonymous, None)
    }
    pub fn htpasswd() -> TestRegistry {
        TestRegistry::start(RegistryAuth::Htpasswd, None)
    }

    /// Start with `auth`; `storage` reuses another registry's storage root (to restart on it).
    pub fn start(auth: RegistryAuth, storage: Option<&Path>) -> TestRegistry {
        let dir = tempfile::Builder::new()
            .prefix("farm-e2e-registry-")
            .tempdir()
            .unwrap();
        let storage = storage
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.path().join("storage"));
        std::fs::create_dir_all(&storage).unwrap();
        let auth_yaml = match &auth {
            RegistryAuth::Anonymous => String::new(),
            RegistryAuth::Htpasswd => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", "-C", "4", USER, PASSWORD])
                    .output()
                    .expect("run htpasswd (apt install apache2-utils)");
                assert!(out.status.success(), "htpasswd failed: {out:?}");
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, &out.stdout).unwrap();
                format!("auth:\n  htpasswd:\n    realm: farm-test\n    path: {}\n", path.display())
            }
            RegistryAuth::Token { realm, service, issuer, root_cert_bundle } => format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                root_cert_bundle.display()
            ),
        };
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = free_port("127.0.0.1");
            let config = format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  redirect:\n    disable: true\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: farm-e2e-http-secret\nhealth:\n  storagedriver:\n    enabled: false\n{auth_yaml}",
                storage.display()
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).unwrap();
            let log_path = dir.path().join("registry.log");
            let log = std::fs::File::create(&log_path).unwrap();
            let mut child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("spawn docker-registry");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port taken by someone else, most likely: try another
                }
                if let Ok(resp) =
                    http::request("GET", &format!("127.0.0.1:{port}"), "/v2/", &[], &[])
                {
                    if resp.status == 200 || resp.status == 401 {
                        return TestRegistry {
                            dir,
                            child,
                            port,
                            auth,
                        };
                    }
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("docker-registry did not start; its log:\n{last_log}");
    }

    /// "127.0.0.1:PORT"
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The storage driver's root directory.
    pub fn storage(&self) -> PathBuf {
        let default = self.dir.path().join("storage");
        let config = std::fs::read_to_string(self.dir.path().join("config.yml")).unwrap();
        config
            .lines()
            .find_map(|l| l.trim().strip_prefix("rootdirectory: ").map(PathBuf::from))
            .unwrap_or(default)
    }

    /// Where the registry keeps the bytes of `digest`.
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = super::hex_of(digest);
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- docker-registry log ({}) ----\n{}",
                self.host(),
                self.log()
            );
        }
    }
}
