//! Reading a query: a lexer with byte positions, and a recursive-descent parser bounded in
//! depth and size.

use super::{CmpOp, Column, Expr, Operand, Query, Scope, SqlError, SqlLimits, Traversal};

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
