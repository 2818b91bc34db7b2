//! Every failure becomes an HTTP response here, in one place.

use std::borrow::Cow;

use davrepl_proto::headers::HeaderError;
use davrepl_proto::href::HrefError;
use davrepl_proto::sql::SqlError;
use davrepl_proto::xml::{XmlError, XmlWriter};
use davrepl_store::{ErrorKind, StoreError};
use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{self, DavBody};

/// An error answer: status, a human-readable reason, and optionally a `DAV:error` condition.
#[derive(Debug)]
pub(crate) struct DavError {
    pub(crate) status: StatusCode,
    pub(crate) reason: Cow<'static, str>,
    pub(crate) condition: Option<&'static str>,
    /// A resource the condition names (`DAV:lock-token-submitted` and
    /// `DAV:no-conflicting-lock` carry the lock root's href).
    pub(crate) resource: Option<davrepl_store::ResourcePath>,
}

pub(crate) type DavResult<T> = Result<T, DavError>;

impl DavError {
    pub(crate) fn new(status: StatusCode, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            reason: reason.into(),
            condition: None,
            resource: None,
        }
    }

    pub(crate) fn bad_request(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason)
    }

    /// Adds a `DAV:error` precondition/postcondition element (RFC 4918 §16).
    pub(crate) fn with_condition(mut self, condition: &'static str) -> Self {
        self.condition = Some(condition);
        self
    }

    /// The response, with any resource the condition names written as an href under `mount`.
    pub(crate) fn into_response_at(self, mount: &davrepl_proto::href::Mount) -> Response<DavBody> {
        let href = self.resource.as_ref().map(|p| mount.href(p, false));
        self.render(href.as_deref())
    }

    pub(crate) fn into_response(self) -> Response<DavBody> {
        let href = self.resource.as_ref().map(|p| p.as_str().to_owned());
        self.render(href.as_deref())
    }

    fn render(self, href: Option<&str>) -> Response<DavBody> {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, reason = %self.reason, "request failed");
        } else {
            tracing::debug!(status = %self.status, reason = %self.reason, "request refused");
        }
        let (ct, body) = match self.condition {
            Some(cond) => {
                let mut w = XmlWriter::new();
                let tag = format!("D:{cond}");
                w.declaration().start("D:error", &[("xmlns:D", "DAV:")]);
                match href {
                    Some(h) => {
                        w.start(&tag, &[]).text_element("D:href", h).end(&tag);
                    }
                    None => {
                        w.empty(&tag, &[]);
                    }
                }
                w.end("D:error");
                ("application/xml; charset=utf-8", w.finish())
            }
            None if self.status == StatusCode::NOT_MODIFIED => ("", bytes::Bytes::new()),
            None => (
                "text/plain; charset=utf-8",
                bytes::Bytes::from(format!("{}\n", self.reason)),
            ),
        };
        let mut resp = Response::new(if body.is_empty() {
            body::empty()
        } else {
            body::full(body)
        });
        *resp.status_mut() = self.status;
        if self.status.as_u16() == 475 {
            // Not a registered status: without this, hyper would send "475 " with no phrase.
            resp.extensions_mut()
                .insert(hyper::ext::ReasonPhrase::from_static(b"Invalid collblob"));
        }
        if !ct.is_empty() {
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        resp
    }
}

impl From<StoreError> for DavError {
    fn from(e: StoreError) -> Self {
        let status = match e.kind() {
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::AlreadyExists | ErrorKind::IsCollection => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::ParentMissing | ErrorKind::NotCollection => StatusCode::CONFLICT,
            ErrorKind::PreconditionFailed | ErrorKind::DestinationExists => {
                StatusCode::PRECONDITION_FAILED
            }
            ErrorKind::SameResource
            | ErrorKind::DestinationInsideSource
            | ErrorKind::RootImmutable => StatusCode::FORBIDDEN,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::BodyAborted | ErrorKind::InvalidInput | ErrorKind::ChecksumMismatch => {
                StatusCode::BAD_REQUEST
            }
            ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Locked | ErrorKind::LockConflict => StatusCode::LOCKED,
            ErrorKind::NoSuchLock => StatusCode::CONFLICT,
            ErrorKind::NotLockOwner => StatusCode::FORBIDDEN,
            ErrorKind::QuotaExceeded => StatusCode::INSUFFICIENT_STORAGE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let condition = match e.kind() {
            ErrorKind::Locked => Some("lock-token-submitted"),
            ErrorKind::LockConflict => Some("no-conflicting-lock"),
            ErrorKind::NoSuchLock => Some("lock-token-matches-request-uri"),
            ErrorKind::QuotaExceeded => Some("quota-not-exceeded"),
            _ => None,
        };
        if let Some(cond) = condition {
            let mut out = Self::new(status, e.message().to_owned()).with_condition(cond);
            out.resource = e.resource().cloned();
            return out;
        }
        if !status.is_server_error() {
            return Self::new(status, e.message().to_owned());
        }
        // The store's own words (database errors, file paths) stay in the server log; the
        // client learns only what it can act on.
        tracing::error!(error = %e, kind = ?e.kind(), "store error");
        let reason = if status == StatusCode::SERVICE_UNAVAILABLE {
            "the store is temporarily unavailable; retry later (a write sent just before may \
             or may not have been applied: check its result first)"
        } else {
            "the store failed to complete the request; the server log has the details"
        };
        Self::new(status, reason)
    }
}

impl From<SqlError> for DavError {
    fn from(e: SqlError) -> Self {
        match e {
            SqlError::Unsupported(_) | SqlError::TooComplex(_) => {
                DavError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            SqlError::Syntax { .. } => DavError::bad_request(e.to_string()),
        }
    }
}

impl From<HeaderError> for DavError {
    fn from(e: HeaderError) -> Self {
        Self::bad_request(e.to_string())
    }
}

impl From<XmlError> for DavError {
    fn from(e: XmlError) -> Self {
        let status = match e {
            XmlError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, e.to_string())
    }
}

impl From<HrefError> for DavError {
    fn from(e: HrefError) -> Self {
        Self::bad_request(format!("bad path: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every store error kind has a deliberate status; only the last two are server errors,
    /// and their bodies never carry the store's own text.
    #[test]
    fn store_errors_map_to_statuses() {
        use ErrorKind as K;
        let table = [
            (K::NotFound, 404),
            (K::AlreadyExists, 405),
            (K::IsCollection, 405),
            (K::ParentMissing, 409),
            (K::NotCollection, 409),
            (K::PreconditionFailed, 412),
            (K::DestinationExists, 412),
            (K::SameResource, 403),
            (K::DestinationInsideSource, 403),
            (K::RootImmutable, 403),
            (K::TooLarge, 413),
            (K::BodyAborted, 400),
            (K::InvalidInput, 400),
            (K::Unsupported, 501),
            (K::Unavailable, 503),
            (K::Internal, 500),
        ];
        for (kind, status) in table {
            let e = DavError::from(StoreError::new(kind, "secret table name davrepl_x"));
            assert_eq!(e.status.as_u16(), status, "{kind:?}");
            if status >= 500 {
                assert!(
                    !e.reason.contains("davrepl_x"),
                    "{kind:?} leaks: {}",
                    e.reason
                );
            } else {
                assert_eq!(e.reason, "secret table name davrepl_x");
            }
        }
    }

    #[test]
    fn invalid_collblob_has_its_reason_phrase() {
        let resp = DavError::new(StatusCode::from_u16(475).unwrap(), "garbled").into_response();
        assert_eq!(resp.status().as_u16(), 475);
        let phrase = resp.extensions().get::<hyper::ext::ReasonPhrase>();
        assert_eq!(phrase.map(|p| p.as_bytes()), Some(&b"Invalid collblob"[..]));
    }
}
