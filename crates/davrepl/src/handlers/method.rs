//! The methods served under the mount: parsing, the `Allow` list and what each asks of the
//! authorizer.

use http::Method;

use crate::config::Access;
use davrepl_proto::headers::Depth;

/// A method the layer serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DavMethod {
    Options,
    Get,
    Head,
    Put,
    Post,
    Delete,
    Mkcol,
    Copy,
    Move,
    Propfind,
    Proppatch,
    Search,
    Report,
    Lock,
    Unlock,
    Subscribe,
    Poll,
    Unsubscribe,
}

impl DavMethod {
    /// Every method, in `Allow` order.
    pub(crate) const ALL: [Self; 18] = [
        Self::Options,
        Self::Get,
        Self::Head,
        Self::Put,
        Self::Post,
        Self::Delete,
        Self::Mkcol,
        Self::Copy,
        Self::Move,
        Self::Propfind,
        Self::Proppatch,
        Self::Search,
        Self::Report,
        Self::Lock,
        Self::Unlock,
        Self::Subscribe,
        Self::Poll,
        Self::Unsubscribe,
    ];

    /// The `Allow` header value: every method above.
    pub(crate) const ALLOW: &'static str = "OPTIONS, GET, HEAD, PUT, POST, DELETE, MKCOL, COPY, MOVE, PROPFIND, PROPPATCH, SEARCH, REPORT, LOCK, UNLOCK, SUBSCRIBE, POLL, UNSUBSCRIBE";

    /// The method of a request, `None` when the layer does not serve it.
    pub(crate) fn parse(m: &Method) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == m.as_str())
    }

    /// The method's name on the wire.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Options => "OPTIONS",
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Put => "PUT",
            Self::Post => "POST",
            Self::Delete => "DELETE",
            Self::Mkcol => "MKCOL",
            Self::Copy => "COPY",
            Self::Move => "MOVE",
            Self::Propfind => "PROPFIND",
            Self::Proppatch => "PROPPATCH",
            Self::Search => "SEARCH",
            Self::Report => "REPORT",
            Self::Lock => "LOCK",
            Self::Unlock => "UNLOCK",
            Self::Subscribe => "SUBSCRIBE",
            Self::Poll => "POLL",
            Self::Unsubscribe => "UNSUBSCRIBE",
        }
    }

    /// What the request asks of the authorizer for its Request-URI (`depth` from its `Depth`
    /// header). A method the layer does not serve is treated as a write.
    pub(crate) fn access(method: Option<Self>, depth: Option<Depth>) -> Access {
        let shallow = matches!(depth, Some(Depth::Zero));
        match method {
            Some(Self::Get | Self::Head | Self::Options | Self::Search) => Access::Read,
            // Watching a collection's members reveals them, like listing them.
            Some(Self::Subscribe) if shallow => Access::Read,
            Some(Self::Subscribe) => Access::ReadTree,
            Some(Self::Poll | Self::Unsubscribe) => Access::Read,
            Some(Self::Propfind | Self::Copy) if shallow => Access::Read,
            Some(Self::Propfind | Self::Copy) => Access::ReadTree,
            // The only report served lists a collection's members (or its whole tree).
            Some(Self::Report) => Access::ReadTree,
            Some(Self::Delete | Self::Move) => Access::WriteTree,
            // A deep lock keeps everyone else from writing anywhere below.
            Some(Self::Lock) if !shallow => Access::WriteTree,
            Some(
                Self::Put | Self::Post | Self::Mkcol | Self::Proppatch | Self::Lock | Self::Unlock,
            )
            | None => Access::Write,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_allow_lists_every_method() {
        for m in DavMethod::ALL {
            let parsed = DavMethod::parse(&Method::from_bytes(m.as_str().as_bytes()).unwrap());
            assert_eq!(parsed, Some(m));
        }
        let allow: Vec<&str> = DavMethod::ALLOW.split(", ").collect();
        let all: Vec<&str> = DavMethod::ALL.iter().map(|m| m.as_str()).collect();
        assert_eq!(allow, all);
        assert_eq!(
            DavMethod::parse(&Method::from_bytes(b"BREW").unwrap()),
            None
        );
        assert_eq!(DavMethod::parse(&Method::from_bytes(b"get").unwrap()), None);
    }

    #[test]
    fn access_classes() {
        use DavMethod as M;
        let a = |m, d| DavMethod::access(Some(m), d);
        assert_eq!(a(M::Get, None), Access::Read);
        assert_eq!(a(M::Search, Some(Depth::Infinity)), Access::Read);
        assert_eq!(a(M::Propfind, Some(Depth::Zero)), Access::Read);
        assert_eq!(a(M::Propfind, Some(Depth::One)), Access::ReadTree);
        assert_eq!(
            a(M::Propfind, None),
            Access::ReadTree,
            "no Depth is infinity"
        );
        assert_eq!(a(M::Copy, Some(Depth::Zero)), Access::Read);
        assert_eq!(a(M::Copy, None), Access::ReadTree);
        assert_eq!(a(M::Report, Some(Depth::Zero)), Access::ReadTree);
        assert_eq!(a(M::Delete, Some(Depth::Zero)), Access::WriteTree);
        assert_eq!(a(M::Move, None), Access::WriteTree);
        assert_eq!(a(M::Lock, None), Access::WriteTree, "a deep lock");
        assert_eq!(a(M::Lock, Some(Depth::Zero)), Access::Write);
        for m in [M::Put, M::Post, M::Mkcol, M::Proppatch, M::Unlock] {
            assert_eq!(a(m, None), Access::Write, "{m:?}");
        }
        assert_eq!(DavMethod::access(None, None), Access::Write);
    }
}
