//! Rendering a query as canonical text.

use std::fmt::Write as _;

use super::{Expr, Operand, Query};

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
    /// Canonical SQL text; [`parse`](super::parse) reads it back to an equal query.
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
