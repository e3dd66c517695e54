//! The COQL subset the sandbox understands: parsing `select ... from ... where ...`
//! queries and evaluating their conditions against records.
//!
//! Supported: a column list (with `as` aliases and one-hop lookups such as `Owner.name`),
//! one module, a required WHERE clause with `=`, `!=`, `<>`, `<`, `>`, `<=`, `>=`,
//! `[not] like`, `is [not] null`, `[not] in (...)` and `between`, combined with `and` /
//! `or` and parentheses, `order by` several columns, and `limit N`, `limit OFFSET, N` or
//! `limit N offset M`. Following the COQL docs, a chain of more than two conditions must
//! be parenthesised pairwise (`((A and B) or C)`).

use serde_json::{json, Map, Value};

/// Rows one query may return, and the deepest row reachable with OFFSET.
pub const MAX_LIMIT: usize = 2000;
pub const MAX_REACH: usize = 100_000;
pub const DEFAULT_LIMIT: usize = 200;
pub const MAX_IN_VALUES: usize = 100;
/// Conditions one WHERE clause may hold (COQL limitations page).
pub const MAX_CRITERIA: usize = 25;

/// A parse or validation failure, already in Zoho's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct CoqlError {
    pub code: &'static str,
    pub message: String,
    pub details: Map<String, Value>,
}

impl CoqlError {
    fn new(code: &'static str, message: impl Into<String>, details: Value) -> CoqlError {
        let Value::Object(details) = details else {
            unreachable!("details are objects")
        };
        CoqlError {
            code,
            message: message.into(),
            details,
        }
    }

    fn syntax(near: &str, column: usize) -> CoqlError {
        CoqlError::new(
            "SYNTAX_ERROR",
            "error occured while parsing the query",
            json!({"line": 1, "column": column, "near": near}),
        )
    }

    pub fn invalid_column(column: &str) -> CoqlError {
        CoqlError::new(
            "INVALID_QUERY",
            "column given seems to be invalid",
            json!({"column_name": column}),
        )
    }

    pub fn invalid_value(column: &str) -> CoqlError {
        CoqlError::new(
            "INVALID_QUERY",
            "value given seems to be invalid for the column",
            json!({"column_name": column}),
        )
    }

    pub fn territory_in_where(column: &str) -> CoqlError {
        CoqlError::new(
            "INVALID_QUERY",
            "Territory fields only supported in the SELECT clause",
            json!({"column_name": column, "clause": "where"}),
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// The field, or `Field.sub` for a lookup hop.
    pub path: String,
    pub alias: Option<String>,
}

impl Column {
    pub fn field(&self) -> &str {
        self.path.split('.').next().unwrap_or(&self.path)
    }

    pub fn key(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.path)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Num(String),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    Compare(String, Op, Literal),
    Like(String, String, bool),
    IsNull(String, bool),
    In(String, Vec<Literal>, bool),
    Between(String, Literal, Literal),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
}

impl Cond {
    /// Every column the condition reads.
    pub fn columns(&self) -> Vec<&str> {
        match self {
            Cond::Compare(c, ..)
            | Cond::Like(c, ..)
            | Cond::IsNull(c, _)
            | Cond::In(c, ..)
            | Cond::Between(c, ..) => vec![c.as_str()],
            Cond::And(a, b) | Cond::Or(a, b) => {
                let mut v = a.columns();
                v.extend(b.columns());
                v
            }
        }
    }

    pub fn count(&self) -> usize {
        match self {
            Cond::And(a, b) | Cond::Or(a, b) => a.count() + b.count(),
            _ => 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub columns: Vec<Column>,
    pub module: String,
    pub filter: Cond,
    pub order: Vec<(String, bool)>,
    pub offset: usize,
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(String),
    Sym(&'static str),
}

fn tokenize(src: &str) -> Result<Vec<(Tok, usize)>, CoqlError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '\'' || c == '"' {
            let quote = c;
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(CoqlError::syntax(
                            &chars[start..].iter().collect::<String>(),
                            start + 1,
                        ))
                    }
                    Some('\\') if chars.get(i + 1).is_some() => {
                        s.push(chars[i + 1]);
                        i += 2;
                    }
                    Some(&q) if q == quote && chars.get(i + 1) == Some(&quote) => {
                        s.push(quote);
                        i += 2;
                    }
                    Some(&q) if q == quote => {
                        i += 1;
                        break;
                    }
                    Some(&other) => {
                        s.push(other);
                        i += 1;
                    }
                }
            }
            out.push((Tok::Str(s), start));
            continue;
        }
        if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            out.push((Tok::Num(chars[start..i].iter().collect()), start));
            continue;
        }
        if c.is_alphabetic() || c == '_' || c == '$' || c == '`' {
            if c == '`' {
                i += 1;
                while i < chars.len() && chars[i] != '`' {
                    i += 1;
                }
                let word: String = chars[start + 1..i.min(chars.len())].iter().collect();
                i += 1;
                out.push((Tok::Word(word), start));
                continue;
            }
            while i < chars.len()
                && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '$' | '.'))
            {
                i += 1;
            }
            out.push((Tok::Word(chars[start..i].iter().collect()), start));
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let sym = match two.as_str() {
            "!=" => Some("!="),
            "<>" => Some("<>"),
            "<=" => Some("<="),
            ">=" => Some(">="),
            _ => None,
        };
        if let Some(sym) = sym {
            out.push((Tok::Sym(sym), start));
            i += 2;
            continue;
        }
        let sym = match c {
            '=' => "=",
            '<' => "<",
            '>' => ">",
            '(' => "(",
            ')' => ")",
            ',' => ",",
            '*' => "*",
            _ => return Err(CoqlError::syntax(&c.to_string(), start + 1)),
        };
        out.push((Tok::Sym(sym), start));
        i += 1;
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }

    fn error_here(&self) -> CoqlError {
        match self.toks.get(self.pos) {
            Some((tok, at)) => {
                let near = match tok {
                    Tok::Word(w) | Tok::Num(w) => w.clone(),
                    Tok::Str(s) => format!("'{s}'"),
                    Tok::Sym(s) => s.to_string(),
                };
                CoqlError::syntax(&near, at + 1)
            }
            None => CoqlError::syntax("", self.end + 1),
        }
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), CoqlError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.error_here())
        }
    }

    fn eat_sym(&mut self, sym: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Sym(s)) if *s == sym) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, sym: &str) -> Result<(), CoqlError> {
        if self.eat_sym(sym) {
            Ok(())
        } else {
            Err(self.error_here())
        }
    }

    fn ident(&mut self) -> Result<String, CoqlError> {
        match self.peek() {
            Some(Tok::Word(w)) if !is_reserved(w) => {
                let w = w.clone();
                self.pos += 1;
                Ok(w)
            }
            _ => Err(self.error_here()),
        }
    }

    fn number(&mut self) -> Result<usize, CoqlError> {
        match self.peek() {
            Some(Tok::Num(n)) => {
                let n = n.clone();
                self.pos += 1;
                n.parse().map_err(|_| {
                    CoqlError::new(
                        "INVALID_QUERY",
                        "limit given seems to be invalid",
                        json!({"limit": n}),
                    )
                })
            }
            Some(Tok::Word(w)) => Err(CoqlError::new(
                "INVALID_QUERY",
                "limit given seems to be invalid",
                json!({"limit": w}),
            )),
            _ => Err(self.error_here()),
        }
    }

    fn literal(&mut self) -> Result<Literal, CoqlError> {
        let lit = match self.peek() {
            Some(Tok::Str(s)) => Literal::Str(s.clone()),
            Some(Tok::Num(n)) => Literal::Num(n.clone()),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => Literal::Bool(true),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => Literal::Bool(false),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("null") => Literal::Null,
            _ => return Err(self.error_here()),
        };
        self.pos += 1;
        Ok(lit)
    }

    /// `expr := primary [(and|or) primary]`, where a chain needs parentheses.
    fn expr(&mut self) -> Result<Cond, CoqlError> {
        let left = self.primary()?;
        let and = self.is_kw("and");
        if !and && !self.is_kw("or") {
            return Ok(left);
        }
        self.pos += 1;
        let right = self.primary()?;
        if self.is_kw("and") || self.is_kw("or") {
            return Err(self.error_here());
        }
        Ok(if and {
            Cond::And(Box::new(left), Box::new(right))
        } else {
            Cond::Or(Box::new(left), Box::new(right))
        })
    }

    fn primary(&mut self) -> Result<Cond, CoqlError> {
        if self.eat_sym("(") {
            let inner = self.expr()?;
            self.expect_sym(")")?;
            return Ok(inner);
        }
        let column = self.ident()?;
        if self.eat_kw("is") {
            let negated = self.eat_kw("not");
            self.expect_kw("null")?;
            return Ok(Cond::IsNull(column, negated));
        }
        let negated = self.eat_kw("not");
        if self.eat_kw("like") {
            return match self.literal()? {
                Literal::Str(p) => Ok(Cond::Like(column, p, negated)),
                _ => Err(CoqlError::invalid_value(&column)),
            };
        }
        if self.eat_kw("in") {
            self.expect_sym("(")?;
            let mut values = vec![self.literal()?];
            while self.eat_sym(",") {
                values.push(self.literal()?);
            }
            self.expect_sym(")")?;
            if values.len() > MAX_IN_VALUES {
                return Err(CoqlError::new(
                    "LIMIT_EXCEEDED",
                    "too many values given for the in operator",
                    json!({"operator": "in", "limit": MAX_IN_VALUES}),
                ));
            }
            return Ok(Cond::In(column, values, negated));
        }
        if negated {
            return Err(self.error_here());
        }
        if self.eat_kw("between") {
            let low = self.literal()?;
            self.expect_kw("and")?;
            let high = self.literal()?;
            return Ok(Cond::Between(column, low, high));
        }
        let op = match self.peek() {
            Some(Tok::Sym("=")) => Op::Eq,
            Some(Tok::Sym("!=")) | Some(Tok::Sym("<>")) => Op::Ne,
            Some(Tok::Sym("<")) => Op::Lt,
            Some(Tok::Sym(">")) => Op::Gt,
            Some(Tok::Sym("<=")) => Op::Le,
            Some(Tok::Sym(">=")) => Op::Ge,
            _ => return Err(self.error_here()),
        };
        self.pos += 1;
        let value = self.literal()?;
        Ok(Cond::Compare(column, op, value))
    }
}

fn is_reserved(word: &str) -> bool {
    [
        "select", "from", "where", "and", "or", "not", "in", "is", "null", "like", "order", "by",
        "limit", "offset", "asc", "desc", "between", "as", "group",
    ]
    .iter()
    .any(|k| k.eq_ignore_ascii_case(word))
}

/// Parses one COQL SELECT statement.
pub fn parse(src: &str) -> Result<Query, CoqlError> {
    let toks = tokenize(src)?;
    let mut p = Parser {
        toks,
        pos: 0,
        end: src.chars().count(),
    };
    p.expect_kw("select")?;
    let mut columns = Vec::new();
    loop {
        if matches!(p.peek(), Some(Tok::Sym("*"))) {
            return Err(p.error_here());
        }
        let path = p.ident()?;
        if p.eat_sym("(") {
            return Err(CoqlError::new(
                "INVALID_QUERY",
                "aggregate functions are not supported by the sandbox",
                json!({"column_name": path}),
            ));
        }
        let alias = if p.eat_kw("as") {
            Some(p.ident()?)
        } else {
            None
        };
        columns.push(Column { path, alias });
        if !p.eat_sym(",") {
            break;
        }
    }
    p.expect_kw("from")?;
    let module = p.ident()?;
    if !p.eat_kw("where") {
        if p.peek().is_none() || p.is_kw("order") || p.is_kw("limit") {
            return Err(CoqlError::new(
                "SYNTAX_ERROR",
                "where clause is missing in the query",
                json!({"clause": "where"}),
            ));
        }
        return Err(p.error_here());
    }
    let filter = p.expr()?;
    let mut order = Vec::new();
    if p.eat_kw("order") {
        p.expect_kw("by")?;
        loop {
            let column = p.ident()?;
            let asc = if p.eat_kw("desc") {
                false
            } else {
                p.eat_kw("asc");
                true
            };
            order.push((column, asc));
            if !p.eat_sym(",") {
                break;
            }
        }
    }
    let (mut offset, mut limit) = (0, DEFAULT_LIMIT);
    if p.eat_kw("limit") {
        let first = p.number()?;
        if p.eat_sym(",") {
            offset = first;
            limit = p.number()?;
        } else {
            limit = first;
            if p.eat_kw("offset") {
                offset = p.number()?;
            }
        }
    } else if p.eat_kw("offset") {
        offset = p.number()?;
    }
    if p.peek().is_some() {
        return Err(p.error_here());
    }
    if filter.count() > MAX_CRITERIA {
        return Err(CoqlError::new(
            "LIMIT_EXCEEDED",
            "too many criteria in the where clause",
            json!({"clause": "where", "limit": MAX_CRITERIA}),
        ));
    }
    if limit == 0 || limit > MAX_LIMIT {
        return Err(CoqlError::new(
            "INVALID_QUERY",
            "limit given seems to be invalid",
            json!({"limit": limit, "reason": format!("the limit must be between 1 and {MAX_LIMIT}")}),
        ));
    }
    if offset + limit > MAX_REACH {
        return Err(CoqlError::new(
            "LIMIT_EXCEEDED",
            "offset and limit together exceed the reachable records",
            json!({"offset": offset, "limit": MAX_REACH}),
        ));
    }
    Ok(Query {
        columns,
        module,
        filter,
        order,
        offset,
        limit,
    })
}

/// How the sandbox compares a field's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// 19-digit ids: compared as integers, given quoted or bare.
    Id,
    /// Text and picklists: case-insensitive.
    Text,
    Number,
    /// ISO 8601 date-times.
    Time,
    Bool,
    /// A lookup `{id, ...}`: compared by its id.
    Lookup,
}

/// A literal as the field's type sees it, or `None` if it can't be one.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum Scalar {
    Int(u64),
    Text(String),
    Num(f64),
    Time(i64),
    Bool(bool),
}

fn from_literal(kind: Compare, lit: &Literal) -> Option<Scalar> {
    let raw = match lit {
        Literal::Str(s) | Literal::Num(s) => s.as_str(),
        Literal::Bool(b) => return (kind == Compare::Bool).then_some(Scalar::Bool(*b)),
        Literal::Null => return None,
    };
    match kind {
        Compare::Id | Compare::Lookup => raw.trim().parse().ok().map(Scalar::Int),
        Compare::Text => Some(Scalar::Text(raw.to_lowercase())),
        Compare::Number => raw.trim().parse().ok().map(Scalar::Num),
        Compare::Time => parse_time(raw).map(Scalar::Time),
        Compare::Bool => match raw {
            "true" => Some(Scalar::Bool(true)),
            "false" => Some(Scalar::Bool(false)),
            _ => None,
        },
    }
}

pub fn parse_time(raw: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(raw.trim())
        .ok()
        .map(|t| t.timestamp())
}

fn from_value(kind: Compare, v: &Value) -> Option<Scalar> {
    match (kind, v) {
        (_, Value::Null) => None,
        (Compare::Lookup, Value::Object(o)) => {
            o.get("id").and_then(|id| from_value(Compare::Id, id))
        }
        (Compare::Id | Compare::Lookup, Value::String(s)) => s.parse().ok().map(Scalar::Int),
        (Compare::Id | Compare::Lookup, Value::Number(n)) => n.as_u64().map(Scalar::Int),
        (Compare::Text, Value::String(s)) => Some(Scalar::Text(s.to_lowercase())),
        (Compare::Text, other) => Some(Scalar::Text(other.to_string().to_lowercase())),
        (Compare::Number, Value::Number(n)) => n.as_f64().map(Scalar::Num),
        (Compare::Time, Value::String(s)) => parse_time(s).map(Scalar::Time),
        (Compare::Bool, Value::Bool(b)) => Some(Scalar::Bool(*b)),
        _ => None,
    }
}

fn like(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('%', rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
            Some(('_', rest)) => !t.is_empty() && go(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    go(&p, &t)
}

/// Checks every literal against its column's type before any record is read.
pub fn check_types(cond: &Cond, kind_of: &dyn Fn(&str) -> Compare) -> Result<(), CoqlError> {
    let check = |column: &str, lit: &Literal| match lit {
        Literal::Null => Ok(()),
        lit if from_literal(kind_of(column), lit).is_some() => Ok(()),
        _ => Err(CoqlError::invalid_value(column)),
    };
    match cond {
        Cond::Compare(c, _, lit) => check(c, lit),
        Cond::In(c, lits, _) => lits.iter().try_for_each(|l| check(c, l)),
        Cond::Between(c, a, b) => check(c, a).and_then(|_| check(c, b)),
        Cond::Like(..) | Cond::IsNull(..) => Ok(()),
        Cond::And(a, b) | Cond::Or(a, b) => {
            check_types(a, kind_of)?;
            check_types(b, kind_of)
        }
    }
}

/// Whether `record` satisfies `cond`; comparisons with a missing value are false.
pub fn matches(
    cond: &Cond,
    record: &Map<String, Value>,
    kind_of: &dyn Fn(&str) -> Compare,
) -> bool {
    let value = |column: &str| -> Value { lookup(record, column) };
    match cond {
        Cond::And(a, b) => matches(a, record, kind_of) && matches(b, record, kind_of),
        Cond::Or(a, b) => matches(a, record, kind_of) || matches(b, record, kind_of),
        Cond::IsNull(c, negated) => {
            let v = value(c);
            let null = v.is_null() || v.as_array().is_some_and(Vec::is_empty);
            null != *negated
        }
        Cond::Like(c, pattern, negated) => match value(c) {
            Value::Null => false,
            Value::String(s) => like(pattern, &s) != *negated,
            other => like(pattern, &other.to_string()) != *negated,
        },
        Cond::Compare(c, op, lit) => {
            let kind = kind_of(c);
            let (Some(have), Some(want)) = (from_value(kind, &value(c)), from_literal(kind, lit))
            else {
                return false;
            };
            match op {
                Op::Eq => have == want,
                Op::Ne => have != want,
                Op::Lt => have < want,
                Op::Gt => have > want,
                Op::Le => have <= want,
                Op::Ge => have >= want,
            }
        }
        Cond::In(c, lits, negated) => {
            let kind = kind_of(c);
            let Some(have) = from_value(kind, &value(c)) else {
                return false;
            };
            let found = lits
                .iter()
                .any(|l| from_literal(kind, l).as_ref() == Some(&have));
            found != *negated
        }
        Cond::Between(c, low, high) => {
            let kind = kind_of(c);
            match (
                from_value(kind, &value(c)),
                from_literal(kind, low),
                from_literal(kind, high),
            ) {
                (Some(v), Some(lo), Some(hi)) => lo <= v && v <= hi,
                _ => false,
            }
        }
    }
}

/// A column's value in a record, following one lookup hop (`Owner.name`).
pub fn lookup(record: &Map<String, Value>, path: &str) -> Value {
    let mut parts = path.splitn(2, '.');
    let head = parts.next().unwrap_or(path);
    let value = record.get(head).cloned().unwrap_or(Value::Null);
    match parts.next() {
        None => value,
        Some(sub) => value.get(sub).cloned().unwrap_or(Value::Null),
    }
}

/// Orders two records by the query's ORDER BY, with missing values first.
pub fn order(
    a: &Map<String, Value>,
    b: &Map<String, Value>,
    keys: &[(String, bool)],
    kind_of: &dyn Fn(&str) -> Compare,
) -> std::cmp::Ordering {
    for (column, asc) in keys {
        let kind = kind_of(column);
        let x = from_value(kind, &lookup(a, column));
        let y = from_value(kind, &lookup(b, column));
        let o = x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal);
        let o = if *asc { o } else { o.reverse() };
        if o != std::cmp::Ordering::Equal {
            return o;
        }
    }
    std::cmp::Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(c: &str) -> Compare {
        match c {
            "id" => Compare::Id,
            "Employees" => Compare::Number,
            "Modified_Time" => Compare::Time,
            "Owner" => Compare::Lookup,
            _ => Compare::Text,
        }
    }

    #[test]
    fn parses_the_clients_queries() {
        let q = parse("select id, Account_Name, Territory, Billing_Country, Billing_State, Modified_Time from Accounts where id is not null order by id asc limit 2000").unwrap();
        assert_eq!(q.columns.len(), 6);
        assert_eq!(q.module, "Accounts");
        assert_eq!(q.filter, Cond::IsNull("id".into(), true));
        assert_eq!(q.order, vec![("id".into(), true)]);
        assert_eq!((q.offset, q.limit), (0, 2000));
        let q = parse(
            "select id from Accounts where id > '5725767000000400001' order by id asc limit 2000",
        )
        .unwrap();
        assert_eq!(
            q.filter,
            Cond::Compare(
                "id".into(),
                Op::Gt,
                Literal::Str("5725767000000400001".into())
            )
        );
        assert_eq!(
            parse("SELECT id FROM Accounts WHERE id > 5 LIMIT 10, 20")
                .unwrap()
                .offset,
            10
        );
        let q = parse("select id from Accounts where id > 5 limit 20 offset 40").unwrap();
        assert_eq!((q.offset, q.limit), (40, 20));
    }

    #[test]
    fn refuses_what_zoho_refuses() {
        assert_eq!(
            parse("select id from Accounts").unwrap_err().code,
            "SYNTAX_ERROR"
        );
        assert_eq!(
            parse("select id from Accounts limit 5")
                .unwrap_err()
                .details["clause"],
            "where"
        );
        let e = parse("select id from Accounts where id is not null limit 2001").unwrap_err();
        assert_eq!(
            (e.code, e.details["limit"].clone()),
            ("INVALID_QUERY", json!(2001))
        );
        let e =
            parse("select id from Accounts where id is not null limit 99000, 2000").unwrap_err();
        assert_eq!(e.code, "LIMIT_EXCEEDED");
        let e = parse("select id from Accounts where a = 1 and b = 2 and c = 3").unwrap_err();
        assert_eq!(e.code, "SYNTAX_ERROR");
        assert!(parse("select id from Accounts where (a = 1 and b = 2) and c = 3").is_ok());
        assert_eq!(
            parse("select * from Accounts where id is not null")
                .unwrap_err()
                .code,
            "SYNTAX_ERROR"
        );
        let in_list = (0..101)
            .map(|i| format!("'{i}'"))
            .collect::<Vec<_>>()
            .join(",");
        let e = parse(&format!("select id from Accounts where id in ({in_list})")).unwrap_err();
        assert_eq!(e.code, "LIMIT_EXCEEDED");
        let mut many = "id = 0".to_string();
        for i in 1..26 {
            many = format!("({many} or id = {i})");
        }
        let e = parse(&format!("select id from Accounts where {many}")).unwrap_err();
        assert_eq!(
            (e.code, e.details["limit"].clone()),
            ("LIMIT_EXCEEDED", json!(25))
        );
    }

    #[test]
    fn evaluates_conditions() {
        let r: Map<String, Value> = serde_json::from_value(json!({
            "id": "5725767000000400014", "Billing_Country": " USA ", "Employees": 120,
            "Territory": null, "Owner": {"name": "A", "id": "7"},
            "Modified_Time": "2026-01-02T03:04:05+00:00"
        }))
        .unwrap();
        let yes = |q: &str| {
            let q = parse(&format!("select id from Accounts where {q}")).unwrap();
            check_types(&q.filter, &kinds).unwrap();
            matches(&q.filter, &r, &kinds)
        };
        assert!(yes("id > '5725767000000400001'"));
        assert!(yes("id > 5725767000000400013"));
        assert!(!yes("id > 5725767000000400014"));
        assert!(yes("Billing_Country like '%us%'"));
        assert!(yes("Territory is null"));
        assert!(!yes("Territory = 'EMEA'"));
        assert!(yes("(Employees >= 100 and Employees < 200) or id = 1"));
        assert!(yes("id in ('1', '5725767000000400014')"));
        assert!(yes("id not in ('1')"));
        assert!(yes("Owner = '7'"));
        assert!(yes("Modified_Time > '2026-01-01T00:00:00+00:00'"));
        assert!(yes("Employees between 100 and 130"));
        let q = parse("select id from Accounts where Employees = 'many'").unwrap();
        assert!(check_types(&q.filter, &kinds).is_err());
    }
}
