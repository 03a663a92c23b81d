//! The auth flow of the client: answering 401 challenges (Bearer before Basic), asking
//! token realms for tokens (with credentials only where [`super::auth::realm_policy`]
//! allows), caching tokens per (host, scope), and the credential lookup cache.

use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::StatusCode;

use super::auth::{self, Challenge, RealmDecision};
use super::http::{self, MAX_SMALL_BODY};
use super::{
    credentials, reqwest_reason, AuthMode, CachedToken, Creds, RegistryClient, RegistryError,
    Target, MAX_TOKEN_LIFETIME, MIN_TOKEN_LIFETIME, TOKEN_MARGIN,
};
use crate::secret::{Credentials, Secret};

impl RegistryClient {
    /// The registry's credentials: looked up once per registry (helpers are slow).
    pub(super) async fn credentials(
        &self,
        target: &Target,
        creds: Creds<'_>,
    ) -> Result<Option<Credentials>, RegistryError> {
        if let Creds::Given(credentials) = creds {
            self.inner.scrubber.add_credentials(credentials);
            return Ok(Some(credentials.clone()));
        }
        if let Some(found) = self
            .inner
            .credentials
            .lock()
            .expect("credentials lock")
            .get(&target.registry)
        {
            return Ok(found.clone());
        }
        let registry = target.registry.clone();
        let options = self.inner.options.clone();
        let found = tokio::task::spawn_blocking(move || credentials::lookup(&registry, &options))
            .await
            .map_err(|_| RegistryError::Auth {
                host: target.registry.clone(),
                reason: "the credential lookup panicked".to_owned(),
            })??;
        if let Some(credentials) = &found {
            self.inner.scrubber.add_credentials(credentials);
        }
        self.inner
            .credentials
            .lock()
            .expect("credentials lock")
            .insert(target.registry.clone(), found.clone());
        Ok(found)
    }

    /// An Authorization value for `target` from what we already know of the host (a cached
    /// token, or basic auth), so that only the first request meets a 401.
    pub(super) async fn known_authorization(
        &self,
        target: &Target,
        creds: Creds<'_>,
    ) -> Result<Option<Secret>, RegistryError> {
        if matches!(creds, Creds::Given(_)) {
            return Ok(None);
        }
        let mode = self
            .inner
            .modes
            .lock()
            .expect("modes lock")
            .get(&target.host)
            .cloned();
        match mode {
            None => Ok(None),
            Some(AuthMode::Basic) => Ok(self.credentials(target, creds).await?.map(|c| basic(&c))),
            Some(AuthMode::Bearer { realm, service }) => {
                let key = (target.host.clone(), target.scope().unwrap_or_default());
                if let Some(token) = self.cached_token(&key) {
                    return Ok(Some(bearer(&token)));
                }
                let scopes: Vec<String> = target.scope().into_iter().collect();
                let token = self
                    .fetch_token(target, &realm, service.as_deref(), &scopes, creds)
                    .await?;
                Ok(Some(bearer(&token)))
            }
        }
    }

    pub(super) fn cached_token(&self, key: &(String, String)) -> Option<Secret> {
        let tokens = self.inner.tokens.lock().expect("token cache lock");
        tokens
            .get(key)
            .filter(|t| Instant::now() < t.valid_until)
            .map(|t| t.token.clone())
    }

    /// Answer a 401: Bearer (a token from the realm) before Basic.
    pub(super) async fn answer_challenge(
        &self,
        target: &Target,
        challenges: &[Challenge],
        creds: Creds<'_>,
    ) -> Result<Secret, RegistryError> {
        if let Some(challenge) = challenges.iter().find(|c| c.scheme == "bearer") {
            let Some(realm) = challenge.param("realm") else {
                return Err(RegistryError::Auth {
                    host: target.registry.clone(),
                    reason: "its Bearer challenge names no realm".to_owned(),
                });
            };
            let service = challenge.param("service").map(str::to_owned);
            let mut scopes: Vec<String> = target.scope().into_iter().collect();
            if let Some(scope) = challenge.param("scope").filter(|s| !s.is_empty()) {
                for scope in scope.split(' ').filter(|s| !s.is_empty()) {
                    if !scopes.iter().any(|s| s == scope) {
                        scopes.push(scope.to_owned());
                    }
                }
            }
            let token = self
                .fetch_token(target, realm, service.as_deref(), &scopes, creds)
                .await?;
            if matches!(creds, Creds::Lookup) {
                let mode = AuthMode::Bearer {
                    realm: realm.to_owned(),
                    service,
                };
                self.inner
                    .modes
                    .lock()
                    .expect("modes lock")
                    .insert(target.host.clone(), mode);
            }
            return Ok(bearer(&token));
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            let Some(credentials) = self.credentials(target, creds).await? else {
                return Err(target.access_denied());
            };
            if credentials.username == credentials::IDENTITY_TOKEN_USER {
                return Err(RegistryError::Auth {
                    host: target.registry.clone(),
                    reason: "the stored identity token needs a token server, but the registry asks for basic auth; run `farm login` again".to_owned(),
                });
            }
            if matches!(creds, Creds::Lookup) {
                self.inner
                    .modes
                    .lock()
                    .expect("modes lock")
                    .insert(target.host.clone(), AuthMode::Basic);
            }
            return Ok(basic(&credentials));
        }
        Err(RegistryError::Auth {
            host: target.registry.clone(),
            reason: match challenges.first() {
                Some(c) => format!(
                    "it asks for the unsupported auth scheme {:?}",
                    self.inner.scrubber.clean(&c.scheme, 40)
                ),
                None => "it answered 401 without a usable WWW-Authenticate challenge".to_owned(),
            },
        })
    }

    /// Get a token from `realm` for `scopes`, with credentials only if the realm is trusted
    /// for this registry ([`auth::realm_policy`]). Caches it under (host, our scope).
    pub(super) async fn fetch_token(
        &self,
        target: &Target,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        creds: Creds<'_>,
    ) -> Result<Secret, RegistryError> {
        let refused = |reason: String| RegistryError::RealmRefused {
            host: target.registry.clone(),
            reason,
        };
        let registry_scheme = self.remembered_scheme(&target.host).unwrap_or("https");
        let decision = auth::realm_policy(registry_scheme, &target.host, realm).map_err(refused)?;
        let (url, trusted) = match decision {
            RealmDecision::WithCredentials(url) => (url, true),
            RealmDecision::Anonymous(url) => (url, false),
        };
        auth::check_address(&url).await.map_err(refused)?;
        let credentials = if trusted {
            self.credentials(target, creds).await?
        } else {
            None
        };
        let realm_host = url.host_str().unwrap_or_default().to_owned();
        let request = match &credentials {
            Some(c) if c.username == credentials::IDENTITY_TOKEN_USER => {
                let mut form: Vec<(&str, &str)> = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", c.password.expose()),
                    ("client_id", "farm"),
                ];
                if let Some(service) = service {
                    form.push(("service", service));
                }
                let scope = scopes.join(" ");
                if !scope.is_empty() {
                    form.push(("scope", &scope));
                }
                let body = url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form)
                    .finish();
                self.inner
                    .http
                    .post(url.clone())
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(body)
            }
            _ => {
                let mut url = url.clone();
                {
                    let mut query = url.query_pairs_mut();
                    if let Some(service) = service {
                        query.append_pair("service", service);
                    }
                    for scope in scopes {
                        query.append_pair("scope", scope);
                    }
                }
                let request = self.inner.http.get(url);
                match &credentials {
                    Some(c) => {
                        let mut value = HeaderValue::from_str(basic(c).expose()).map_err(|_| {
                            RegistryError::Auth {
                                host: target.registry.clone(),
                                reason: "the credentials contain characters that cannot be sent"
                                    .to_owned(),
                            }
                        })?;
                        value.set_sensitive(true);
                        request.header(AUTHORIZATION, value)
                    }
                    None => request,
                }
            }
        };
        let what = format!("a token from {realm_host}");
        let response = match tokio::time::timeout(self.inner.timing.idle, request.send()).await {
            Err(_) => {
                return Err(RegistryError::Timeout {
                    host: realm_host,
                    what,
                    seconds: self.inner.timing.idle.as_secs(),
                })
            }
            Ok(Err(e)) => {
                return Err(RegistryError::Connect {
                    host: realm_host,
                    reason: reqwest_reason(&e),
                })
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(target.access_denied());
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(RegistryError::TooManyRequests {
                host: target.registry.clone(),
                retry_after: http::retry_after(response.headers()),
            });
        }
        if !status.is_success() {
            // The token server's own words (it may have echoed what it was sent: scrubbed).
            let body = http::read_bounded(response, MAX_SMALL_BODY, self.inner.timing.idle)
                .await
                .unwrap_or_default();
            let (code, message) = http::error_fields(&body);
            return Err(RegistryError::Status {
                host: realm_host,
                what,
                status: status.as_u16(),
                message: message.or(code).map(|m| self.inner.scrubber.clean(&m, 200)),
            });
        }
        let body = http::read_bounded(response, MAX_SMALL_BODY, self.inner.timing.idle)
            .await
            .map_err(|e| {
                self.read_error(target, e, &what, || RegistryError::Auth {
                    host: target.registry.clone(),
                    reason: format!(
                        "the token response from {realm_host} is over {MAX_SMALL_BODY} bytes"
                    ),
                })
            })?;
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
            #[serde(default)]
            expires_in: Option<u64>,
            // RFC 3339; lifetimes are counted from when we received the token instead, which
            // is never later than the server's issue time (no trust in either clock).
            #[serde(default)]
            #[allow(dead_code)]
            issued_at: Option<String>,
        }
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|_| RegistryError::Auth {
                host: target.registry.clone(),
                reason: format!("the token response from {realm_host} is not valid json"),
            })?;
        let Some(token) = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
        else {
            return Err(RegistryError::Auth {
                host: target.registry.clone(),
                reason: format!("the token response from {realm_host} has no token"),
            });
        };
        let token = Secret::new(token);
        self.inner.scrubber.add_token(&token);
        if matches!(creds, Creds::Lookup) {
            let lifetime = Duration::from_secs(
                parsed
                    .expires_in
                    .unwrap_or(MIN_TOKEN_LIFETIME)
                    .clamp(MIN_TOKEN_LIFETIME, MAX_TOKEN_LIFETIME),
            );
            let valid_until = Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN);
            let key = (target.host.clone(), target.scope().unwrap_or_default());
            let cached = CachedToken {
                token: token.clone(),
                valid_until,
            };
            self.inner
                .tokens
                .lock()
                .expect("token cache lock")
                .insert(key, cached);
        }
        Ok(token)
    }
}

fn basic(credentials: &Credentials) -> Secret {
    let pair = format!("{}:{}", credentials.username, credentials.password.expose());
    Secret::new(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    ))
}

fn bearer(token: &Secret) -> Secret {
    Secret::new(format!("Bearer {}", token.expose()))
}
