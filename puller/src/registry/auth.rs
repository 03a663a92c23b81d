//! Auth challenges (`WWW-Authenticate`), the token-realm policy and the address policy for
//! redirects and realms.
//!
//! The realm policy is the reason this file exists: a registry names its token server in a
//! challenge, and a client that sends the user's password to whatever realm it is told
//! hands credentials to any host a registry (or a man in the middle of plain HTTP) picks.
//! Credentials go only to a realm on the registry's own host or to a pairing listed in
//! [`REALM_PAIRS`]; any other realm gets an anonymous token request.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::Url;

/// One challenge of a `WWW-Authenticate` header: a scheme (lower-cased) and its parameters
/// (names lower-cased, values unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Parse a `WWW-Authenticate` value (RFC 9110 §11.6.1): one or more challenges separated by
/// commas, each `scheme [token68 | param=value, ...]` where a value is a token or a quoted
/// string with `\` escapes. Anything unparseable is skipped up to the next comma; this never
/// fails and never loops: every step consumes at least one character.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let chars: Vec<char> = header.chars().collect();
    let mut pos = 0;
    let mut challenges: Vec<Challenge> = Vec::new();

    let skip_ws = |pos: &mut usize| {
        while *pos < chars.len() && (chars[*pos] == ' ' || chars[*pos] == '\t') {
            *pos += 1;
        }
    };
    let read_token = |pos: &mut usize| -> String {
        let start = *pos;
        while *pos < chars.len() && is_tchar(chars[*pos]) {
            *pos += 1;
        }
        chars[start..*pos].iter().collect()
    };
    // Skip to just past the next comma (garbage recovery).
    let skip_past_comma = |pos: &mut usize| {
        while *pos < chars.len() && chars[*pos] != ',' {
            *pos += 1;
        }
        if *pos < chars.len() {
            *pos += 1;
        }
    };

    while pos < chars.len() {
        // Between challenges: whitespace and empty list elements.
        while pos < chars.len() && (chars[pos] == ',' || chars[pos] == ' ' || chars[pos] == '\t') {
            pos += 1;
        }
        if pos >= chars.len() {
            break;
        }
        let scheme = read_token(&mut pos);
        if scheme.is_empty() {
            skip_past_comma(&mut pos);
            continue;
        }
        let mut challenge = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: Vec::new(),
        };
        skip_ws(&mut pos);
        // Parameters, until the next challenge's scheme (a token not followed by `=`).
        loop {
            while pos < chars.len()
                && (chars[pos] == ',' || chars[pos] == ' ' || chars[pos] == '\t')
            {
                pos += 1;
            }
            if pos >= chars.len() {
                break;
            }
            let save = pos;
            let name = read_token(&mut pos);
            if name.is_empty() {
                // Not a parameter and not a scheme: garbage.
                skip_past_comma(&mut pos);
                continue;
            }
            skip_ws(&mut pos);
            if pos >= chars.len() || chars[pos] != '=' {
                // A bare token: the scheme of the next challenge.
                pos = save;
                break;
            }
            pos += 1; // '='
            skip_ws(&mut pos);
            let value = if pos < chars.len() && chars[pos] == '"' {
                pos += 1;
                let mut value = String::new();
                while pos < chars.len() && chars[pos] != '"' {
                    if chars[pos] == '\\' && pos + 1 < chars.len() {
                        pos += 1;
                    }
                    value.push(chars[pos]);
                    pos += 1;
                }
                pos += 1; // closing quote (or past the end when unterminated)
                value
            } else {
                // A token value, or token68 padding (`abc==`).
                let mut value = read_token(&mut pos);
                while pos < chars.len() && (chars[pos] == '=' || chars[pos] == '/') {
                    value.push(chars[pos]);
                    pos += 1;
                }
                value
            };
            challenge.params.push((name.to_ascii_lowercase(), value));
            skip_ws(&mut pos);
            if pos < chars.len() && chars[pos] != ',' {
                // Junk after a value: drop up to the next comma.
                skip_past_comma(&mut pos);
            }
        }
        challenges.push(challenge);
    }
    challenges
}

/// Registries whose token realm lives on another host, as `(registry host, realm host)`.
/// Realms on the registry's own host (any port, any path) are always trusted; this covers
/// ghcr.io, quay.io, public.ecr.aws, gcr.io, `*.gcr.io` and `*.pkg.dev`, which all serve
/// tokens from themselves. Keep this table small: each line hands passwords to a host.
pub const REALM_PAIRS: &[(&str, &str)] = &[
    ("docker.io", "auth.docker.io"),
    ("registry-1.docker.io", "auth.docker.io"),
    ("index.docker.io", "auth.docker.io"),
];

/// The host part of `host[:port]` (brackets of an IPv6 literal removed), lower-cased.
pub fn host_only(host_port: &str) -> String {
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else if host_port.matches(':').count() == 1 {
        host_port.split(':').next().unwrap_or(host_port)
    } else {
        host_port
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether the realm host `realm_host` may receive the credentials of `registry_host`.
pub fn realm_trusted(registry_host: &str, realm_host: &str) -> bool {
    let registry = host_only(registry_host);
    let realm = host_only(realm_host);
    registry == realm
        || REALM_PAIRS
            .iter()
            .any(|(r, a)| *r == registry && *a == realm)
}

/// True for link-local and cloud metadata addresses, which no registry redirect or token
/// realm may point at (a job's image reference must not reach the host's cloud credentials).
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_forbidden_v4(v4);
            }
            let seg = v6.segments();
            (seg[0] & 0xffc0) == 0xfe80 || v6 == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254)
        }
    }
}

fn is_forbidden_v4(v4: Ipv4Addr) -> bool {
    v4.is_link_local()
}

const FORBIDDEN_NAMES: &[&str] = &["metadata.google.internal", "metadata", "instance-data"];

/// Check the literal host of `url` (a name or an address) against the forbidden list.
/// Names are also resolved by [`check_resolved`].
pub fn forbidden_literal(url: &Url) -> Option<String> {
    match url.host()? {
        url::Host::Ipv4(ip) => {
            is_forbidden_ip(IpAddr::V4(ip)).then(|| format!("{ip} is a link-local address"))
        }
        url::Host::Ipv6(ip) => {
            is_forbidden_ip(IpAddr::V6(ip)).then(|| format!("{ip} is a link-local address"))
        }
        url::Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            FORBIDDEN_NAMES
                .contains(&name.as_str())
                .then(|| format!("{name} is a cloud metadata host"))
        }
    }
}

/// Refuse `url` when its host is, or resolves to, a link-local or metadata address.
/// A name that does not resolve is left to fail at connect time.
pub async fn check_address(url: &Url) -> Result<(), String> {
    if let Some(reason) = forbidden_literal(url) {
        return Err(reason);
    }
    if let Some(url::Host::Domain(name)) = url.host() {
        let port = url.port_or_known_default().unwrap_or(443);
        if let Ok(addrs) = tokio::net::lookup_host((name, port)).await {
            for addr in addrs {
                if is_forbidden_ip(addr.ip()) {
                    return Err(format!(
                        "{name} resolves to the link-local address {}",
                        addr.ip()
                    ));
                }
            }
        }
    }
    Ok(())
}

/// What to do with a `Bearer` realm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RealmDecision {
    /// Ask for a token with the user's credentials.
    WithCredentials(Url),
    /// Ask for a token anonymously: the realm is not one we trust with credentials.
    Anonymous(Url),
}

/// Decide how (and whether) to contact `realm` for a registry reached at
/// `registry_scheme://registry_host`. Only the literal host is checked here; the caller
/// also runs [`check_address`] on the URL.
pub fn realm_policy(
    registry_scheme: &str,
    registry_host: &str,
    realm: &str,
) -> Result<RealmDecision, String> {
    let url = Url::parse(realm).map_err(|_| "the realm is not a valid url".to_owned())?;
    match url.scheme() {
        "https" => {}
        "http" if registry_scheme == "http" => {}
        "http" => return Err("the realm uses plain http while the registry uses https".to_owned()),
        other => return Err(format!("the realm uses the unsupported scheme {other:?}")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the realm url carries credentials".to_owned());
    }
    let Some(realm_host) = url.host_str() else {
        return Err("the realm has no host".to_owned());
    };
    if let Some(reason) = forbidden_literal(&url) {
        return Err(reason);
    }
    if realm_trusted(registry_host, realm_host) {
        Ok(RealmDecision::WithCredentials(url))
    } else {
        Ok(RealmDecision::Anonymous(url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(c: &Challenge) -> Vec<(&str, &str)> {
        c.params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn parses_docker_hub_bearer_challenge() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(c[0].param("scope"), Some("repository:library/busybox:pull"));
    }

    #[test]
    fn quoted_commas_and_escapes_stay_in_values() {
        let c = parse_challenges(
            r#"Bearer realm="https://a/t", scope="repository:x:pull,push", error="say \"hi\", \\ ok""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(
            params(&c[0]),
            vec![
                ("realm", "https://a/t"),
                ("scope", "repository:x:pull,push"),
                ("error", r#"say "hi", \ ok"#)
            ]
        );
    }

    #[test]
    fn several_challenges_in_one_header() {
        let c = parse_challenges(
            r#"Basic realm="reg, one", Bearer realm="https://t/x",service=s , Negotiate"#,
        );
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some("reg, one"));
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(
            params(&c[1]),
            vec![("realm", "https://t/x"), ("service", "s")]
        );
        assert_eq!(c[2].scheme, "negotiate");
        assert!(c[2].params.is_empty());
    }

    #[test]
    fn token68_and_case() {
        let c = parse_challenges("NEGOTIATE abc== , BASIC Realm=x");
        assert_eq!(c[0].scheme, "negotiate");
        assert_eq!(c[1].scheme, "basic");
        assert_eq!(c[1].param("realm"), Some("x"));
    }

    #[test]
    fn garbage_never_panics_or_invents_params() {
        for junk in [
            "",
            ",,,",
            "\"",
            "=",
            "Bearer realm=\"unterminated",
            "Bearer realm",
            "Bearer =x, ==, realm=\"a\" junk junk, service=s",
            "\u{0}\u{1}Bearer\u{7f}",
            "Bearer realm=\"a\\",
            "(((",
            "Basic ,,, ,",
        ] {
            let c = parse_challenges(junk);
            for challenge in &c {
                assert!(!challenge.scheme.is_empty(), "{junk:?}");
            }
        }
        let c = parse_challenges("Bearer realm=\"unterminated");
        assert_eq!(c[0].param("realm"), Some("unterminated"));
        let c = parse_challenges("Bearer =x, ==, realm=\"a\" junk junk, service=s");
        assert_eq!(c[0].param("realm"), Some("a"));
        assert_eq!(c[0].param("service"), Some("s"));
        assert!(parse_challenges("(((").is_empty());
    }

    #[test]
    fn realm_allow_list() {
        assert!(realm_trusted("registry-1.docker.io", "auth.docker.io"));
        assert!(realm_trusted("docker.io", "auth.docker.io"));
        assert!(realm_trusted("ghcr.io", "ghcr.io"));
        assert!(realm_trusted("quay.io:443", "quay.io"));
        assert!(realm_trusted("us-docker.pkg.dev", "us-docker.pkg.dev"));
        assert!(realm_trusted("127.0.0.1:5000", "127.0.0.1:6000"));
        assert!(realm_trusted("[::1]:5000", "[::1]"));
        assert!(!realm_trusted("ghcr.io", "auth.docker.io"));
        assert!(!realm_trusted("registry.example.com", "evil.example.net"));
        assert!(!realm_trusted("auth.docker.io", "registry-1.docker.io"));
        assert!(!realm_trusted("127.0.0.1:5000", "127.0.0.2:5000"));
    }

    /// CVE-2026-33540: the Go clients sent Basic credentials to whatever realm a registry
    /// named. A registry on host A naming a realm on host B must get an anonymous request.
    #[test]
    fn cve_2026_33540_foreign_realm_is_anonymous() {
        let decision = realm_policy(
            "https",
            "registry.example.com",
            "https://collector.evil.net/token",
        )
        .unwrap();
        assert!(matches!(decision, RealmDecision::Anonymous(_)));
        let decision = realm_policy(
            "https",
            "registry.example.com",
            "https://registry.example.com:8443/auth",
        )
        .unwrap();
        assert!(matches!(decision, RealmDecision::WithCredentials(_)));
        // Userinfo tricks do not move the host.
        let decision = realm_policy(
            "https",
            "registry.example.com",
            "https://registry.example.com@evil.net/t",
        )
        .unwrap_err();
        assert!(decision.contains("credentials"));
    }

    #[test]
    fn http_realm_for_https_registry_is_refused() {
        let err = realm_policy("https", "ghcr.io", "http://ghcr.io/token").unwrap_err();
        assert!(err.contains("plain http"), "{err}");
        assert!(realm_policy("http", "127.0.0.1:5000", "http://127.0.0.1:5001/token").is_ok());
        assert!(realm_policy("https", "ghcr.io", "file:///etc/passwd").is_err());
    }

    #[test]
    fn link_local_and_metadata_realms_are_refused() {
        for realm in [
            "https://169.254.169.254/latest/meta-data",
            "https://[fe80::1]/token",
            "https://[fd00:ec2::254]/token",
            "https://metadata.google.internal/computeMetadata",
            "https://METADATA.google.internal./x",
            "https://[::ffff:169.254.169.254]/x",
        ] {
            assert!(
                realm_policy("https", "registry.example.com", realm).is_err(),
                "{realm}"
            );
        }
        assert!(!is_forbidden_ip("127.0.0.2".parse().unwrap()));
        assert!(!is_forbidden_ip("10.0.0.1".parse().unwrap()));
        assert!(is_forbidden_ip("169.254.1.1".parse().unwrap()));
        assert!(is_forbidden_ip("febf::1".parse().unwrap()));
        assert!(!is_forbidden_ip("fec0::1".parse().unwrap()));
    }

    #[tokio::test]
    async fn check_address_resolves_names() {
        assert!(check_address(&Url::parse("http://127.0.0.2:1/x").unwrap())
            .await
            .is_ok());
        assert!(check_address(&Url::parse("http://localhost:1/x").unwrap())
            .await
            .is_ok());
        assert!(
            check_address(&Url::parse("http://169.254.169.254/x").unwrap())
                .await
                .is_err()
        );
    }
}
