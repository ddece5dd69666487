//! Label selectors in kubectl syntax: parsing, display, and matching against a pod's labels.

use std::collections::BTreeMap;
use std::fmt;

use kube::core::{Expression, Selector, SelectorExt};

/// A parsed label selector (kubectl syntax): `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`,
/// `k notin (a,b)`, joined by commas (AND).
///
/// kube-core has selector types but no parser for the string syntax, so the parser is podnet's.
/// Every requirement it accepts has a [`kube::core::Expression`], so matching is kube's
/// [`Selector::matches`], the same code kube's own clients match with. The requirements are kept
/// as written too, for [`Display`](fmt::Display): kube's `in`/`notin` value sets are sorted and
/// deduplicated, which would print `env in (b,a)` back as `env in (a,b)`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    /// As written (order and repeated values kept).
    requirements: Vec<Requirement>,
    /// The same requirements as kube's types; they do the matching.
    selector: Selector,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

impl Requirement {
    /// The same requirement as kube's type; each variant has one with the same meaning.
    fn to_expression(&self) -> Expression {
        match self {
            Requirement::Equals(k, v) => Expression::Equal(k.clone(), v.clone()),
            Requirement::NotEquals(k, v) => Expression::NotEqual(k.clone(), v.clone()),
            Requirement::Exists(k) => Expression::Exists(k.clone()),
            Requirement::NotExists(k) => Expression::DoesNotExist(k.clone()),
            Requirement::In(k, vs) => Expression::In(k.clone(), vs.iter().cloned().collect()),
            Requirement::NotIn(k, vs) => Expression::NotIn(k.clone(), vs.iter().cloned().collect()),
        }
    }
}

impl LabelSelector {
    /// Parses a selector; an empty one matches everything.
    pub fn parse(s: &str) -> Result<LabelSelector, String> {
        let mut requirements = Vec::new();
        if s.trim().is_empty() {
            return Ok(LabelSelector::from_requirements(requirements));
        }
        let mut depth = 0i32;
        let mut start = 0;
        let mut terms = Vec::new();
        for (i, c) in s.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth < 0 {
                        return Err("unbalanced `)`".into());
                    }
                }
                ',' if depth == 0 => {
                    terms.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        if depth != 0 {
            return Err("unbalanced `(`".into());
        }
        terms.push(&s[start..]);
        for term in terms {
            requirements.push(parse_requirement(term.trim())?);
        }
        Ok(LabelSelector::from_requirements(requirements))
    }

    fn from_requirements(requirements: Vec<Requirement>) -> LabelSelector {
        let selector = requirements
            .iter()
            .map(Requirement::to_expression)
            .collect();
        LabelSelector {
            requirements,
            selector,
        }
    }

    /// Whether a pod with these labels is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector.matches(labels)
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| match r {
                Requirement::Equals(k, v) => format!("{k}={v}"),
                Requirement::NotEquals(k, v) => format!("{k}!={v}"),
                Requirement::Exists(k) => k.clone(),
                Requirement::NotExists(k) => format!("!{k}"),
                Requirement::In(k, vs) => format!("{k} in ({})", vs.join(",")),
                Requirement::NotIn(k, vs) => format!("{k} notin ({})", vs.join(",")),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

fn parse_requirement(term: &str) -> Result<Requirement, String> {
    if term.is_empty() {
        return Err("empty requirement (a stray comma?)".into());
    }
    if let Some(k) = term.strip_prefix('!') {
        let k = k.trim();
        check_key(k)?;
        return Ok(Requirement::NotExists(k.to_string()));
    }
    if let Some(open) = term.find('(') {
        let head = term[..open].trim();
        let (key, op) = head
            .rsplit_once(char::is_whitespace)
            .map(|(k, o)| (k.trim(), o.trim()))
            .ok_or_else(|| {
                format!("`{term}`: expected `key in (values)` or `key notin (values)`")
            })?;
        check_key(key)?;
        let inner = term[open + 1..]
            .trim_end()
            .strip_suffix(')')
            .ok_or_else(|| format!("`{term}`: missing `)`"))?;
        let values: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
        if values.iter().all(String::is_empty) {
            return Err(format!("`{term}`: the set of values is empty"));
        }
        for v in &values {
            check_value(v)?;
        }
        return match op {
            "in" => Ok(Requirement::In(key.to_string(), values)),
            "notin" => Ok(Requirement::NotIn(key.to_string(), values)),
            other => Err(format!(
                "`{term}`: unknown operator `{other}` (use in or notin)"
            )),
        };
    }
    let (k, v, req): (&str, &str, fn(String, String) -> Requirement) =
        if let Some((k, v)) = term.split_once("!=") {
            (k, v, Requirement::NotEquals)
        } else if let Some((k, v)) = term.split_once("==") {
            (k, v, Requirement::Equals)
        } else if let Some((k, v)) = term.split_once('=') {
            (k, v, Requirement::Equals)
        } else {
            check_key(term)?;
            return Ok(Requirement::Exists(term.to_string()));
        };
    let (k, v) = (k.trim(), v.trim());
    check_key(k)?;
    check_value(v)?;
    Ok(req(k.to_string(), v.to_string()))
}

/// A label name: 1–63 characters, alphanumeric at both ends, `-`, `_`, `.` inside.
fn check_name(n: &str, what: &str) -> Result<(), String> {
    let ok_inner = n
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let ok_ends = n.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && n.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
    if n.len() > 63 || !ok_inner || !ok_ends {
        return Err(format!(
            "invalid {what} `{n}`: 1-63 characters, alphanumeric at both ends, `-`, `_` or `.` inside"
        ));
    }
    Ok(())
}

fn check_key(k: &str) -> Result<(), String> {
    if k.is_empty() {
        return Err("empty label key".into());
    }
    let name = match k.split_once('/') {
        Some((prefix, name)) => {
            let ok = !prefix.is_empty()
                && prefix.len() <= 253
                && prefix.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                });
            if !ok {
                return Err(format!(
                    "invalid label key prefix `{prefix}`: a DNS subdomain"
                ));
            }
            name
        }
        None => k,
    };
    check_name(name, "label key")
}

fn check_value(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Ok(());
    }
    check_name(v, "label value")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selector_equality_and_existence() {
        let web = labels(&[("app", "web"), ("tier", "fe")]);
        let db = labels(&[("app", "db")]);
        let none = labels(&[]);
        let cases: &[(&str, [bool; 3])] = &[
            ("app=web", [true, false, false]),
            ("app==web", [true, false, false]),
            ("app!=web", [false, true, true]),
            ("tier", [true, false, false]),
            ("!tier", [false, true, true]),
            ("app=web,tier=fe", [true, false, false]),
            ("app=web,tier=be", [false, false, false]),
            ("app in (web,db)", [true, true, false]),
            ("app in(db)", [false, true, false]),
            ("app notin (web)", [false, true, true]),
            ("app notin (web, db), !tier", [false, false, true]),
            (" app = web ", [true, false, false]),
            ("", [true, true, true]),
            ("example.com/role=x", [false, false, false]),
        ];
        for (sel, want) in cases {
            let s = LabelSelector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
            let got = [s.matches(&web), s.matches(&db), s.matches(&none)];
            assert_eq!(&got, want, "selector {sel:?}");
        }
    }

    #[test]
    fn selector_errors() {
        for bad in [
            "app=web,",
            ",app",
            "app in (a",
            "app in ()",
            "app between (a,b)",
            "app=-web",
            "=web",
            "bad key=1",
            "a/b/c=1",
            "Upper.Case/x=1",
            "app in (a,b))",
            "!",
        ] {
            assert!(
                LabelSelector::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn selector_display_round_trips() {
        let s = LabelSelector::parse("app=web, tier!=db,env in (a, b),!x,y").unwrap();
        assert_eq!(s.to_string(), "app=web,tier!=db,env in (a,b),!x,y");
        assert_eq!(LabelSelector::parse(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn selector_display_keeps_the_written_value_order() {
        // kube's expression sets would sort these; podnet prints them as written.
        let s = LabelSelector::parse("env in (b,a,b),x notin (z,y)").unwrap();
        assert_eq!(s.to_string(), "env in (b,a,b),x notin (z,y)");
        assert!(s.matches(&labels(&[("env", "a")])));
        assert!(!s.matches(&labels(&[("env", "a"), ("x", "y")])));
    }
}
