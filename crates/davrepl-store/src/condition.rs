//! Request conditions, evaluated by the store atomically with the write (design.md §3).
//!
//! The layer parses `If`, `If-Match` and `If-None-Match` into one [`Condition`]; every mutating
//! store method takes it and calls [`Condition::evaluate`] with a view of the *current* state
//! inside the same atomic step that performs the write. There is no check-then-write anywhere.

use crate::path::ResourcePath;

/// What a condition needs to know about one existing resource: its current tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    /// The current resourcetag.
    pub resource_tag: String,
    /// The current repl-uid (`rid:…`).
    pub repl_uid: String,
    /// The current contenttag (collections only).
    pub content_tag: Option<String>,
    /// The current strong ETag, with quotes.
    pub etag: String,
}

/// One term of an `If` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfTerm {
    /// A state token (`<rt:…>`, `<rid:…>`, `<ct:…>`, a lock token or any URI): true when it equals
    /// the resource's resourcetag, repl-uid or contenttag.
    Token(String),
    /// An entity tag in `[...]`: true when it equals the resource's ETag (weakness ignored).
    ETag(String),
}

impl IfTerm {
    /// Whether this is a replication state token (a resourcetag, repl-uid or contenttag), as
    /// opposed to a lock token, another URI or an entity tag.
    pub fn is_replication_token(&self) -> bool {
        matches!(self, IfTerm::Token(t) if is_state_token(t))
    }
}

/// One condition of an `If` list, possibly negated with `Not`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfCondition {
    /// `Not` was given.
    pub negated: bool,
    /// The term.
    pub term: IfTerm,
}

/// Which resource an `If` list applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfResource {
    /// An untagged list: the request target (the source, for MOVE and COPY).
    Target,
    /// A tagged list naming a resource of this store.
    Path(ResourcePath),
    /// A tagged list naming a resource outside this store: it never exists here.
    Foreign,
}

/// One parenthesised list of an `If` header; its conditions are AND-ed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfList {
    /// The resource the list is evaluated against.
    pub resource: IfResource,
    /// The conditions (at least one).
    pub conditions: Vec<IfCondition>,
}

/// `If-Match` / `If-None-Match` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntityMatch {
    /// `*`: any current representation.
    Any,
    /// A list of entity tags (with quotes, possibly `W/`).
    Tags(Vec<String>),
}

/// The combined precondition of one request. The default is "no condition".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Condition {
    /// The `If` header's lists, OR-ed. Empty means no `If` header.
    pub if_lists: Vec<IfList>,
    /// `If-Match`.
    pub if_match: Option<EntityMatch>,
    /// `If-None-Match`.
    pub if_none_match: Option<EntityMatch>,
    /// The principal sending the request: lock tokens of locks another principal took do not
    /// count as submitted by it (RFC 4918 §6.4). `None` when the request is not authenticated.
    pub principal: Option<String>,
}

fn strip_weak(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

/// Whether a state token is one of the tokens a resource's state derives from (resourcetag,
/// repl-uid, contenttag) rather than a lock token or another URI.
fn is_state_token(t: &str) -> bool {
    ["rt:", "rid:", "ct:"].iter().any(|p| t.starts_with(p))
}

impl IfCondition {
    /// `locked` says whether the token names an active lock covering the resource (a lock
    /// covers a URL whether or not a resource is mapped there).
    fn holds(&self, state: Option<&Tokens>, locked: impl FnOnce(&str) -> bool) -> bool {
        let matched = match (&self.term, state) {
            (IfTerm::Token(t), Some(s))
                if *t == s.resource_tag
                    || *t == s.repl_uid
                    || s.content_tag.as_deref() == Some(t.as_str()) =>
            {
                true
            }
            (IfTerm::Token(t), _) => !is_state_token(t) && locked(t),
            (IfTerm::ETag(_), None) => false,
            (IfTerm::ETag(e), Some(s)) => strip_weak(e) == s.etag,
        };
        matched != self.negated
    }
}

impl Condition {
    /// No condition at all.
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether there is nothing to evaluate.
    pub fn is_empty(&self) -> bool {
        self.if_lists.is_empty() && self.if_match.is_none() && self.if_none_match.is_none()
    }

    /// A condition requiring that the target does not exist (`If-None-Match: *`).
    pub fn create_only() -> Self {
        Self {
            if_none_match: Some(EntityMatch::Any),
            ..Self::default()
        }
    }

    /// Every path [`evaluate`](Self::evaluate) may look up for a request on `target`: the
    /// target and each resource named by a tagged `If` list, without repeats. A store whose
    /// lookups are asynchronous fetches these first (inside its atomic step), then evaluates
    /// against what it fetched.
    pub fn paths(&self, target: &ResourcePath) -> Vec<ResourcePath> {
        let mut out = vec![target.clone()];
        for list in &self.if_lists {
            if let IfResource::Path(p) = &list.resource
                && !out.contains(p)
            {
                out.push(p.clone());
            }
        }
        out
    }

    /// The lock tokens the request submits: every token of the `If` header that is not
    /// negated (RFC 4918 §10.4.1: appearing in the header is submitting it, whether or not its
    /// list holds).
    pub fn submitted(&self) -> impl Iterator<Item = &str> {
        self.if_lists
            .iter()
            .flat_map(|l| &l.conditions)
            .filter_map(|c| match &c.term {
                IfTerm::Token(t) if !c.negated && !is_state_token(t) => Some(t.as_str()),
                _ => None,
            })
    }

    /// Whether evaluating the condition needs to know which locks cover a path: some term
    /// names a token that is not a resourcetag, repl-uid or contenttag.
    pub fn needs_locks(&self) -> bool {
        self.if_lists
            .iter()
            .flat_map(|l| &l.conditions)
            .any(|c| matches!(&c.term, IfTerm::Token(t) if !is_state_token(t)))
    }

    /// Evaluates the whole condition for a request on `target`. `lookup` returns the current
    /// state of a path, or `None` if nothing exists there; the store calls this inside the
    /// atomic step of the write. Returns `true` when the request may proceed. Lock tokens
    /// never match here; see [`evaluate_locked`](Self::evaluate_locked).
    pub fn evaluate(
        &self,
        target: &ResourcePath,
        lookup: impl FnMut(&ResourcePath) -> Option<Tokens>,
    ) -> bool {
        self.evaluate_locked(target, lookup, |_, _| false)
    }

    /// [`evaluate`](Self::evaluate), where a token term also holds when `locked(path, token)`
    /// says an active lock with that token covers the path.
    pub fn evaluate_locked(
        &self,
        target: &ResourcePath,
        mut lookup: impl FnMut(&ResourcePath) -> Option<Tokens>,
        mut locked: impl FnMut(&ResourcePath, &str) -> bool,
    ) -> bool {
        let target_state = lookup(target);
        let target_state = target_state.as_ref();
        if let Some(m) = &self.if_match {
            let ok = match (m, target_state) {
                (_, None) => false,
                (EntityMatch::Any, Some(_)) => true,
                (EntityMatch::Tags(tags), Some(s)) => {
                    // Strong comparison: weak tags never match.
                    tags.iter().any(|t| !t.starts_with("W/") && *t == s.etag)
                }
            };
            if !ok {
                return false;
            }
        }
        if let Some(m) = &self.if_none_match {
            let matched = match (m, target_state) {
                (_, None) => false,
                (EntityMatch::Any, Some(_)) => true,
                (EntityMatch::Tags(tags), Some(s)) => tags.iter().any(|t| strip_weak(t) == s.etag),
            };
            if matched {
                return false;
            }
        }
        if self.if_lists.is_empty() {
            return true;
        }
        self.if_lists.iter().any(|list| {
            let other;
            let (path, state) = match &list.resource {
                IfResource::Target => (Some(target), target_state),
                IfResource::Path(p) if p == target => (Some(target), target_state),
                IfResource::Path(p) => {
                    other = lookup(p);
                    (Some(p), other.as_ref())
                }
                IfResource::Foreign => (None, None),
            };
            list.conditions
                .iter()
                .all(|c| c.holds(state, |t| path.is_some_and(|p| locked(p, t))))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> Tokens {
        Tokens {
            resource_tag: "rt:1".into(),
            repl_uid: "rid:1".into(),
            content_tag: None,
            etag: "\"e1\"".into(),
        }
    }

    fn list(terms: &[(bool, IfTerm)]) -> IfList {
        IfList {
            resource: IfResource::Target,
            conditions: terms
                .iter()
                .map(|(n, t)| IfCondition {
                    negated: *n,
                    term: t.clone(),
                })
                .collect(),
        }
    }

    fn eval(c: &Condition, exists: bool) -> bool {
        let root = ResourcePath::root();
        c.evaluate(&root, |_| exists.then(view))
    }

    #[test]
    fn if_lists_or_and_not() {
        let rt = IfTerm::Token("rt:1".into());
        let bad = IfTerm::Token("rt:2".into());
        let c = |lists| Condition {
            if_lists: lists,
            ..Condition::default()
        };
        assert!(eval(&c(vec![list(&[(false, rt.clone())])]), true));
        assert!(!eval(&c(vec![list(&[(false, rt.clone())])]), false));
        assert!(!eval(&c(vec![list(&[(false, bad.clone())])]), true));
        assert!(eval(
            &c(vec![
                list(&[(false, bad.clone())]),
                list(&[(false, rt.clone())])
            ]),
            true
        ));
        assert!(!eval(
            &c(vec![list(&[(false, rt.clone()), (false, bad.clone())])]),
            true
        ));
        assert!(eval(
            &c(vec![list(&[(false, rt.clone()), (true, bad.clone())])]),
            true
        ));
        assert!(eval(
            &c(vec![list(&[(false, IfTerm::ETag("W/\"e1\"".into()))])]),
            true
        ));
        assert!(eval(
            &c(vec![list(&[(false, IfTerm::Token("rid:1".into()))])]),
            true
        ));
    }

    #[test]
    fn entity_matches() {
        let im = |m| Condition {
            if_match: Some(m),
            ..Condition::default()
        };
        let inm = |m| Condition {
            if_none_match: Some(m),
            ..Condition::default()
        };
        assert!(eval(&im(EntityMatch::Any), true));
        assert!(!eval(&im(EntityMatch::Any), false));
        assert!(eval(&im(EntityMatch::Tags(vec!["\"e1\"".into()])), true));
        assert!(!eval(&im(EntityMatch::Tags(vec!["W/\"e1\"".into()])), true));
        assert!(!eval(&inm(EntityMatch::Any), true));
        assert!(eval(&inm(EntityMatch::Any), false));
        assert!(!eval(
            &inm(EntityMatch::Tags(vec!["W/\"e1\"".into()])),
            true
        ));
        assert!(eval(&Condition::none(), false));
    }
}

#[cfg(test)]
mod model {
    //! `Condition::evaluate` against a reference model written as a truth table: the header
    //! holds iff some list has every condition hold, where a condition holds iff (its term
    //! names the resource's current rt, rid, ct or etag) XOR Not.
    use super::*;
    use proptest::prelude::*;

    const TOKENS: &[&str] = &["rt:1", "rt:2", "rid:1", "rid:2", "ct:1", "\"e1\"", "\"e2\""];

    fn state(which: u8) -> Option<Tokens> {
        match which {
            0 => None,
            1 => Some(Tokens {
                resource_tag: "rt:1".into(),
                repl_uid: "rid:1".into(),
                content_tag: None,
                etag: "\"e1\"".into(),
            }),
            _ => Some(Tokens {
                resource_tag: "rt:2".into(),
                repl_uid: "rid:2".into(),
                content_tag: Some("ct:1".into()),
                etag: "\"e2\"".into(),
            }),
        }
    }

    fn model(lists: &[Vec<(bool, usize, bool)>], st: Option<&Tokens>) -> bool {
        lists.iter().any(|l| {
            l.iter().all(|&(neg, t, etag)| {
                let tok = TOKENS[t];
                let named = match st {
                    None => false,
                    Some(s) if etag => tok == s.etag,
                    Some(s) => [
                        Some(s.resource_tag.as_str()),
                        Some(s.repl_uid.as_str()),
                        s.content_tag.as_deref(),
                    ]
                    .contains(&Some(tok)),
                };
                named ^ neg
            })
        })
    }

    proptest! {
        #[test]
        fn matches_the_reference(lists in prop::collection::vec(prop::collection::vec((any::<bool>(), 0..TOKENS.len(), any::<bool>()), 1..4), 1..4),
                                 which in 0u8..3) {
            let c = Condition {
                if_lists: lists.iter().map(|l| IfList {
                    resource: IfResource::Target,
                    conditions: l.iter().map(|&(negated, t, etag)| IfCondition {
                        negated,
                        term: if etag { IfTerm::ETag(TOKENS[t].into()) } else { IfTerm::Token(TOKENS[t].into()) },
                    }).collect(),
                }).collect(),
                ..Condition::default()
            };
            let st = state(which);
            let got = c.evaluate(&ResourcePath::root(), |_| st.clone());
            prop_assert_eq!(got, model(&lists, st.as_ref()));
        }
    }
}
