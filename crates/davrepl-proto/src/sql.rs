//! The Exchange SQL subset used by SEARCH and replication manifests (spec §2.9).
//!
//! [`parse`] accepts both quote styles for property names, keywords in any case, `AS` aliases,
//! `FROM "url"` and `FROM SCOPE('… traversal of "url"')` forms. Syntax errors carry the byte
//! position; valid but unsupported features (`GROUP BY`, full-text predicates, several scopes,
//! `file://` URLs) are reported separately so the layer can answer `422` instead of `400`.
//! [`Query::to_sql`] renders a canonical text that [`parse`] reads back to the same query; the
//! canonical text of the scope and `WHERE` ([`Query::binding`]) is what a collblob is bound to.

use std::fmt::Write as _;

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

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Dq(String),
    Sq(String),
    Num(f64),
    Sym(&'static str),
}

fn lex(s: &str) -> Result<Vec<(usize, Tok)>, SqlError> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let syn = |pos: usize, msg: &str| SqlError::Syntax {
        pos,
        msg: msg.to_owned(),
    };
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let tok = match c {
            b'"' => {
                let end = s[i + 1..]
                    .find('"')
                    .ok_or_else(|| syn(i, "unterminated \"…\""))?
                    + i
                    + 1;
                i = end + 1;
                Tok::Dq(s[start + 1..end].to_owned())
            }
            b'\'' => {
                let mut v = String::new();
                i += 1;
                loop {
                    let rel = s[i..]
                        .find('\'')
                        .ok_or_else(|| syn(start, "unterminated '…'"))?;
                    v.push_str(&s[i..i + rel]);
                    i += rel + 1;
                    if b.get(i) == Some(&b'\'') {
                        v.push('\'');
                        i += 1;
                    } else {
                        break;
                    }
                }
                Tok::Sq(v)
            }
            b'0'..=b'9' | b'-' | b'.' => {
                i += 1;
                while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                    i += 1;
                }
                let t = &s[start..i];
                Tok::Num(t.parse().map_err(|_| syn(start, "bad number"))?)
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                Tok::Word(s[start..i].to_owned())
            }
            _ => {
                let two = s.get(i..i + 2).unwrap_or("");
                let sym = match two {
                    "<>" => Some("<>"),
                    "!=" => Some("<>"),
                    "<=" => Some("<="),
                    ">=" => Some(">="),
                    _ => None,
                };
                if let Some(sym) = sym {
                    i += 2;
                    Tok::Sym(sym)
                } else {
                    i += 1;
                    Tok::Sym(match c {
                        b',' => ",",
                        b'(' => "(",
                        b')' => ")",
                        b'*' => "*",
                        b'=' => "=",
                        b'<' => "<",
                        b'>' => ">",
                        _ => {
                            return Err(syn(
                                start,
                                &format!("unexpected character {:?}", c as char),
                            ));
                        }
                    })
                }
            }
        };
        out.push((start, tok));
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    i: usize,
    end: usize,
    max_depth: usize,
    max_like_len: usize,
}

impl Parser {
    fn pos(&self) -> usize {
        self.toks.get(self.i).map_or(self.end, |t| t.0)
    }

    fn err<T>(&self, msg: impl Into<String>) -> Result<T, SqlError> {
        Err(SqlError::Syntax {
            pos: self.pos(),
            msg: msg.into(),
        })
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|t| &t.1)
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), SqlError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            self.err(format!("expected {kw}"))
        }
    }

    fn eat_sym(&mut self, sym: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Sym(s)) if *s == sym) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, sym: &str) -> Result<(), SqlError> {
        if self.eat_sym(sym) {
            Ok(())
        } else {
            self.err(format!("expected '{sym}'"))
        }
    }

    fn prop(&mut self) -> Result<String, SqlError> {
        match self.peek().cloned() {
            Some(Tok::Dq(s) | Tok::Sq(s)) => {
                self.i += 1;
                Ok(s)
            }
            _ => self.err("expected a quoted property name"),
        }
    }

    fn query(&mut self) -> Result<Query, SqlError> {
        self.expect_kw("SELECT")?;
        let columns = if self.eat_sym("*") {
            None
        } else {
            let mut cols = Vec::new();
            loop {
                let prop = self.prop()?;
                let alias = if self.eat_kw("AS") {
                    Some(match self.peek().cloned() {
                        Some(Tok::Word(w) | Tok::Dq(w) | Tok::Sq(w)) => {
                            self.i += 1;
                            w
                        }
                        _ => return self.err("expected an alias after AS"),
                    })
                } else {
                    None
                };
                cols.push(Column { prop, alias });
                if !self.eat_sym(",") {
                    break;
                }
            }
            Some(cols)
        };
        self.expect_kw("FROM")?;
        let scope = self.source()?;
        let filter = if self.eat_kw("WHERE") {
            Some(self.or(0)?)
        } else {
            None
        };
        let mut order_by = Vec::new();
        loop {
            if self.eat_kw("ORDER") {
                self.expect_kw("BY")?;
                loop {
                    let p = self.prop()?;
                    let asc = if self.eat_kw("DESC") {
                        false
                    } else {
                        self.eat_kw("ASC");
                        true
                    };
                    order_by.push((p, asc));
                    if !self.eat_sym(",") {
                        break;
                    }
                }
            } else if self.is_kw("GROUP") || self.is_kw("RANK") {
                return Err(SqlError::Unsupported(
                    "GROUP BY and RANK BY are not supported".into(),
                ));
            } else {
                break;
            }
        }
        if self.i < self.toks.len() {
            return self.err("unexpected text after the query");
        }
        Ok(Query {
            columns,
            scope,
            filter,
            order_by,
        })
    }

    fn source(&mut self) -> Result<Scope, SqlError> {
        if let Some(Tok::Dq(url)) = self.peek().cloned() {
            self.i += 1;
            return Ok(Scope {
                traversal: Traversal::Shallow,
                url,
            });
        }
        self.expect_kw("SCOPE")?;
        self.expect_sym("(")?;
        let pos = self.pos();
        let scope = match self.peek().cloned() {
            Some(Tok::Sq(inner)) => {
                self.i += 1;
                parse_scope_text(&inner).map_err(|msg| SqlError::Syntax { pos, msg })?
            }
            Some(Tok::Dq(url)) => {
                self.i += 1;
                Scope {
                    traversal: Traversal::Deep,
                    url,
                }
            }
            _ => return self.err("expected a scope"),
        };
        if self.eat_sym(",") {
            return Err(SqlError::Unsupported("more than one scope".into()));
        }
        self.expect_sym(")")?;
        if scope.url.to_ascii_lowercase().starts_with("file:") {
            return Err(SqlError::Unsupported("file:// scopes".into()));
        }
        Ok(scope)
    }

    fn or(&mut self, depth: usize) -> Result<Expr, SqlError> {
        if depth > self.max_depth {
            return Err(SqlError::TooComplex(format!(
                "expression nested deeper than {}",
                self.max_depth
            )));
        }
        let mut terms = vec![self.and(depth + 1)?];
        while self.eat_kw("OR") {
            terms.push(self.and(depth + 1)?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::Or(terms)
        })
    }

    fn and(&mut self, depth: usize) -> Result<Expr, SqlError> {
        let mut terms = vec![self.factor(depth + 1)?];
        while self.eat_kw("AND") {
            terms.push(self.factor(depth + 1)?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::And(terms)
        })
    }

    fn factor(&mut self, depth: usize) -> Result<Expr, SqlError> {
        if depth > self.max_depth {
            return Err(SqlError::TooComplex(format!(
                "expression nested deeper than {}",
                self.max_depth
            )));
        }
        if self.eat_kw("NOT") {
            return Ok(Expr::Not(Box::new(self.factor(depth + 1)?)));
        }
        if self.eat_sym("(") {
            let e = self.or(depth + 1)?;
            self.expect_sym(")")?;
            return Ok(e);
        }
        for ft in ["CONTAINS", "FREETEXT", "FORMSOF"] {
            if self.is_kw(ft) {
                return Err(SqlError::Unsupported(format!("{ft} (full-text search)")));
            }
        }
        let left = self.operand(depth + 1)?;
        if self.eat_kw("IS") {
            let not = self.eat_kw("NOT");
            self.expect_kw("NULL")?;
            return Ok(Expr::IsNull(left, not));
        }
        let not = self.eat_kw("NOT");
        if self.eat_kw("LIKE") {
            return match self.peek().cloned() {
                Some(Tok::Sq(p)) if p.chars().count() > self.max_like_len => {
                    Err(SqlError::TooComplex(format!(
                        "LIKE pattern longer than {} characters",
                        self.max_like_len
                    )))
                }
                Some(Tok::Sq(p)) => {
                    self.i += 1;
                    Ok(Expr::Like(left, p, not))
                }
                _ => self.err("expected a quoted LIKE pattern"),
            };
        }
        if not {
            return self.err("expected LIKE after NOT");
        }
        let op = match self.peek() {
            Some(Tok::Sym("=")) => CmpOp::Eq,
            Some(Tok::Sym("<>")) => CmpOp::Ne,
            Some(Tok::Sym("<")) => CmpOp::Lt,
            Some(Tok::Sym("<=")) => CmpOp::Le,
            Some(Tok::Sym(">")) => CmpOp::Gt,
            Some(Tok::Sym(">=")) => CmpOp::Ge,
            _ => return self.err("expected a comparison"),
        };
        self.i += 1;
        let right = self.operand(depth + 1)?;
        Ok(Expr::Cmp(left, op, right))
    }

    fn operand(&mut self, depth: usize) -> Result<Operand, SqlError> {
        if depth > self.max_depth {
            return Err(SqlError::TooComplex(format!(
                "expression nested deeper than {}",
                self.max_depth
            )));
        }
        let t = self.peek().cloned();
        match t {
            Some(Tok::Dq(p)) => {
                self.i += 1;
                Ok(Operand::Prop(p))
            }
            Some(Tok::Sq(s)) => {
                self.i += 1;
                Ok(Operand::Str(s))
            }
            Some(Tok::Num(n)) => {
                self.i += 1;
                Ok(Operand::Num(n))
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => {
                self.i += 1;
                Ok(Operand::Bool(true))
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => {
                self.i += 1;
                Ok(Operand::Bool(false))
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("cast") => {
                self.i += 1;
                self.expect_sym("(")?;
                let inner = self.operand(depth + 1)?;
                self.expect_kw("AS")?;
                let ty = match self.peek().cloned() {
                    Some(Tok::Dq(t) | Tok::Sq(t) | Tok::Word(t)) => {
                        self.i += 1;
                        t
                    }
                    _ => return self.err("expected a type name"),
                };
                self.expect_sym(")")?;
                Ok(Operand::Cast(Box::new(inner), ty))
            }
            _ => self.err("expected a property, literal or CAST"),
        }
    }
}

/// Parses the inside of `SCOPE('…')`: `[shallow|deep|hierarchical traversal of] "url"`.
fn parse_scope_text(s: &str) -> Result<Scope, String> {
    let t = s.trim();
    let (traversal, rest) = match t.find('"') {
        Some(q) => {
            let head = t[..q]
                .split_whitespace()
                .map(str::to_ascii_lowercase)
                .collect::<Vec<_>>();
            let trav = match head.iter().map(String::as_str).collect::<Vec<_>>()[..] {
                [] => Traversal::Deep,
                ["shallow", "traversal", "of"] => Traversal::Shallow,
                ["deep", "traversal", "of"] => Traversal::Deep,
                ["hierarchical", "traversal", "of"] => Traversal::Hierarchical,
                _ => return Err(format!("unknown traversal {:?}", &t[..q])),
            };
            (trav, &t[q..])
        }
        None => return Err("the scope URL must be in double quotes".into()),
    };
    let inner = rest
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .ok_or("malformed scope URL")?;
    if inner.contains('"') {
        return Err("malformed scope URL".into());
    }
    Ok(Scope {
        traversal,
        url: inner.to_owned(),
    })
}

/// Parses a query.
pub fn parse(text: &str, limits: &SqlLimits) -> Result<Query, SqlError> {
    if text.len() > limits.max_len {
        return Err(SqlError::TooComplex(format!(
            "longer than {} bytes",
            limits.max_len
        )));
    }
    let toks = lex(text)?;
    let mut p = Parser {
        toks,
        i: 0,
        end: text.len(),
        max_depth: limits.max_depth,
        max_like_len: limits.max_like_len,
    };
    p.query()
}

fn dq(out: &mut String, s: &str) {
    out.push('"');
    out.push_str(s);
    out.push('"');
}

fn sq(out: &mut String, s: &str) {
    out.push('\'');
    out.push_str(&s.replace('\'', "''"));
    out.push('\'');
}

fn num(out: &mut String, n: f64) {
    let _ = write!(out, "{n}");
}

fn write_operand(out: &mut String, o: &Operand) {
    match o {
        Operand::Prop(p) => dq(out, p),
        Operand::Str(s) => sq(out, s),
        Operand::Num(n) => num(out, *n),
        Operand::Bool(b) => out.push_str(if *b { "TRUE" } else { "FALSE" }),
        Operand::Cast(inner, ty) => {
            out.push_str("CAST(");
            write_operand(out, inner);
            out.push_str(" AS ");
            dq(out, ty);
            out.push(')');
        }
    }
}

fn write_expr(out: &mut String, e: &Expr) {
    match e {
        Expr::Or(v) | Expr::And(v) => {
            let sep = if matches!(e, Expr::Or(_)) {
                " OR "
            } else {
                " AND "
            };
            out.push('(');
            for (i, x) in v.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                write_expr(out, x);
            }
            out.push(')');
        }
        Expr::Not(x) => {
            out.push_str("NOT ");
            write_expr(out, x);
        }
        Expr::Cmp(a, op, b) => {
            write_operand(out, a);
            out.push(' ');
            out.push_str(op.text());
            out.push(' ');
            write_operand(out, b);
        }
        Expr::IsNull(a, not) => {
            write_operand(out, a);
            out.push_str(if *not { " IS NOT NULL" } else { " IS NULL" });
        }
        Expr::Like(a, p, not) => {
            write_operand(out, a);
            out.push_str(if *not { " NOT LIKE " } else { " LIKE " });
            sq(out, p);
        }
    }
}

impl Query {
    /// Canonical SQL text; [`parse`] reads it back to an equal query.
    pub fn to_sql(&self) -> String {
        let mut out = String::from("SELECT ");
        match &self.columns {
            None => out.push('*'),
            Some(cols) => {
                for (i, c) in cols.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    dq(&mut out, &c.prop);
                    if let Some(a) = &c.alias {
                        out.push_str(" AS ");
                        dq(&mut out, a);
                    }
                }
            }
        }
        out.push_str(" FROM SCOPE('");
        out.push_str(self.scope.traversal.keyword());
        out.push_str(" TRAVERSAL OF \"");
        out.push_str(&self.scope.url.replace('\'', "''"));
        out.push_str("\"')");
        if let Some(f) = &self.filter {
            out.push_str(" WHERE ");
            write_expr(&mut out, f);
        }
        if !self.order_by.is_empty() {
            out.push_str(" ORDER BY ");
            for (i, (p, asc)) in self.order_by.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                dq(&mut out, p);
                out.push_str(if *asc { " ASC" } else { " DESC" });
            }
        }
        out
    }

    /// What a collblob is bound to: traversal, resolved scope and canonical `WHERE` (not the
    /// columns, aliases or `ORDER BY`). `resolved_scope` is the scope after URL resolution.
    pub fn binding(&self, resolved_scope: &str) -> String {
        let mut out = format!("{} {resolved_scope}", self.scope.traversal.keyword());
        if let Some(f) = &self.filter {
            out.push_str(" WHERE ");
            write_expr(&mut out, f);
        }
        out
    }
}

/// A property value as seen by `WHERE`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Text.
    Str(String),
    /// A number.
    Num(f64),
    /// A boolean.
    Bool(bool),
}

impl Value {
    fn as_num(&self) -> Option<f64> {
        match self {
            Self::Num(n) => Some(*n),
            Self::Str(s) => s.trim().parse().ok(),
            Self::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        }
    }

    fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Bool(b) => Some(*b),
            Self::Num(n) => Some(*n != 0.0),
            Self::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
                "1" | "true" => Some(true),
                "0" | "false" => Some(false),
                _ => None,
            },
        }
    }

    fn text(&self) -> String {
        match self {
            Self::Str(s) => s.clone(),
            Self::Num(n) => n.to_string(),
            Self::Bool(b) => (if *b { "1" } else { "0" }).to_owned(),
        }
    }
}

fn operand_value(o: &Operand, lookup: &dyn Fn(&str) -> Option<Value>) -> Option<Value> {
    match o {
        Operand::Prop(p) => lookup(p),
        Operand::Str(s) => Some(Value::Str(s.clone())),
        Operand::Num(n) => Some(Value::Num(*n)),
        Operand::Bool(b) => Some(Value::Bool(*b)),
        Operand::Cast(inner, ty) => {
            let v = operand_value(inner, lookup)?;
            let ty = ty.to_ascii_lowercase();
            Some(
                if ty.contains("int") || ty.contains("float") || ty.contains("number") {
                    Value::Num(v.as_num()?)
                } else if ty.contains("bool") {
                    Value::Bool(v.as_bool()?)
                } else {
                    Value::Str(v.text())
                },
            )
        }
    }
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Bool(_), _) | (_, Value::Bool(_)) => Some(a.as_bool()?.cmp(&b.as_bool()?)),
        (Value::Num(_), _) | (_, Value::Num(_)) => a.as_num()?.partial_cmp(&b.as_num()?),
        _ => Some(a.text().cmp(&b.text())),
    }
}

/// SQL `LIKE` (`%` any run, `_` one character, ASCII case-insensitive), without recursion
/// or exponential backtracking: runs of `%` collapse into one, and the matcher only ever
/// returns to the last `%` seen, one text position further each time. The work is at most
/// (text length + 1) × (pattern length + 1) steps, never more, whatever the pattern.
pub fn like(text: &str, pattern: &str) -> bool {
    like_within(text, pattern, &Budget::unlimited()).unwrap_or(false)
}

/// The work a request may spend evaluating `WHERE` conditions, in matcher steps (one step is
/// one character comparison); shared by every row the request evaluates, so a pathological
/// pattern over long values ends the request with an error instead of occupying a runtime
/// thread. Thread-safe, so one budget can live in a shared plan.
#[derive(Debug)]
pub struct Budget {
    left: std::sync::atomic::AtomicU64,
}

/// A [`Budget`] ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the query needs more work than one request may do; narrow it")]
pub struct BudgetExceeded;

impl Budget {
    /// A budget of `steps`.
    pub fn new(steps: u64) -> Self {
        Self {
            left: std::sync::atomic::AtomicU64::new(steps),
        }
    }

    /// A budget that never runs out.
    pub fn unlimited() -> Self {
        Self::new(u64::MAX)
    }

    /// Takes `steps` from the budget.
    pub fn charge(&self, steps: u64) -> Result<(), BudgetExceeded> {
        use std::sync::atomic::Ordering;
        self.left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
                l.checked_sub(steps)
            })
            .map(|_| ())
            .map_err(|_| BudgetExceeded)
    }
}

/// Steps charged to the budget at a time inside the matcher.
const CHARGE_EVERY: u64 = 4096;

/// [`like`], charging its steps to `budget`.
pub fn like_within(text: &str, pattern: &str, budget: &Budget) -> Result<bool, BudgetExceeded> {
    budget.charge((text.len() + pattern.len()) as u64)?;
    let t: Vec<char> = text.chars().collect();
    let mut p: Vec<char> = Vec::with_capacity(pattern.len());
    for c in pattern.chars() {
        if !(c == '%' && p.last() == Some(&'%')) {
            p.push(c);
        }
    }
    let (mut ti, mut pi) = (0, 0);
    // The last `%` (its index in p) and the text position it currently stands for.
    let mut star: Option<(usize, usize)> = None;
    let mut steps = 0u64;
    while ti < t.len() {
        steps += 1;
        if steps == CHARGE_EVERY {
            budget.charge(steps)?;
            steps = 0;
        }
        match p.get(pi) {
            Some('%') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '_' || c.eq_ignore_ascii_case(&t[ti]) => {
                ti += 1;
                pi += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    // Let the last `%` swallow one more character and retry after it.
                    star = Some((sp, st + 1));
                    pi = sp + 1;
                    ti = st + 1;
                }
                None => return Ok(false),
            },
        }
    }
    Ok(p[pi..].iter().all(|&c| c == '%'))
}

/// A sort key with a total order, for `ORDER BY` over values of mixed kinds: absent values
/// first, then booleans, then numbers (including text that parses as a number, NaN last among
/// them), then other text.
#[derive(Debug, Clone, PartialEq)]
pub enum SortKey {
    /// No value.
    Absent,
    /// A boolean.
    Bool(bool),
    /// A number.
    Num(f64),
    /// Text that is not a number.
    Text(String),
}

impl SortKey {
    /// The key of a (possibly absent) value.
    pub fn of(v: Option<Value>) -> Self {
        match v {
            None => Self::Absent,
            Some(Value::Bool(b)) => Self::Bool(b),
            Some(Value::Num(n)) => Self::Num(n),
            Some(Value::Str(s)) => match s.trim().parse::<f64>() {
                Ok(n) => Self::Num(n),
                Err(_) => Self::Text(s),
            },
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Self::Absent => 0,
            Self::Bool(_) => 1,
            Self::Num(_) => 2,
            Self::Text(_) => 3,
        }
    }
}

impl Eq for SortKey {}

impl PartialOrd for SortKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SortKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match (self, other) {
            (Self::Bool(a), Self::Bool(b)) => a.cmp(b),
            (Self::Num(a), Self::Num(b)) => a.total_cmp(b),
            (Self::Text(a), Self::Text(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

/// Evaluates a `WHERE` condition; `lookup` gives a property's value (`None` = absent). A
/// comparison involving an absent value is false (SQL's unknown).
pub fn eval(e: &Expr, lookup: &dyn Fn(&str) -> Option<Value>) -> bool {
    eval_within(e, lookup, &Budget::unlimited()).unwrap_or(false)
}

/// [`eval`], charging the work to `budget`: each node of the expression costs a step, `LIKE`
/// one per character comparison.
pub fn eval_within(
    e: &Expr,
    lookup: &dyn Fn(&str) -> Option<Value>,
    budget: &Budget,
) -> Result<bool, BudgetExceeded> {
    budget.charge(1)?;
    Ok(match e {
        Expr::Or(v) => {
            for x in v {
                if eval_within(x, lookup, budget)? {
                    return Ok(true);
                }
            }
            false
        }
        Expr::And(v) => {
            for x in v {
                if !eval_within(x, lookup, budget)? {
                    return Ok(false);
                }
            }
            true
        }
        Expr::Not(x) => !eval_within(x, lookup, budget)?,
        Expr::Cmp(a, op, b) => {
            let (Some(a), Some(b)) = (operand_value(a, lookup), operand_value(b, lookup)) else {
                return Ok(false);
            };
            let Some(ord) = compare(&a, &b) else {
                return Ok(false);
            };
            match op {
                CmpOp::Eq => ord.is_eq(),
                CmpOp::Ne => ord.is_ne(),
                CmpOp::Lt => ord.is_lt(),
                CmpOp::Le => ord.is_le(),
                CmpOp::Gt => ord.is_gt(),
                CmpOp::Ge => ord.is_ge(),
            }
        }
        Expr::IsNull(a, not) => operand_value(a, lookup).is_none() != *not,
        Expr::Like(a, p, not) => {
            let matched = match operand_value(a, lookup) {
                Some(v) => like_within(&v.text(), p, budget)?,
                None => false,
            };
            matched != *not
        }
    })
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
