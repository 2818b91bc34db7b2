//! The Exchange SQL subset used by SEARCH and replication manifests (spec §2.9).
//!
//! [`parse`] accepts both quote styles for property names, keywords in any case, `AS` aliases,
//! `FROM "url"` and `FROM SCOPE('… traversal of "url"')` forms. Syntax errors carry the byte
//! position; valid but unsupported features (`GROUP BY`, full-text predicates, several scopes,
//! `file://` URLs) are reported separately so the layer can answer `422` instead of `400`.
//! [`Query::to_sql`] renders a canonical text that [`parse`] reads back to the same query; the
//! canonical text of the scope and `WHERE` ([`Query::binding`]) is what a collblob is bound to.
//!
//! Reading is in `parse.rs`, rendering in `render.rs`, evaluation in `eval.rs`.

mod eval;
mod parse;
mod render;

pub use eval::{Budget, BudgetExceeded, SortKey, Value, eval, eval_within, like, like_within};
pub use parse::parse;

/// Why a query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    /// Not valid SQL (answer 400).
    #[error("SQL syntax error at byte {pos}: {msg}")]
    Syntax {
        /// Byte offset in the query text.
        pos: usize,
        /// What was expected.
        msg: String,
    },
    /// Valid Exchange SQL this server does not support (answer 422).
    #[error("unsupported SQL feature: {0}")]
    Unsupported(String),
    /// Over a configured limit (length or expression depth).
    #[error("SQL query too complex: {0}")]
    TooComplex(String),
}

/// How deep a scope reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Traversal {
    /// Direct members.
    Shallow,
    /// All descendants.
    Deep,
    /// Sub-collections only, at any depth.
    Hierarchical,
}

impl Traversal {
    fn keyword(self) -> &'static str {
        match self {
            Self::Shallow => "SHALLOW",
            Self::Deep => "DEEP",
            Self::Hierarchical => "HIERARCHICAL",
        }
    }
}

/// The `FROM` part: a URL (`""` = the Request-URI) and a traversal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The traversal.
    pub traversal: Traversal,
    /// The URL as written (absolute, server-relative or empty).
    pub url: String,
}

/// One selected column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Full property name, e.g. `urn:schemas:httpmail:subject`.
    pub prop: String,
    /// `AS alias`: the element name used in the response (no namespace).
    pub alias: Option<String>,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `<>` or `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    fn text(self) -> &'static str {
        match self {
            Self::Eq => "=",
            Self::Ne => "<>",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
        }
    }
}

/// An operand of a predicate.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A property, by full name.
    Prop(String),
    /// A string literal.
    Str(String),
    /// A number literal.
    Num(f64),
    /// `TRUE` / `FALSE`.
    Bool(bool),
    /// `CAST(x AS "type")`.
    Cast(Box<Operand>, String),
}

/// A `WHERE` condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `a OR b OR …`
    Or(Vec<Expr>),
    /// `a AND b AND …`
    And(Vec<Expr>),
    /// `NOT a`
    Not(Box<Expr>),
    /// `x op y`
    Cmp(Operand, CmpOp, Operand),
    /// `x IS [NOT] NULL` (the flag is true for `IS NOT NULL`)
    IsNull(Operand, bool),
    /// `x [NOT] LIKE 'pattern'` (the flag is true for `NOT LIKE`)
    Like(Operand, String, bool),
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// `None` for `SELECT *`.
    pub columns: Option<Vec<Column>>,
    /// The scope (exactly one is supported).
    pub scope: Scope,
    /// The `WHERE` condition.
    pub filter: Option<Expr>,
    /// `ORDER BY` (property, ascending).
    pub order_by: Vec<(String, bool)>,
}

/// Limits applied while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlLimits {
    /// Longest query text in bytes.
    pub max_len: usize,
    /// Deepest nesting of the `WHERE` expression.
    pub max_depth: usize,
    /// Longest `LIKE` pattern in characters (matching costs at most text × pattern steps).
    pub max_like_len: usize,
    /// Most evaluation steps one request may spend on its `WHERE` filter over all rows (see
    /// [`Budget`]); past it the request ends with an error.
    pub max_eval_steps: u64,
}

impl Default for SqlLimits {
    fn default() -> Self {
        Self {
            max_len: 16 * 1024,
            max_depth: 32,
            max_like_len: 256,
            max_eval_steps: 200_000_000,
        }
    }
}

/// Splits a full property name into (namespace, local name) after the last `/` or `:`.
pub fn split_prop(full: &str) -> (&str, &str) {
    match full.rfind(['/', ':']) {
        Some(i) if i + 1 < full.len() => (&full[..=i], &full[i + 1..]),
        _ => ("", full),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_is_linear_and_correct() {
        assert!(like("Hello", "h%O"));
        assert!(like("abc", "a_c"));
        assert!(like("", "%%"));
        assert!(!like("abc", "a_"));
        assert!(like("mississippi", "%iss%ppi"));
        assert!(!like("mississippi", "%iss%ppa"));
        // The pattern that backtracked exponentially: now a bounded number of steps.
        let pattern = format!("{}x", "%".repeat(40));
        let text = "a".repeat(10_000);
        assert!(!like(&text, &pattern));
        let pattern = format!("{}b", "%a".repeat(100));
        assert!(!like(&text, &pattern));
    }

    #[test]
    fn budgets_stop_expensive_evaluation() {
        let text = "a".repeat(100_000);
        // One `%` then a long literal: every shift of the `%` re-compares up to 200 characters.
        let pattern = format!("%{}b", "a".repeat(200));
        let small = Budget::new(1_000_000);
        assert_eq!(like_within(&text, &pattern, &small), Err(BudgetExceeded));
        let cheap = Budget::new(1_000_000);
        assert_eq!(like_within("abc", "a%c", &cheap), Ok(true));
        assert!(cheap.charge(999_000).is_ok());
    }

    #[test]
    fn sort_keys_are_a_total_order() {
        let mut v: Vec<SortKey> = ["2", "10", "1a", "", "x", "NaN", "-1", "1e3"]
            .iter()
            .map(|s| SortKey::of(Some(Value::Str((*s).into()))))
            .chain([SortKey::of(None), SortKey::of(Some(Value::Bool(true)))])
            .collect();
        v.sort();
        assert_eq!(v[0], SortKey::Absent);
        assert_eq!(v[1], SortKey::Bool(true));
        assert_eq!(v[2], SortKey::Num(-1.0));
        assert!(matches!(v.last(), Some(SortKey::Text(t)) if t == "x"));
    }

    fn p(s: &str) -> Result<Query, SqlError> {
        parse(s, &SqlLimits::default())
    }

    #[test]
    fn real_world_forms() {
        let q = p(r#"SELECT 'urn:schemas:mail:Size', "https://schemas.microsoft.com/repl/resourcetag" FROM SCOPE ('SHALLOW TRAVERSAL OF "/exchange/user0/inbox"')"#).unwrap();
        assert_eq!(
            q.scope,
            Scope {
                traversal: Traversal::Shallow,
                url: "/exchange/user0/inbox".into()
            }
        );
        assert_eq!(q.columns.as_ref().unwrap().len(), 2);
        let q = p(r#"Select "urn:schemas:calendar:location" AS location FROM Scope('SHALLOW TRAVERSAL OF ""') WHERE NOT ("a:x" = 2 oR "a:x" = 3) AND ("DAV:ishidden" is Null OR "DAV:contentclass" = 'urn:content-classes:appointment') ORDER BY "urn:schemas:calendar:created" ASC"#).unwrap();
        assert_eq!(q.scope.url, "");
        assert_eq!(q.columns.unwrap()[0].alias.as_deref(), Some("location"));
        assert_eq!(q.order_by.len(), 1);
        let q = p(r#"SELECT * FROM "/x/""#).unwrap();
        assert_eq!(q.scope.traversal, Traversal::Shallow);
        let q = p(r#"select "a:b" from scope("/x/")"#).unwrap();
        assert_eq!(q.scope.traversal, Traversal::Deep);
        let q = p(r#"SELECT "a:b" FROM scope('hierarchical traversal of "/x"') Where NOT "c:d" = 2 AND "DAV:isfolder" = False"#).unwrap();
        assert_eq!(q.scope.traversal, Traversal::Hierarchical);
    }

    #[test]
    fn errors_are_classified() {
        assert!(matches!(p("SELEC x"), Err(SqlError::Syntax { pos: 0, .. })));
        assert!(matches!(
            p(r#"SELECT "a" FROM SCOPE('x')"#),
            Err(SqlError::Syntax { .. })
        ));
        assert!(matches!(
            p(r#"SELECT "a" FROM "/x" WHERE"#),
            Err(SqlError::Syntax { pos: 26, .. })
        ));
        assert!(matches!(
            p(r#"SELECT "a" FROM SCOPE('deep traversal of "/a"', 'deep traversal of "/b"')"#),
            Err(SqlError::Unsupported(_))
        ));
        assert!(matches!(
            p(r#"SELECT "a" FROM "/x" WHERE CONTAINS('x')"#),
            Err(SqlError::Unsupported(_))
        ));
        assert!(matches!(
            p(r#"SELECT "a" FROM "/x" GROUP BY "a""#),
            Err(SqlError::Unsupported(_))
        ));
        assert!(matches!(
            p(r#"SELECT "a" FROM SCOPE('deep traversal of "file://./x"')"#),
            Err(SqlError::Unsupported(_))
        ));
        let deep = format!(
            r#"SELECT "a" FROM "/x" WHERE {}"a" = 1{}"#,
            "(".repeat(100),
            ")".repeat(100)
        );
        assert!(matches!(p(&deep), Err(SqlError::TooComplex(_))));
    }

    #[test]
    fn canonical_round_trip_and_binding() {
        let a = p(r#"select 'a:b' FROM scope('Shallow Traversal Of "/x"') where "c:d" = 'it''s' and "e:f" >= 2"#).unwrap();
        let b = p(r#"SELECT "z:z" FROM SCOPE('SHALLOW TRAVERSAL OF "/x"') WHERE "c:d" = 'it''s' AND "e:f" >= 2 ORDER BY "a:b""#).unwrap();
        assert_eq!(p(&a.to_sql()).unwrap(), a);
        assert_eq!(a.binding("/x"), b.binding("/x"));
        assert_ne!(a.binding("/x"), a.binding("/y"));
    }

    #[test]
    fn evaluation() {
        let q = p(r#"SELECT * FROM "/" WHERE "n" > 2 AND NOT "b" = true AND "s" LIKE 'he%o' AND "gone" IS NULL"#).unwrap();
        let f = q.filter.unwrap();
        let look = |n: &str| match n {
            "n" => Some(Value::Str("10".into())),
            "b" => Some(Value::Str("0".into())),
            "s" => Some(Value::Str("Hello".into())),
            _ => None,
        };
        assert!(eval(&f, &look));
        let look2 = |n: &str| {
            if n == "n" {
                Some(Value::Num(1.0))
            } else {
                look(n)
            }
        };
        assert!(!eval(&f, &look2));
        assert_eq!(
            split_prop("urn:schemas:httpmail:size"),
            ("urn:schemas:httpmail:", "size")
        );
        assert_eq!(
            split_prop("http://schemas.microsoft.com/repl/repl-uid"),
            ("http://schemas.microsoft.com/repl/", "repl-uid")
        );
        assert_eq!(split_prop("DAV:href"), ("DAV:", "href"));
    }
}
