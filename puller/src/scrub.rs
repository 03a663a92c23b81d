//! `Scrubber`: what farm sent to a registry or token server, in every form it sent it, so
//! that text those servers send back (error bodies, headers, redirect targets, token
//! answers) never shows a credential, whatever it echoes.
//!
//! A registry that echoes the request's `Authorization` header into an error message is
//! common (debug pages, proxies, misconfigured servers), and farm prints such messages to
//! terminals and logs that other people read. Every server-originated string passes
//! [`Scrubber::clean`] before it is shown: control characters go first (so that a secret
//! split by them is still found), then every known form of every secret becomes `***`, then
//! the text is cut. Cutting last means a secret is never shown half.

use std::fmt;
use std::sync::{Arc, RwLock};

use base64::Engine as _;

use crate::secret::{Credentials, Secret};

/// What replaces a secret in shown text.
pub const MASK: &str = "***";

/// The secrets a [`crate::registry::RegistryClient`] sent, shared by its clones. `Debug`
/// prints only how many there are.
#[derive(Clone, Default)]
pub struct Scrubber {
    needles: Arc<RwLock<Vec<String>>>,
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.needles.read().map_or(0, |n| n.len());
        write!(f, "Scrubber({count} secrets)")
    }
}

impl Scrubber {
    pub fn new() -> Scrubber {
        Scrubber::default()
    }

    /// Remember `credentials` in every form farm sends them: the password as is, form- and
    /// percent-encoded (an identity token is sent as a form's `refresh_token`), and
    /// `user:password` as is and in base64 (Basic auth; padded, unpadded, URL-safe).
    pub fn add_credentials(&self, credentials: &Credentials) {
        let password = credentials.password.expose();
        if password.is_empty() {
            return;
        }
        let pair = format!("{}:{password}", credentials.username);
        let mut needles = encodings(password);
        for engine in [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            needles.push(engine.encode(&pair));
        }
        needles.push(pair);
        self.add_all(needles);
    }

    /// Remember a bearer token (sent as is in `Authorization: Bearer`), and its encodings.
    pub fn add_token(&self, token: &Secret) {
        if !token.is_empty() {
            self.add_all(encodings(token.expose()));
        }
    }

    fn add_all(&self, new: Vec<String>) {
        let mut needles = self.needles.write().unwrap_or_else(|e| e.into_inner());
        for needle in new {
            // A secret with control characters is also looked for without them, since
            // `clean` removes those before it looks.
            let bare = strip_controls(&needle);
            for needle in [needle, bare] {
                if !needle.is_empty() && !needles.contains(&needle) {
                    needles.push(needle);
                }
            }
        }
        // Longest first: a secret that contains another is replaced whole.
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    }

    /// `text` with every known secret replaced by [`MASK`] (control characters kept).
    pub fn scrub(&self, text: &str) -> String {
        let needles = self.needles.read().unwrap_or_else(|e| e.into_inner());
        let mut out = text.to_owned();
        for needle in needles.iter() {
            if out.contains(needle.as_str()) {
                out = out.replace(needle.as_str(), MASK);
            }
        }
        out
    }

    /// Server text made fit to show: control characters removed, secrets masked, cut at
    /// `max` characters (with `...` when cut).
    pub fn clean(&self, text: &str, max: usize) -> String {
        let scrubbed = self.scrub(&strip_controls(text));
        let mut out: String = scrubbed.chars().take(max).collect();
        if scrubbed.chars().nth(max).is_some() {
            out.push_str("...");
        }
        out
    }
}

fn strip_controls(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).collect()
}

/// `secret` as is, form-urlencoded (`+` for space) and percent-encoded (upper and lower
/// case hex digits).
fn encodings(secret: &str) -> Vec<String> {
    let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let mut upper = String::new();
    for byte in secret.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            upper.push(char::from(byte));
        } else {
            upper.push_str(&format!("%{byte:02X}"));
        }
    }
    let lower = {
        // Only the hex digits after '%' change case; unreserved letters stay.
        let mut lower = String::new();
        let mut rest = upper.as_str();
        while let Some(at) = rest.find('%') {
            lower.push_str(&rest[..at]);
            lower.push_str(&rest[at..at + 3].to_ascii_lowercase());
            rest = &rest[at + 3..];
        }
        lower.push_str(rest);
        lower
    };
    vec![secret.to_owned(), form, upper, lower]
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "s3cr3t p@ss/+&=";

    fn scrubber() -> Scrubber {
        let scrubber = Scrubber::new();
        scrubber.add_credentials(&Credentials::new("alice", PASSWORD));
        scrubber.add_token(&Secret::new("tok.en/value=="));
        scrubber
    }

    #[test]
    fn every_form_of_the_password_is_masked() {
        let scrubber = scrubber();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("alice:{PASSWORD}"));
        for form in [
            PASSWORD.to_owned(),
            "s3cr3t+p%40ss%2F%2B%26%3D".to_owned(),
            "s3cr3t%20p%40ss%2F%2B%26%3D".to_owned(),
            "s3cr3t%20p%40ss%2f%2b%26%3d".to_owned(),
            basic.clone(),
            basic.trim_end_matches('=').to_owned(),
            format!("alice:{PASSWORD}"),
            "tok.en/value==".to_owned(),
            "tok.en%2Fvalue%3D%3D".to_owned(),
        ] {
            let text = format!("echo: Authorization: {form} end");
            let shown = scrubber.clean(&text, 1000);
            assert!(!shown.contains(&form), "{form} survived: {shown}");
            assert!(shown.contains(MASK), "{shown}");
            assert!(shown.starts_with("echo: Authorization: "), "{shown}");
        }
    }

    #[test]
    fn control_characters_cannot_split_a_secret_and_cutting_never_shows_half() {
        let scrubber = scrubber();
        let shown = scrubber.clean("x s3cr3t\u{1b} p@ss/\r\n+&= y\u{7}", 1000);
        assert_eq!(shown, format!("x {MASK} y"));
        // The cut comes after the scrub: no prefix of the secret is left at the edge.
        let text = format!("{}{PASSWORD}", "a".repeat(10));
        let shown = scrubber.clean(&text, 14);
        assert_eq!(shown, format!("{}{MASK}", "a".repeat(10)));
        assert_eq!(
            scrubber.clean(&"b".repeat(50), 10),
            format!("{}...", "b".repeat(10))
        );
    }

    #[test]
    fn clones_share_what_was_added_and_debug_shows_no_secret() {
        let scrubber = Scrubber::new();
        let clone = scrubber.clone();
        scrubber.add_token(&Secret::new("later-token"));
        assert_eq!(clone.scrub("a later-token b"), format!("a {MASK} b"));
        assert!(!format!("{scrubber:?}").contains("later"));
        // An empty password adds nothing (it would match everywhere).
        scrubber.add_credentials(&Credentials::new("bob", ""));
        assert_eq!(scrubber.scrub("bob:"), "bob:");
    }
}
