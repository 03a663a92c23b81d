//! Image references: docker's normalization of `name[:tag][@digest]`, and the offline
//! sources `oci:PATH[:TAG]` and `docker-archive:PATH`.
//!
//! The grammar is distribution/reference's (regexp.go), and the defaults are docker's
//! (normalize.go): a first component with a `.` or `:`, `localhost`, or an upper-case
//! letter is a registry; otherwise the registry is `docker.io`, and a single-component
//! name on docker.io gets `library/`. A reference with neither tag nor digest gets
//! `:latest`. A reference with both keeps both; the manifest is fetched by digest.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::digest::Digest;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceError {
    #[error("invalid reference {reference:?}: {reason}")]
    Invalid { reference: String, reason: String },
}

/// A normalized registry reference, e.g. `docker.io/library/busybox:latest`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// docker's limit on the repository path (`NameTotalLengthMax`).
pub const NAME_TOTAL_LENGTH_MAX: usize = 255;
const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";

fn invalid(reference: &str, reason: impl Into<String>) -> ReferenceError {
    ReferenceError::Invalid {
        reference: shorten(reference),
        reason: reason.into(),
    }
}

/// Keep hostile input from flooding a message.
fn shorten(s: &str) -> String {
    if s.len() <= 300 {
        return s.to_owned();
    }
    let mut end = 300;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

impl Reference {
    /// Parse with docker's rules: `busybox` -> `docker.io/library/busybox:latest`.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        if input.is_empty() {
            return Err(invalid(input, "repository name must not be empty"));
        }
        if input.len() == 64
            && input
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid(
                input,
                "cannot specify 64-byte hexadecimal strings: use name@sha256:<hex> to pull by digest",
            ));
        }
        let (name_and_tag, digest) = match input.split_once('@') {
            Some((name, digest)) => {
                let digest = Digest::parse(digest).map_err(|e| invalid(input, e.to_string()))?;
                (name, Some(digest))
            }
            None => (input, None),
        };
        let (domain, remainder) = split_docker_domain(name_and_tag);
        let (remote_name, tag) = match remainder.split_once(':') {
            Some((name, tag)) => (name, Some(tag)),
            None => (remainder.as_str(), None),
        };
        if remote_name.to_lowercase() != remote_name {
            return Err(invalid(input, "repository name must be lowercase"));
        }
        if !valid_domain(&domain) {
            return Err(invalid(
                input,
                format!("invalid registry host {domain:?}: expected host[:port], e.g. ghcr.io or localhost:5000"),
            ));
        }
        if remote_name.is_empty() || !remote_name.split('/').all(valid_path_component) {
            return Err(invalid(
                input,
                "invalid repository name: components are lowercase letters and digits separated by '.', '_', '__' or '-'",
            ));
        }
        if remote_name.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(invalid(
                input,
                format!(
                    "repository name must not be longer than {NAME_TOTAL_LENGTH_MAX} characters"
                ),
            ));
        }
        if let Some(tag) = tag {
            if !valid_tag(tag) {
                return Err(invalid(
                    input,
                    format!(
                        "invalid tag {:?}: a tag is up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'",
                        shorten(tag)
                    ),
                ));
            }
        }
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_owned()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_owned()),
        };
        Ok(Reference {
            registry: domain,
            repository: remote_name.to_owned(),
            tag,
            digest,
        })
    }
    /// `docker.io`, `ghcr.io`, `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }
    /// `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }
    /// The host to talk to: `registry-1.docker.io` for `docker.io`, else the registry.
    pub fn api_host(&self) -> &str {
        if self.registry == DEFAULT_DOMAIN {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }
    /// What goes after `/manifests/`: the digest if present, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            // parse() gives every reference a tag or a digest.
            (None, None) => DEFAULT_TAG.to_owned(),
        }
    }
}

/// distribution/reference's `splitDockerDomain`: returns the registry and the rest.
fn split_docker_domain(name: &str) -> (String, String) {
    let (mut domain, mut remainder) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            (first.to_owned(), rest.to_owned())
        }
        _ => (DEFAULT_DOMAIN.to_owned(), name.to_owned()),
    };
    if domain == LEGACY_DEFAULT_DOMAIN {
        domain = DEFAULT_DOMAIN.to_owned();
    }
    if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        remainder = format!("{OFFICIAL_REPO_PREFIX}{remainder}");
    }
    (domain, remainder)
}

/// `host[:port]` where host is a domain name (`[a-zA-Z0-9]` components joined by `.`,
/// inner `-` allowed) or a bracketed IPv6 address.
fn valid_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((addr, after)) = rest.split_once(']') else {
            return false;
        };
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (domain, None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if domain.starts_with('[') {
        // The bracketed IPv6 address was checked above.
        return true;
    }
    !host.is_empty()
        && host.split('.').all(|component| {
            let bytes = component.as_bytes();
            !bytes.is_empty()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                && bytes[0].is_ascii_alphanumeric()
                && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        })
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-".
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let run = &component[start..i];
        let ok = run == "." || run == "_" || run == "__" || run.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`
pub fn valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes[1..]
            .iter()
            .all(|&b| word(b) || b == b'.' || b == b'-')
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    Registry(Reference),
    /// `oci:PATH[:TAG]`, an OCI image layout folder.
    OciLayout {
        path: PathBuf,
        tag: Option<String>,
    },
    /// `docker-archive:PATH`, a `docker save` tarball.
    DockerArchive {
        path: PathBuf,
    },
}

const OCI_PREFIX: &str = "oci:";
const DOCKER_ARCHIVE_PREFIX: &str = "docker-archive:";

fn absolute(input: &str, path: &str) -> Result<PathBuf, ReferenceError> {
    if path.is_empty() {
        return Err(invalid(
            input,
            "missing path: expected oci:PATH[:TAG] or docker-archive:PATH",
        ));
    }
    std::path::absolute(Path::new(path))
        .map_err(|e| invalid(input, format!("cannot make {path:?} an absolute path: {e}")))
}

impl ImageSource {
    /// `oci:PATH[:TAG]`, `docker-archive:PATH`, or else a registry reference. In `oci:`,
    /// the part after the last `:` is a tag only when it has no `/` and is a valid tag;
    /// otherwise it belongs to the path. Relative paths are made absolute (from the cwd).
    pub fn parse(input: &str) -> Result<ImageSource, ReferenceError> {
        if let Some(rest) = input.strip_prefix(OCI_PREFIX) {
            let (path, tag) = match rest.rsplit_once(':') {
                Some((path, tag)) if !tag.contains('/') && valid_tag(tag) => {
                    (path, Some(tag.to_owned()))
                }
                _ => (rest, None),
            };
            return Ok(ImageSource::OciLayout {
                path: absolute(input, path)?,
                tag,
            });
        }
        if let Some(path) = input.strip_prefix(DOCKER_ARCHIVE_PREFIX) {
            return Ok(ImageSource::DockerArchive {
                path: absolute(input, path)?,
            });
        }
        Reference::parse(input).map(ImageSource::Registry)
    }
    /// The name the image is recorded under in the store.
    pub fn name(&self) -> String {
        match self {
            ImageSource::Registry(reference) => reference.to_string(),
            ImageSource::OciLayout {
                path,
                tag: Some(tag),
            } => format!("{OCI_PREFIX}{}:{tag}", path.display()),
            ImageSource::OciLayout { path, tag: None } => format!("{OCI_PREFIX}{}", path.display()),
            ImageSource::DockerArchive { path } => {
                format!("{DOCKER_ARCHIVE_PREFIX}{}", path.display())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "ffd26d4b9b6ac5b3f0e4b5d2b8e95d8b4b0e5a5f6ff8bd8c9d6e7f8091a2b3c4";

    /// Cases from distribution/reference's normalize_test.go and reference_test.go.
    #[test]
    fn normalizes_like_docker() {
        let digest = format!("sha256:{HEX}");
        let cases: Vec<(String, &str, &str, Option<&str>, bool)> = vec![
            (
                "busybox".into(),
                "docker.io",
                "library/busybox",
                Some("latest"),
                false,
            ),
            (
                "busybox:1.36".into(),
                "docker.io",
                "library/busybox",
                Some("1.36"),
                false,
            ),
            (
                "user/img".into(),
                "docker.io",
                "user/img",
                Some("latest"),
                false,
            ),
            (
                "docker.io/library/ubuntu".into(),
                "docker.io",
                "library/ubuntu",
                Some("latest"),
                false,
            ),
            (
                "docker.io/ubuntu".into(),
                "docker.io",
                "library/ubuntu",
                Some("latest"),
                false,
            ),
            (
                "index.docker.io/library/ubuntu".into(),
                "docker.io",
                "library/ubuntu",
                Some("latest"),
                false,
            ),
            (
                "index.docker.io/ubuntu".into(),
                "docker.io",
                "library/ubuntu",
                Some("latest"),
                false,
            ),
            (
                "docker.io/user/repo:tag".into(),
                "docker.io",
                "user/repo",
                Some("tag"),
                false,
            ),
            (
                "localhost/foo".into(),
                "localhost",
                "foo",
                Some("latest"),
                false,
            ),
            (
                "localhost:5000/foo/bar:v1".into(),
                "localhost:5000",
                "foo/bar",
                Some("v1"),
                false,
            ),
            (
                "127.0.0.1:5000/a/b/c:tag".into(),
                "127.0.0.1:5000",
                "a/b/c",
                Some("tag"),
                false,
            ),
            (
                "ghcr.io/org/img:1.0".into(),
                "ghcr.io",
                "org/img",
                Some("1.0"),
                false,
            ),
            (
                "Docker.Example.com/foo".into(),
                "Docker.Example.com",
                "foo",
                Some("latest"),
                false,
            ),
            (
                "Uppercase/lowercase".into(),
                "Uppercase",
                "lowercase",
                Some("latest"),
                false,
            ),
            (
                "[::1]:5000/foo".into(),
                "[::1]:5000",
                "foo",
                Some("latest"),
                false,
            ),
            (
                "[2001:db8::1]/foo".into(),
                "[2001:db8::1]",
                "foo",
                Some("latest"),
                false,
            ),
            // localhost:5000 without a slash is the image "localhost" with tag "5000".
            (
                "localhost:5000".into(),
                "docker.io",
                "library/localhost",
                Some("5000"),
                false,
            ),
            (
                "a-b/e--f.g_h__i:__x".into(),
                "docker.io",
                "a-b/e--f.g_h__i",
                Some("__x"),
                false,
            ),
            (
                format!("busybox@{digest}"),
                "docker.io",
                "library/busybox",
                None,
                true,
            ),
            (
                format!("busybox:1.36@{digest}"),
                "docker.io",
                "library/busybox",
                Some("1.36"),
                true,
            ),
            (
                format!("quay.io/a/b:t@{digest}"),
                "quay.io",
                "a/b",
                Some("t"),
                true,
            ),
            (
                format!("{}a:tag-puts-this-over-max", "a/".repeat(127)),
                "docker.io",
                "",
                Some("tag-puts-this-over-max"),
                false,
            ),
        ];
        for (input, registry, repository, tag, has_digest) in cases {
            let reference = Reference::parse(&input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(reference.registry(), registry, "{input}");
            if !repository.is_empty() {
                assert_eq!(reference.repository(), repository, "{input}");
            }
            assert_eq!(reference.tag(), tag, "{input}");
            assert_eq!(reference.digest().is_some(), has_digest, "{input}");
        }
    }

    #[test]
    fn refuses_what_docker_refuses() {
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "empty"),
            ("Foo".into(), "must be lowercase"),
            ("docker.io/Foo/bar".into(), "must be lowercase"),
            ("ghcr.io/Org/img".into(), "must be lowercase"),
            (HEX.into(), "64-byte hexadecimal"),
            ("busybox:".into(), "invalid tag"),
            ("busybox:-tag".into(), "invalid tag"),
            ("busybox:.tag".into(), "invalid tag"),
            (format!("busybox:{}", "a".repeat(129)), "invalid tag"),
            ("busybox:a:b".into(), "invalid tag"),
            ("busybox@sha256:abc".into(), "invalid digest"),
            ("busybox@sha512:abcd".into(), "unsupported digest algorithm"),
            (
                format!("busybox@sha256:{}", HEX.to_uppercase()),
                "invalid digest",
            ),
            ("busybox@".into(), "invalid digest"),
            ("a@b@sha256:x".into(), "digest"),
            ("-busybox".into(), "invalid repository name"),
            ("busybox-".into(), "invalid repository name"),
            ("bu___sybox".into(), "invalid repository name"),
            ("bu.-sybox".into(), "invalid repository name"),
            ("a//b".into(), "invalid repository name"),
            ("a/".into(), "invalid repository name"),
            ("/a".into(), "invalid repository name"),
            ("ghcr.io/".into(), "invalid repository name"),
            ("a b".into(), "invalid repository name"),
            ("aa/asdf$$^/aa".into(), "invalid repository name"),
            ("-host.com/foo".into(), "invalid registry host"),
            ("a_b.example.com/foo".into(), "invalid registry host"),
            ("host-.com/foo".into(), "invalid registry host"),
            ("host..com/foo".into(), "invalid registry host"),
            ("host:port/foo".into(), "invalid registry host"),
            ("host:/foo".into(), "invalid registry host"),
            ("[::1/foo".into(), "invalid registry host"),
            ("[zz::1]/foo".into(), "invalid registry host"),
            (format!("{}a:tag", "a/".repeat(128)), "longer than 255"),
        ];
        for (input, expected) in cases {
            let err = Reference::parse(&input).expect_err(&input).to_string();
            assert!(err.contains(expected), "{input:?}: {err}");
            assert!(err.starts_with("invalid reference "), "{err}");
        }
        assert_eq!(
            Reference::parse("Foo").unwrap_err().to_string(),
            "invalid reference \"Foo\": repository name must be lowercase"
        );
    }

    #[test]
    fn display_and_manifest_reference() {
        let digest = format!("sha256:{HEX}");
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.manifest_reference(), "latest");
        assert_eq!(r.api_host(), "registry-1.docker.io");

        let r = Reference::parse(&format!("busybox@{digest}")).unwrap();
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{digest}"));
        assert_eq!(r.manifest_reference(), digest);

        let r = Reference::parse(&format!("localhost:5000/x/y:v2@{digest}")).unwrap();
        assert_eq!(r.to_string(), format!("localhost:5000/x/y:v2@{digest}"));
        assert_eq!(r.manifest_reference(), digest);
        assert_eq!(r.api_host(), "localhost:5000");

        // Round trip: a normalized name parses to itself.
        for input in ["user/img:1", "index.docker.io/ubuntu", "ghcr.io/a/b/c:x"] {
            let r = Reference::parse(input).unwrap();
            assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
        }
    }

    #[test]
    fn image_sources() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            ImageSource::parse("oci:/srv/img:v1").unwrap(),
            ImageSource::OciLayout {
                path: "/srv/img".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            ImageSource::parse("oci:/srv/img").unwrap(),
            ImageSource::OciLayout {
                path: "/srv/img".into(),
                tag: None
            }
        );
        // The suffix after the last ':' has a '/': it is part of the path.
        assert_eq!(
            ImageSource::parse("oci:/srv/a:b/img").unwrap(),
            ImageSource::OciLayout {
                path: "/srv/a:b/img".into(),
                tag: None
            }
        );
        // Not a valid tag: part of the path.
        assert_eq!(
            ImageSource::parse("oci:/srv/img:-x").unwrap(),
            ImageSource::OciLayout {
                path: "/srv/img:-x".into(),
                tag: None
            }
        );
        let relative = ImageSource::parse("oci:layout:latest").unwrap();
        assert_eq!(
            relative,
            ImageSource::OciLayout {
                path: cwd.join("layout"),
                tag: Some("latest".into())
            }
        );
        assert_eq!(
            relative.name(),
            format!("oci:{}:latest", cwd.join("layout").display())
        );
        assert_eq!(
            ImageSource::parse("oci:/srv/img").unwrap().name(),
            "oci:/srv/img"
        );

        let archive = ImageSource::parse("docker-archive:img.tar").unwrap();
        assert_eq!(
            archive,
            ImageSource::DockerArchive {
                path: cwd.join("img.tar")
            }
        );
        assert_eq!(
            archive.name(),
            format!("docker-archive:{}", cwd.join("img.tar").display())
        );

        let registry = ImageSource::parse("busybox").unwrap();
        assert_eq!(registry.name(), "docker.io/library/busybox:latest");
        assert!(ImageSource::parse("oci:").is_err());
        assert!(ImageSource::parse("docker-archive:").is_err());
        assert!(ImageSource::parse("Busybox").is_err());
    }
}
