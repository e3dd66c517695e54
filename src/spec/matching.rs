//! Rule matching: compiled conditions, evaluated against a record's fields, and the
//! resolution of competing claims on one record.
//!
//! Precedence: an explicit id beats any rule; between claims of the same kind a higher
//! `priority` wins; two claims of the same kind and priority from different territories
//! are ambiguous, and ambiguity is an error, never a coin toss.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::types::{Condition, Scalar};

/// A compiled condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    All(Vec<Expr>),
    Any(Vec<Expr>),
    Not(Box<Expr>),
    Field { field: String, op: Op },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Equals(Scalar),
    In(Vec<Scalar>),
    NotIn(Vec<Scalar>),
    StartsWith(String),
    Contains(String),
    Gt(Scalar),
    Gte(Scalar),
    Lt(Scalar),
    Lte(Scalar),
    Exists(bool),
}

impl Expr {
    /// Checks a written condition into an expression; the error says what is wrong.
    pub fn compile(c: &Condition) -> Result<Expr, String> {
        let combinators = [c.all.is_some(), c.any.is_some(), c.not.is_some()]
            .iter()
            .filter(|x| **x)
            .count();
        let mut ops: Vec<(&str, Op)> = Vec::new();
        if let Some(v) = &c.equals {
            ops.push(("equals", Op::Equals(v.clone())));
        }
        if let Some(v) = &c.in_ {
            ops.push(("in", Op::In(v.clone())));
        }
        if let Some(v) = &c.not_in {
            ops.push(("not_in", Op::NotIn(v.clone())));
        }
        if let Some(v) = &c.starts_with {
            ops.push(("starts_with", Op::StartsWith(v.clone())));
        }
        if let Some(v) = &c.contains {
            ops.push(("contains", Op::Contains(v.clone())));
        }
        if let Some(v) = &c.gt {
            ops.push(("gt", Op::Gt(v.clone())));
        }
        if let Some(v) = &c.gte {
            ops.push(("gte", Op::Gte(v.clone())));
        }
        if let Some(v) = &c.lt {
            ops.push(("lt", Op::Lt(v.clone())));
        }
        if let Some(v) = &c.lte {
            ops.push(("lte", Op::Lte(v.clone())));
        }
        if let Some(v) = c.exists {
            ops.push(("exists", Op::Exists(v)));
        }

        if combinators > 1 || (combinators == 1 && (c.field.is_some() || !ops.is_empty())) {
            return Err(
                "a condition takes exactly one of `all`, `any`, `not` or `field`: split it into separate conditions"
                    .into(),
            );
        }
        if let Some(list) = &c.all {
            return Ok(Expr::All(compile_list("all", list)?));
        }
        if let Some(list) = &c.any {
            return Ok(Expr::Any(compile_list("any", list)?));
        }
        if let Some(inner) = &c.not {
            return Ok(Expr::Not(Box::new(Expr::compile(inner)?)));
        }
        let Some(field) = c.field.as_ref().map(|f| f.trim().to_string()) else {
            return Err(if ops.is_empty() {
                "empty condition: give `field` with an operator (equals, in, not_in, starts_with, contains, gt, gte, lt, lte, exists), or `all`, `any` or `not`".into()
            } else {
                format!("`{}` needs a `field` to test", ops[0].0)
            });
        };
        if field.is_empty() {
            return Err("`field` is empty: give the API name of a record field".into());
        }
        match ops.len() {
            0 => Err(format!(
                "field `{field}` has no operator: add one of equals, in, not_in, starts_with, contains, gt, gte, lt, lte, exists"
            )),
            1 => {
                let (_, op) = ops.pop().expect("one operator");
                if let Op::In(l) | Op::NotIn(l) = &op {
                    if l.is_empty() {
                        return Err(format!("the list for field `{field}` is empty"));
                    }
                }
                Ok(Expr::Field { field, op })
            }
            _ => Err(format!(
                "field `{field}` has {} operators ({}): use one, or combine conditions with `all`",
                ops.len(),
                ops.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            )),
        }
    }

    pub fn matches(&self, record: &Map<String, Value>) -> bool {
        match self {
            Expr::All(list) => list.iter().all(|e| e.matches(record)),
            Expr::Any(list) => list.iter().any(|e| e.matches(record)),
            Expr::Not(inner) => !inner.matches(record),
            Expr::Field { field, op } => eval(op, &texts(record.get(field))),
        }
    }

    /// Field names the expression reads, for fetching only what the rules need.
    pub fn fields(&self, out: &mut Vec<String>) {
        match self {
            Expr::All(list) | Expr::Any(list) => list.iter().for_each(|e| e.fields(out)),
            Expr::Not(inner) => inner.fields(out),
            Expr::Field { field, .. } => {
                if !out.contains(field) {
                    out.push(field.clone());
                }
            }
        }
    }
}

fn compile_list(kind: &str, list: &[Condition]) -> Result<Vec<Expr>, String> {
    if list.is_empty() {
        return Err(format!("`{kind}` has no conditions"));
    }
    list.iter().map(Expr::compile).collect()
}

/// The comparable texts of a field value: strings as they are, numbers and booleans
/// printed, lookups by their name, lists element by element.
fn texts(v: Option<&Value>) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Null => {}
            Value::String(s) => out.push(s.clone()),
            Value::Number(n) => out.push(n.to_string()),
            Value::Bool(b) => out.push(b.to_string()),
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            Value::Object(m) => {
                if let Some(n) = m.get("name").or_else(|| m.get("Name")) {
                    walk(n, out);
                } else if let Some(id) = m.get("id") {
                    walk(id, out);
                }
            }
        }
    }
    if let Some(v) = v {
        walk(v, &mut out);
    }
    out.retain(|s| !s.trim().is_empty());
    out
}

fn norm(s: &str) -> String {
    s.trim().to_lowercase()
}

fn number(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|x| x.is_finite())
}

fn scalar_number(s: &Scalar) -> Option<f64> {
    match s {
        Scalar::Int(i) => Some(*i as f64),
        Scalar::Float(x) => Some(*x),
        Scalar::Text(t) => number(t),
        Scalar::Bool(_) => None,
    }
}

fn compare(value: &str, want: &Scalar) -> Ordering {
    match (number(value), scalar_number(want)) {
        (Some(a), Some(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
        _ => norm(value).cmp(&norm(&want.to_string())),
    }
}

fn equals(value: &str, want: &Scalar) -> bool {
    match want {
        Scalar::Int(_) | Scalar::Float(_) => compare(value, want) == Ordering::Equal,
        _ => norm(value) == norm(&want.to_string()),
    }
}

fn eval(op: &Op, values: &[String]) -> bool {
    let any = |f: &dyn Fn(&str) -> bool| values.iter().any(|v| f(v));
    match op {
        Op::Equals(w) => any(&|v| equals(v, w)),
        Op::In(list) => any(&|v| list.iter().any(|w| equals(v, w))),
        Op::NotIn(list) => !any(&|v| list.iter().any(|w| equals(v, w))),
        Op::StartsWith(p) => any(&|v| norm(v).starts_with(&norm(p))),
        Op::Contains(p) => any(&|v| norm(v).contains(&norm(p))),
        Op::Gt(w) => any(&|v| compare(v, w) == Ordering::Greater),
        Op::Gte(w) => any(&|v| compare(v, w) != Ordering::Less),
        Op::Lt(w) => any(&|v| compare(v, w) == Ordering::Less),
        Op::Lte(w) => any(&|v| compare(v, w) != Ordering::Greater),
        Op::Exists(want) => values.is_empty() != *want,
    }
}

/// How a territory claims a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimSource {
    ExplicitId,
    /// Index into the territory's rules.
    Rule(usize),
}

/// One territory's claim on one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Index into [`Spec::territories`](super::Spec::territories).
    pub territory: usize,
    pub source: ClaimSource,
    pub priority: i32,
}

impl Claim {
    /// The rank that decides between claims: explicit ids first, then priority.
    pub fn rank(&self) -> (bool, i32) {
        (self.source == ClaimSource::ExplicitId, self.priority)
    }
}

/// What the spec says about one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// `winner` holds the record; `losers` also claimed it and lost on rank.
    Claimed { winner: Claim, losers: Vec<Claim> },
    /// No territory claims the record; `excluded_by` lists territories whose rules
    /// matched but whose `exclude` took the record out.
    Unclaimed { excluded_by: Vec<usize> },
    /// Two territories claim the record with equal rank.
    Ambiguous { first: Claim, second: Claim },
}

/// Picks the winner among claims (already collected in territory order).
pub fn resolve(mut claims: Vec<Claim>, excluded_by: Vec<usize>) -> Resolution {
    if claims.is_empty() {
        return Resolution::Unclaimed { excluded_by };
    }
    // Stable: equal ranks keep territory order, so the error names files in order.
    claims.sort_by_key(|c| std::cmp::Reverse(c.rank()));
    if claims.len() > 1 && claims[0].rank() == claims[1].rank() {
        return Resolution::Ambiguous {
            first: claims[0].clone(),
            second: claims[1].clone(),
        };
    }
    let winner = claims.remove(0);
    Resolution::Claimed {
        winner,
        losers: claims,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cond(yaml: &str) -> Result<Expr, String> {
        let c: Condition = serde_yaml::from_str(yaml).unwrap();
        Expr::compile(&c)
    }

    fn rec(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn string_comparisons_ignore_case_and_surrounding_space() {
        let e = cond("{field: Billing_Country, in: [United States, USA]}").unwrap();
        assert!(e.matches(&rec(json!({"Billing_Country": "  usa "}))));
        assert!(e.matches(&rec(json!({"Billing_Country": "UNITED STATES"}))));
        assert!(!e.matches(&rec(json!({"Billing_Country": "Canada"}))));
        assert!(!e.matches(&rec(json!({"Billing_Country": null}))));
    }

    #[test]
    fn every_operator_evaluates() {
        let r = rec(
            json!({"Name": "Acme Corp", "Revenue": 1500000, "Emp": "40", "Lookup": {"name": "West", "id": "1"}}),
        );
        let yes = [
            "{field: Name, equals: ' acme corp'}",
            "{field: Name, starts_with: ACME}",
            "{field: Name, contains: 'me c'}",
            "{field: Revenue, gt: 1000000}",
            "{field: Revenue, gte: 1500000}",
            "{field: Emp, lt: 100}",
            "{field: Emp, lte: 40}",
            "{field: Name, exists: true}",
            "{field: Missing, exists: false}",
            "{field: Name, not_in: [Globex]}",
            "{field: Lookup, equals: west}",
            "{field: Revenue, equals: 1500000.0}",
            "{not: {field: Name, equals: Globex}}",
            "{all: [{field: Name, exists: true}, {any: [{field: Emp, gt: 100}, {field: Emp, lt: 50}]}]}",
        ];
        for y in yes {
            assert!(cond(y).unwrap().matches(&r), "{y} should match");
        }
        let no = [
            "{field: Revenue, lt: 10}",
            "{field: Emp, gt: 40}",
            "{field: Missing, exists: true}",
            "{field: Name, in: [Globex, Initech]}",
            "{any: [{field: Name, equals: x}, {field: Name, equals: y}]}",
        ];
        for n in no {
            assert!(!cond(n).unwrap().matches(&r), "{n} should not match");
        }
    }

    #[test]
    fn malformed_conditions_say_what_is_wrong() {
        assert!(cond("{field: A}").unwrap_err().contains("no operator"));
        assert!(cond("{equals: x}").unwrap_err().contains("needs a `field`"));
        assert!(cond("{field: A, equals: x, in: [y]}")
            .unwrap_err()
            .contains("2 operators"));
        assert!(cond("{all: [], any: []}")
            .unwrap_err()
            .contains("exactly one"));
        assert!(cond("{all: []}").unwrap_err().contains("no conditions"));
        assert!(cond("{field: A, in: []}").unwrap_err().contains("empty"));
        assert!(cond("{}").unwrap_err().contains("empty condition"));
    }

    fn claim(territory: usize, explicit: bool, priority: i32) -> Claim {
        Claim {
            territory,
            source: if explicit {
                ClaimSource::ExplicitId
            } else {
                ClaimSource::Rule(0)
            },
            priority,
        }
    }

    #[test]
    fn explicit_ids_beat_rules_and_priority_beats_order() {
        let r = resolve(vec![claim(0, false, 100), claim(1, true, 0)], vec![]);
        assert!(matches!(r, Resolution::Claimed { ref winner, .. } if winner.territory == 1));
        let r = resolve(vec![claim(0, false, 0), claim(1, false, 10)], vec![]);
        assert!(
            matches!(r, Resolution::Claimed { ref winner, ref losers } if winner.territory == 1 && losers.len() == 1)
        );
    }

    #[test]
    fn equal_claims_are_ambiguous() {
        let r = resolve(
            vec![claim(0, false, 5), claim(2, false, 5), claim(3, false, 1)],
            vec![],
        );
        assert_eq!(
            r,
            Resolution::Ambiguous {
                first: claim(0, false, 5),
                second: claim(2, false, 5)
            }
        );
    }
}
