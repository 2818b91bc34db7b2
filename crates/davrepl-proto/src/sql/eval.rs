//! Evaluating `WHERE`: values, a linear `LIKE`, a work budget and a total sort order.

use super::{CmpOp, Expr, Operand};

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
