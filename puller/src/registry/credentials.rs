//! Where credentials come from: the caller, farm's own auth file (`farm login`), docker's
//! `config.json` (`auths`, `credsStore`, `credHelpers`, running `docker-credential-*`).

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Map, Value};

use super::{RegistryError, RegistryOptions};
use crate::secret::Credentials;

/// The username docker uses for an identity (refresh) token.
pub const IDENTITY_TOKEN_USER: &str = "<token>";

/// Config files are small; refuse anything bigger than this.
const MAX_CONFIG_BYTES: u64 = 4 << 20;
/// Output of a credential helper.
const MAX_HELPER_OUTPUT: u64 = 64 << 10;
const HELPER_TIMEOUT: Duration = Duration::from_secs(10);

/// farm's credential store: a docker-format `{"auths": {...}}` JSON file, mode 0600.
#[derive(Debug, Clone)]
pub struct AuthFile {
    path: PathBuf,
}

impl AuthFile {
    pub fn new(path: &Path) -> AuthFile {
        AuthFile {
            path: path.to_owned(),
        }
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Store credentials for `registry` (write-then-rename, 0600).
    pub fn save(&self, registry: &str, credentials: &Credentials) -> Result<(), RegistryError> {
        let mut root = self.read_or_empty()?;
        let auths = auths_mut(&mut root, &self.path)?;
        let key = normalize_key(registry);
        auths.retain(|k, _| normalize_key(k) != key);
        let mut entry = Map::new();
        if credentials.username == IDENTITY_TOKEN_USER {
            entry.insert(
                "identitytoken".into(),
                Value::String(credentials.password.expose().to_owned()),
            );
        } else {
            let pair = format!("{}:{}", credentials.username, credentials.password.expose());
            entry.insert(
                "auth".into(),
                Value::String(base64::engine::general_purpose::STANDARD.encode(pair)),
            );
        }
        auths.insert(key, Value::Object(entry));
        self.write(&root)
    }
    /// Remove credentials for `registry`; false if there were none.
    pub fn remove(&self, registry: &str) -> Result<bool, RegistryError> {
        let Some(mut root) = read_json(&self.path)? else {
            return Ok(false);
        };
        let auths = auths_mut(&mut root, &self.path)?;
        let key = normalize_key(registry);
        let before = auths.len();
        auths.retain(|k, _| normalize_key(k) != key);
        if auths.len() == before {
            return Ok(false);
        }
        self.write(&root)?;
        Ok(true)
    }
    pub fn get(&self, registry: &str) -> Result<Option<Credentials>, RegistryError> {
        let Some(root) = read_json(&self.path)? else {
            return Ok(None);
        };
        auths_entry(&root, registry, &self.path)
    }

    fn read_or_empty(&self) -> Result<Value, RegistryError> {
        Ok(read_json(&self.path)?.unwrap_or_else(|| Value::Object(Map::new())))
    }

    fn write(&self, root: &Value) -> Result<(), RegistryError> {
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| RegistryError::Io { path, source }
        };
        let parent = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        if !parent.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&parent)
                .map_err(io_err(&parent))?;
        }
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent.join(format!(
            ".{name}.{}-{:08x}.tmp",
            std::process::id(),
            rand::random::<u32>()
        ));
        let bytes = serde_json::to_vec_pretty(root).expect("a json value serializes");
        let result = (|| {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)?;
            // The mode passed to open is masked by umask; make sure nobody else can read it.
            let mode = file.metadata()?.mode();
            if mode & 0o077 != 0 {
                file.set_permissions(fs::Permissions::from_mode(0o600))?;
                if file.metadata()?.mode() & 0o077 != 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        "cannot make the file private (0600)",
                    ));
                }
            }
            file.write_all(&bytes)?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            fs::rename(&tmp, &self.path)
        })();
        if let Err(source) = result {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(&self.path)(source));
        }
        Ok(())
    }
}

fn auths_mut<'a>(
    root: &'a mut Value,
    path: &Path,
) -> Result<&'a mut Map<String, Value>, RegistryError> {
    let invalid = || RegistryError::CredentialsFile {
        path: path.to_owned(),
        reason: "expected a json object with an \"auths\" object; fix or remove the file".into(),
    };
    let object = root.as_object_mut().ok_or_else(invalid)?;
    let auths = object
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    auths.as_object_mut().ok_or_else(invalid)
}

/// Read a JSON file, bounded; None when it does not exist.
fn read_json(path: &Path) -> Result<Option<Value>, RegistryError> {
    let file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(RegistryError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| RegistryError::Io {
            path: path.to_owned(),
            source,
        })?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(RegistryError::CredentialsFile {
            path: path.to_owned(),
            reason: format!("larger than {MAX_CONFIG_BYTES} bytes"),
        });
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Some(Value::Object(Map::new())));
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| RegistryError::CredentialsFile {
            path: path.to_owned(),
            // serde_json's message gives line and column, never the content.
            reason: format!("invalid json ({e}); fix or remove the file"),
        })
}

/// The canonical key of a registry as docker config files spell it in many ways:
/// `https://index.docker.io/v1/`, `registry-1.docker.io` and `docker.io` all mean
/// `docker.io`; for others the scheme and a trailing `/`, `/v1/` or `/v2/` are dropped.
pub fn normalize_key(key: &str) -> String {
    let mut s = key.trim();
    for prefix in ["https://", "http://"] {
        if s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix) {
            s = &s[prefix.len()..];
        }
    }
    let mut s = s.trim_end_matches('/');
    for suffix in ["/v1", "/v2"] {
        if let Some(rest) = s.strip_suffix(suffix) {
            s = rest.trim_end_matches('/');
        }
    }
    let s = s.to_ascii_lowercase();
    match s.as_str() {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        _ => s,
    }
}

/// The credentials of the `auths` entry for `registry` in a docker-format file.
fn auths_entry(
    root: &Value,
    registry: &str,
    path: &Path,
) -> Result<Option<Credentials>, RegistryError> {
    let Some(auths) = root.get("auths").and_then(Value::as_object) else {
        return Ok(None);
    };
    let key = normalize_key(registry);
    // An exact key wins over an equivalent spelling.
    let entry = auths.get(registry).or_else(|| {
        auths
            .iter()
            .find(|(k, _)| normalize_key(k) == key)
            .map(|(_, v)| v)
    });
    let Some(entry) = entry else {
        return Ok(None);
    };
    let invalid = |reason: &str| RegistryError::CredentialsFile {
        path: path.to_owned(),
        reason: format!("the entry for {registry} {reason}; run `farm login {registry}` again"),
    };
    let text = |name: &str| {
        entry
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    if let Some(token) = text("identitytoken") {
        return Ok(Some(Credentials::new(IDENTITY_TOKEN_USER, token)));
    }
    if let Some(auth) = text("auth") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| invalid("has an \"auth\" value that is not base64"))?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| invalid("has an \"auth\" value that is not utf-8"))?;
        let Some((user, pass)) = decoded.split_once(':') else {
            return Err(invalid("has an \"auth\" value without `user:password`"));
        };
        return Ok(Some(Credentials::new(user, pass)));
    }
    if let (Some(user), Some(pass)) = (text("username"), text("password")) {
        return Ok(Some(Credentials::new(user, pass)));
    }
    Ok(None)
}

/// Credentials for `registry`, in order: the caller's, farm's auth file, docker's config.
pub fn lookup(
    registry: &str,
    options: &RegistryOptions,
) -> Result<Option<Credentials>, RegistryError> {
    if let Some(credentials) = &options.credentials {
        return Ok(Some(credentials.clone()));
    }
    if let Some(path) = &options.auth_file {
        if let Some(credentials) = AuthFile::new(path).get(registry)? {
            return Ok(Some(credentials));
        }
    }
    let config = match &options.docker_config {
        Some(path) => Some(path.clone()),
        None => default_docker_config(),
    };
    match config {
        Some(path) => docker_config_lookup(&path, registry),
        None => Ok(None),
    }
}

fn default_docker_config() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".docker/config.json"))
}

/// `credHelpers[registry]`, then `credsStore`, then `auths[registry]` of a docker config.
pub fn docker_config_lookup(
    path: &Path,
    registry: &str,
) -> Result<Option<Credentials>, RegistryError> {
    let Some(root) = read_json(path)? else {
        return Ok(None);
    };
    let key = normalize_key(registry);
    let helper = root
        .get("credHelpers")
        .and_then(Value::as_object)
        .and_then(|helpers| helpers.iter().find(|(k, _)| normalize_key(k) == key))
        .and_then(|(_, v)| v.as_str())
        .filter(|s| !s.is_empty());
    if let Some(helper) = helper {
        return run_helper(helper, registry);
    }
    if let Some(store) = root
        .get("credsStore")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        if let Some(credentials) = run_helper(store, registry)? {
            return Ok(Some(credentials));
        }
    }
    auths_entry(&root, registry, path)
}

/// What a helper is asked for: docker asks for Docker Hub by its v1 index URL.
fn helper_server_url(registry: &str) -> String {
    if normalize_key(registry) == "docker.io" {
        "https://index.docker.io/v1/".to_owned()
    } else {
        registry.to_owned()
    }
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(program))
        .find(|candidate| {
            fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Run `docker-credential-<helper> get` with the server URL on stdin. A helper runs with
/// only PATH and HOME, for at most 10 s, and its output is bounded.
fn run_helper(helper: &str, registry: &str) -> Result<Option<Credentials>, RegistryError> {
    let fail = |reason: String| RegistryError::CredentialHelper {
        helper: helper.to_owned(),
        registry: registry.to_owned(),
        reason,
    };
    if !helper
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        || helper.starts_with('.')
    {
        return Err(fail(
            "the helper name is not a plain name; fix credsStore/credHelpers in the docker config"
                .into(),
        ));
    }
    let program = format!("docker-credential-{helper}");
    let Some(binary) = find_on_path(&program) else {
        return Err(fail(format!(
            "{program} is not on PATH: install it, or remove it from credsStore/credHelpers in the docker config"
        )));
    };
    let mut command = Command::new(&binary);
    command
        .arg("get")
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for name in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    let mut child = command
        .spawn()
        .map_err(|e| fail(format!("cannot run {}: {e}", binary.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading gives EPIPE: its exit status tells the rest.
        let _ = stdin.write_all(helper_server_url(registry).as_bytes());
    }
    let stdout = child.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.take(MAX_HELPER_OUTPUT + 1).read_to_end(&mut out);
        out
    });
    let deadline = Instant::now() + HELPER_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!(
                    "{program} did not answer within {} s",
                    HELPER_TIMEOUT.as_secs()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(fail(format!("waiting for {program}: {e}"))),
        }
    };
    let out = reader.join().unwrap_or_default();
    if out.len() as u64 > MAX_HELPER_OUTPUT {
        return Err(fail(format!(
            "{program} wrote more than {MAX_HELPER_OUTPUT} bytes"
        )));
    }
    if !status.success() {
        if String::from_utf8_lossy(&out).contains("credentials not found") {
            return Ok(None);
        }
        return Err(fail(format!("{program} get failed ({status})")));
    }
    #[derive(serde::Deserialize)]
    struct HelperAnswer {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let answer: HelperAnswer = serde_json::from_slice(&out).map_err(|_| {
        fail(format!(
            "{program} get printed something that is not its json answer"
        ))
    })?;
    if answer.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials::new(answer.username, answer.secret)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// PATH is process-global: tests that change it hold this lock.
    static PATH_LOCK: Mutex<()> = Mutex::new(());

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn normalizes_docker_hub_and_url_keys() {
        for key in [
            "docker.io",
            "index.docker.io",
            "registry-1.docker.io",
            "https://index.docker.io/v1/",
            "https://index.docker.io/v1",
        ] {
            assert_eq!(normalize_key(key), "docker.io", "{key}");
        }
        for key in [
            "ghcr.io",
            "https://ghcr.io",
            "http://ghcr.io/",
            "https://ghcr.io/v2/",
            "GHCR.io/v1/",
        ] {
            assert_eq!(normalize_key(key), "ghcr.io", "{key}");
        }
        assert_eq!(normalize_key("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_ne!(normalize_key("ghcr.io.evil.net"), "ghcr.io");
    }

    #[test]
    fn docker_config_auths_base64_and_identity_token() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        let json = serde_json::json!({
            "auths": {
                "https://index.docker.io/v1/": { "auth": b64("hubuser:hub:pass") },
                "ghcr.io": { "auth": b64("x:y"), "identitytoken": "refresh-123" },
                "http://127.0.0.1:5000/v2/": { "username": "u", "password": "p" },
                "broken.example": { "auth": "%%%" }
            }
        });
        fs::write(&config, json.to_string()).unwrap();
        let hub = docker_config_lookup(&config, "docker.io").unwrap().unwrap();
        assert_eq!(hub.username, "hubuser");
        assert_eq!(hub.password.expose(), "hub:pass");
        let ghcr = docker_config_lookup(&config, "ghcr.io").unwrap().unwrap();
        assert_eq!(ghcr.username, IDENTITY_TOKEN_USER);
        assert_eq!(ghcr.password.expose(), "refresh-123");
        let local = docker_config_lookup(&config, "127.0.0.1:5000")
            .unwrap()
            .unwrap();
        assert_eq!(
            (local.username.as_str(), local.password.expose()),
            ("u", "p")
        );
        assert!(docker_config_lookup(&config, "quay.io").unwrap().is_none());
        let err = docker_config_lookup(&config, "broken.example")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("broken.example") && err.contains("farm login"),
            "{err}"
        );
        assert!(!err.contains("%%%"));
    }

    #[test]
    fn lookup_order_caller_then_auth_file_then_docker_config() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        fs::write(
            &config,
            serde_json::json!({"auths": {"ghcr.io": {"auth": b64("docker:d")}}}).to_string(),
        )
        .unwrap();
        let auth_file = dir.path().join("farm/auth.json");
        let mut options = RegistryOptions {
            docker_config: Some(config),
            ..Default::default()
        };
        assert_eq!(
            lookup("ghcr.io", &options).unwrap().unwrap().username,
            "docker"
        );
        AuthFile::new(&auth_file)
            .save("ghcr.io", &Credentials::new("farm", "f"))
            .unwrap();
        options.auth_file = Some(auth_file);
        assert_eq!(
            lookup("ghcr.io", &options).unwrap().unwrap().username,
            "farm"
        );
        options.credentials = Some(Credentials::new("caller", "c"));
        assert_eq!(
            lookup("ghcr.io", &options).unwrap().unwrap().username,
            "caller"
        );
    }

    #[test]
    fn auth_file_is_private_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/auth.json");
        let file = AuthFile::new(&path);
        assert!(file.get("ghcr.io").unwrap().is_none());
        assert!(!file.remove("ghcr.io").unwrap());
        file.save("ghcr.io", &Credentials::new("alice", "s3cret:x"))
            .unwrap();
        file.save("https://index.docker.io/v1/", &Credentials::new("bob", "b"))
            .unwrap();
        file.save("quay.io", &Credentials::new(IDENTITY_TOKEN_USER, "tok"))
            .unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777,
            0o700
        );
        let alice = file.get("https://ghcr.io").unwrap().unwrap();
        assert_eq!(
            (alice.username.as_str(), alice.password.expose()),
            ("alice", "s3cret:x")
        );
        assert_eq!(
            file.get("registry-1.docker.io").unwrap().unwrap().username,
            "bob"
        );
        let quay = file.get("quay.io").unwrap().unwrap();
        assert_eq!(
            (quay.username.as_str(), quay.password.expose()),
            (IDENTITY_TOKEN_USER, "tok")
        );
        // Overwrite keeps one entry; other entries and keys are preserved.
        let mut raw: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        raw["credsStore"] = Value::String("keep-me".into());
        fs::write(&path, raw.to_string()).unwrap();
        file.save("ghcr.io", &Credentials::new("alice2", "n"))
            .unwrap();
        let raw: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(raw["credsStore"], "keep-me");
        assert_eq!(raw["auths"].as_object().unwrap().len(), 3);
        assert_eq!(file.get("ghcr.io").unwrap().unwrap().username, "alice2");
        assert!(file.remove("ghcr.io").unwrap());
        assert!(file.get("ghcr.io").unwrap().is_none());
        assert_eq!(file.get("docker.io").unwrap().unwrap().username, "bob");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        // No temporary files left behind.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    fn write_helper(dir: &Path, name: &str, script: &str) {
        let path = dir.join(format!("docker-credential-{name}"));
        fs::write(&path, script).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    struct PathGuard(Option<std::ffi::OsString>);
    impl Drop for PathGuard {
        fn drop(&mut self) {
            match self.0.take() {
                Some(path) => std::env::set_var("PATH", path),
                None => std::env::remove_var("PATH"),
            }
        }
    }

    fn prepend_path(dir: &Path) -> PathGuard {
        let old = std::env::var_os("PATH");
        let mut paths = vec![dir.to_owned()];
        if let Some(old) = &old {
            paths.extend(std::env::split_paths(old));
        }
        std::env::set_var("PATH", std::env::join_paths(paths).unwrap());
        PathGuard(old)
    }

    #[test]
    fn cred_helpers_and_creds_store_run_the_helper() {
        let _lock = PATH_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).unwrap();
        // Echoes back what it got on stdin, and whether a foreign env var leaked through.
        write_helper(
            &bin,
            "test",
            "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nread -r url\nif [ \"$url\" = nobody.example ]; then echo 'credentials not found in native keychain'; exit 1; fi\nprintf '{\"ServerURL\":\"%s\",\"Username\":\"%s|%s\",\"Secret\":\"pw\"}' \"$url\" \"$url\" \"${FARM_LEAK:-clean}\"\n",
        );
        write_helper(&bin, "broken", "#!/bin/sh\necho oops\nexit 2\n");
        let _path = prepend_path(&bin);
        std::env::set_var("FARM_LEAK", "leaked");
        let config = dir.path().join("config.json");
        fs::write(
            &config,
            serde_json::json!({
                "credHelpers": { "ghcr.io": "test", "nobody.example": "test", "bad.example": "broken", "evil.example": "../x" },
                "credsStore": "test",
                "auths": { "ghcr.io": { "auth": b64("ignored:x") } }
            })
            .to_string(),
        )
        .unwrap();
        let ghcr = docker_config_lookup(&config, "ghcr.io").unwrap().unwrap();
        assert_eq!(ghcr.username, "ghcr.io|clean");
        assert_eq!(ghcr.password.expose(), "pw");
        // credsStore for a host without a credHelpers entry; Docker Hub by its v1 URL.
        let hub = docker_config_lookup(&config, "docker.io").unwrap().unwrap();
        assert_eq!(hub.username, "https://index.docker.io/v1/|clean");
        assert!(docker_config_lookup(&config, "nobody.example")
            .unwrap()
            .is_none());
        let err = docker_config_lookup(&config, "bad.example")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("docker-credential-broken") && err.contains("bad.example"),
            "{err}"
        );
        assert!(docker_config_lookup(&config, "evil.example").is_err());
        std::env::remove_var("FARM_LEAK");

        fs::write(
            &config,
            serde_json::json!({"credsStore": "missing-helper"}).to_string(),
        )
        .unwrap();
        let err = docker_config_lookup(&config, "quay.io")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("docker-credential-missing-helper is not on PATH"),
            "{err}"
        );
    }
}
