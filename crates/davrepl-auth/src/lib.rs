//! HTTP Basic authentication for davrepl: [`BasicAuth`] is an authorizer for tower-http's
//! `AsyncRequireAuthorizationLayer` that puts the user's name in the request as a davrepl
//! [`Principal`], so it works the same under axum, hyper or any tower stack.
//!
//! ```
//! use tower_http::auth::AsyncRequireAuthorizationLayer;
//! let users = [("alice".to_owned(), "a long passphrase".to_owned())];
//! let layer = AsyncRequireAuthorizationLayer::new(davrepl_auth::BasicAuth::<axum_body::Body>::new(users));
//! # mod axum_body { pub type Body = String; }
//! # let _ = layer;
//! ```
//!
//! Passwords are checked without revealing, by timing, which user names exist or how long a
//! password is: plain passwords are compared as SHA-256 digests in constant time, unknown users
//! are checked against a dummy credential of the same kind, and empty passwords never match.
//! Argon2 hashes (from a password file) are verified on the blocking pool, a few at a time, so
//! a flood of wrong passwords cannot occupy the async runtime; a verified password is
//! remembered (as its digest) so later requests of the same user cost one digest.

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine as _;
use davrepl::Principal;
use http::{HeaderValue, Request, Response, StatusCode, header};
use sha2::{Digest, Sha256};
use tower_http::auth::AsyncAuthorizeRequest;

/// Argon2 verifications allowed to run at once.
const CONCURRENT_HASHES: usize = 2;

#[derive(Clone)]
enum Credential {
    /// SHA-256 of a plain password.
    Plain([u8; 32]),
    /// An Argon2 PHC string.
    Hashed(Arc<str>),
}

/// Checks `Authorization: Basic …` against a fixed set of users. Use it with
/// `tower_http::auth::AsyncRequireAuthorizationLayer::new(BasicAuth::new(users))`.
pub struct BasicAuth<ResBody> {
    users: Arc<HashMap<String, Credential>>,
    /// Digests of passwords that verified against a user's hash.
    verified: Arc<Mutex<HashMap<String, [u8; 32]>>>,
    hashing: Arc<tokio::sync::Semaphore>,
    realm: Arc<str>,
    _body: PhantomData<fn() -> ResBody>,
}

impl<ResBody> Clone for BasicAuth<ResBody> {
    fn clone(&self) -> Self {
        Self {
            users: self.users.clone(),
            verified: self.verified.clone(),
            hashing: self.hashing.clone(),
            realm: self.realm.clone(),
            _body: PhantomData,
        }
    }
}

impl<ResBody> std::fmt::Debug for BasicAuth<ResBody> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.len())
            .field("realm", &self.realm)
            .finish()
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A hash verified for unknown users so that they cost what known ones do (the result is
/// ignored: an unknown user never logs in, whatever the password).
fn dummy_hash() -> Arc<str> {
    static DUMMY: OnceLock<Arc<str>> = OnceLock::new();
    DUMMY
        .get_or_init(|| Arc::from(hash_password("davrepl dummy").unwrap_or_default()))
        .clone()
}

/// Hashes `password` with Argon2id and a random salt, as a PHC string for a password file.
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

impl<ResBody> BasicAuth<ResBody> {
    fn with(users: HashMap<String, Credential>) -> Self {
        Self {
            users: Arc::new(users),
            verified: Arc::default(),
            hashing: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_HASHES)),
            realm: Arc::from("davrepl"),
            _body: PhantomData,
        }
    }

    /// Accepts these (user, password) pairs. A user with an empty password can never log in.
    pub fn new(users: impl IntoIterator<Item = (String, String)>) -> Self {
        Self::with(
            users
                .into_iter()
                .map(|(u, p)| (u, Credential::Plain(digest(&p))))
                .collect(),
        )
    }

    /// Reads a password file: one `name:HASH` per line, `HASH` an Argon2 PHC string as
    /// [`hash_password`] makes (`davrepl-server --hash-password`); blank lines and lines
    /// starting with `#` are skipped. Plain passwords are refused.
    pub fn from_password_file(text: &str) -> Result<Self, String> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, hash) = line
                .split_once(':')
                .ok_or_else(|| format!("line {}: expected NAME:HASH", i + 1))?;
            if name.is_empty() {
                return Err(format!("line {}: empty user name", i + 1));
            }
            PasswordHash::new(hash).map_err(|e| {
                format!(
                    "line {}: not an Argon2 hash ({e}); make one with --hash-password",
                    i + 1
                )
            })?;
            if users
                .insert(name.to_owned(), Credential::Hashed(Arc::from(hash)))
                .is_some()
            {
                return Err(format!("line {}: user {name:?} appears twice", i + 1));
            }
        }
        if users.is_empty() {
            return Err("the password file names no user".into());
        }
        Ok(Self::with(users))
    }

    /// The user names this authenticator knows.
    pub fn user_names(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }

    fn credentials(value: Option<&HeaderValue>) -> Option<(String, String)> {
        let v = value?.to_str().ok()?;
        let (scheme, b64) = v.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, pass) = decoded.split_once(':')?;
        Some((user.to_owned(), pass.to_owned()))
    }

    /// Checks the credentials of an `Authorization` header; the user name when they are right.
    async fn check(&self, value: Option<&HeaderValue>) -> Option<String> {
        let (user, pass) = Self::credentials(value)?;
        let given = digest(&pass);
        let known = self.users.get(&user);
        let any_hashed = self
            .users
            .values()
            .any(|c| matches!(c, Credential::Hashed(_)));
        let ok = match known {
            Some(Credential::Plain(expected)) => same(expected, &given),
            Some(Credential::Hashed(hash)) => {
                let remembered = self
                    .verified
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&user)
                    .copied();
                match remembered {
                    Some(d) if same(&d, &given) => true,
                    _ => {
                        let ok = self.verify(hash.clone(), pass.clone()).await;
                        if ok {
                            self.verified
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(user.clone(), given);
                        }
                        ok
                    }
                }
            }
            None if any_hashed => {
                let _ = self.verify(dummy_hash(), pass.clone()).await;
                false
            }
            None => {
                let _ = same(&digest("\u{0}no such user"), &given);
                false
            }
        };
        (ok && !pass.is_empty()).then_some(user)
    }

    async fn verify(&self, hash: Arc<str>, pass: String) -> bool {
        let Ok(_permit) = self.hashing.acquire().await else {
            return false;
        };
        tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|h| {
                Argon2::default()
                    .verify_password(pass.as_bytes(), &h)
                    .is_ok()
            })
        })
        .await
        .unwrap_or(false)
    }

    fn challenge(&self) -> Response<ResBody>
    where
        ResBody: Default,
    {
        let mut resp = Response::new(ResBody::default());
        *resp.status_mut() = StatusCode::UNAUTHORIZED;
        if let Ok(v) = HeaderValue::from_str(&format!(
            "Basic realm=\"{}\", charset=\"UTF-8\"",
            self.realm
        )) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        resp
    }
}

type AuthFuture<B, ResBody> =
    Pin<Box<dyn Future<Output = Result<Request<B>, Response<ResBody>>> + Send>>;

impl<B, ResBody> AsyncAuthorizeRequest<B> for BasicAuth<ResBody>
where
    B: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type RequestBody = B;
    type ResponseBody = ResBody;
    type Future = AuthFuture<B, ResBody>;

    fn authorize(&mut self, mut request: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            match this
                .check(request.headers().get(header::AUTHORIZATION))
                .await
            {
                Some(user) => {
                    request.extensions_mut().insert(Principal(user));
                    Ok(request)
                }
                None => Err(this.challenge()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user_pass: &str) -> HeaderValue {
        let b = base64::engine::general_purpose::STANDARD.encode(user_pass);
        HeaderValue::from_str(&format!("Basic {b}")).unwrap()
    }

    #[tokio::test]
    async fn plain_credentials() {
        let a = BasicAuth::<String>::new([
            ("alice".to_owned(), "s3cret".to_owned()),
            ("empty".to_owned(), String::new()),
        ]);
        assert_eq!(
            a.check(Some(&header("alice:s3cret"))).await,
            Some("alice".into())
        );
        assert_eq!(a.check(Some(&header("alice:wrong"))).await, None);
        assert_eq!(a.check(Some(&header("alice:s3cret2"))).await, None);
        assert_eq!(a.check(Some(&header("nobody:s3cret"))).await, None);
        assert_eq!(
            a.check(Some(&header("empty:"))).await,
            None,
            "empty password"
        );
        assert_eq!(
            a.check(Some(&HeaderValue::from_static("Bearer x"))).await,
            None
        );
        assert_eq!(a.check(None).await, None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn password_files() {
        let hash = hash_password("pw-a").unwrap();
        let file = format!("# users\n\nalice:{hash}\n");
        let a = BasicAuth::<String>::from_password_file(&file).unwrap();
        assert_eq!(
            a.check(Some(&header("alice:pw-a"))).await,
            Some("alice".into())
        );
        // Remembered after the first verification; a wrong one still fails.
        assert_eq!(
            a.check(Some(&header("alice:pw-a"))).await,
            Some("alice".into())
        );
        assert_eq!(a.check(Some(&header("alice:pw-b"))).await, None);
        assert_eq!(a.check(Some(&header("bob:pw-a"))).await, None);
        for bad in [
            "alice:plain",
            "alice",
            ":$argon2id$x",
            "",
            &format!("a:{hash}\na:{hash}"),
        ] {
            assert!(
                BasicAuth::<String>::from_password_file(bad).is_err(),
                "{bad:?}"
            );
        }
    }
}
