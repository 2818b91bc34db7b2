//! HTTP Basic authentication for tower-http's `AsyncRequireAuthorizationLayer`, putting the
//! user's name in the request as a davrepl [`Principal`].

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

use base64::Engine as _;
use davrepl::Principal;
use http::{HeaderValue, Request, Response, StatusCode, header};
use tower_http::auth::AsyncAuthorizeRequest;

/// Checks `Authorization: Basic …` against a fixed set of users. Use it with
/// `tower_http::auth::AsyncRequireAuthorizationLayer::new(BasicAuth::new(users))`.
pub struct BasicAuth<ResBody> {
    users: Arc<HashMap<String, String>>,
    realm: Arc<str>,
    _body: PhantomData<fn() -> ResBody>,
}

impl<ResBody> Clone for BasicAuth<ResBody> {
    fn clone(&self) -> Self {
        Self {
            users: self.users.clone(),
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

impl<ResBody> BasicAuth<ResBody> {
    /// Accepts these (user, password) pairs.
    pub fn new(users: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            users: Arc::new(users.into_iter().collect()),
            realm: Arc::from("davrepl"),
            _body: PhantomData,
        }
    }

    /// Parses `name:password` as given on a command line.
    pub fn parse_user(spec: &str) -> Result<(String, String), String> {
        match spec.split_once(':') {
            Some((u, p)) if !u.is_empty() => Ok((u.to_owned(), p.to_owned())),
            _ => Err(format!("{spec:?} is not NAME:PASSWORD")),
        }
    }

    fn check(&self, value: Option<&HeaderValue>) -> Option<String> {
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
        let expected = self.users.get(user)?;
        // Compare without an early exit so timing does not reveal the matching prefix.
        let same = expected.len() == pass.len()
            && expected
                .bytes()
                .zip(pass.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        same.then(|| user.to_owned())
    }
}

impl<B, ResBody> AsyncAuthorizeRequest<B> for BasicAuth<ResBody>
where
    B: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type RequestBody = B;
    type ResponseBody = ResBody;
    type Future = std::future::Ready<Result<Request<B>, Response<ResBody>>>;

    fn authorize(&mut self, mut request: Request<B>) -> Self::Future {
        match self.check(request.headers().get(header::AUTHORIZATION)) {
            Some(user) => {
                request.extensions_mut().insert(Principal(user));
                std::future::ready(Ok(request))
            }
            None => {
                let mut resp = Response::new(ResBody::default());
                *resp.status_mut() = StatusCode::UNAUTHORIZED;
                if let Ok(v) = HeaderValue::from_str(&format!(
                    "Basic realm=\"{}\", charset=\"UTF-8\"",
                    self.realm
                )) {
                    resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
                std::future::ready(Err(resp))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> BasicAuth<String> {
        BasicAuth::new([("alice".to_owned(), "s3cret".to_owned())])
    }

    fn header(v: &str) -> HeaderValue {
        HeaderValue::from_str(v).unwrap()
    }

    #[test]
    fn checks_credentials() {
        let a = auth();
        let ok = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        assert_eq!(
            a.check(Some(&header(&format!("Basic {ok}")))),
            Some("alice".into())
        );
        let bad = base64::engine::general_purpose::STANDARD.encode("alice:wrong");
        assert_eq!(a.check(Some(&header(&format!("Basic {bad}")))), None);
        assert_eq!(a.check(Some(&header("Bearer x"))), None);
        assert_eq!(a.check(None), None);
        assert_eq!(
            BasicAuth::<String>::parse_user("bob:pw:x"),
            Ok(("bob".into(), "pw:x".into()))
        );
        assert!(BasicAuth::<String>::parse_user("nopassword").is_err());
    }
}
