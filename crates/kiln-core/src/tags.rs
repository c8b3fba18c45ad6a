//! Tag expressions (mkimage-profiles' `tags()`): select tagged package lists
//! by their tag sets.
//!
//! Grammar (`!` binds tightest, then `&&` / juxtaposition, then `||`):
//!
//! ```text
//! expr  := and ( "||" and )*
//! and   := unary ( "&&"? unary )*
//! unary := "!" unary | TAG | "(" expr ")"
//! TAG   := [A-Za-z0-9_]+
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TagExpr {
    Tag(String),
    Not(Box<TagExpr>),
    And(Box<TagExpr>, Box<TagExpr>),
    Or(Box<TagExpr>, Box<TagExpr>),
}

/// A syntax error, with the byte range of the offending text in the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagError {
    pub message: String,
    pub range: Range<usize>,
}

pub fn is_tag(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl TagExpr {
    pub fn parse(input: &str) -> Result<TagExpr, TagError> {
        let tokens = lex(input)?;
        let mut p = Parser {
            tokens,
            pos: 0,
            end: input.len(),
        };
        if p.tokens.is_empty() {
            return Err(TagError {
                message: "empty tag expression".into(),
                range: 0..input.len(),
            });
        }
        let e = p.or()?;
        if let Some((tok, r)) = p.tokens.get(p.pos) {
            let message = match tok {
                Tok::RParen => "unbalanced `)`".to_string(),
                other => format!("unexpected {other} after a complete expression"),
            };
            return Err(TagError {
                message,
                range: r.clone(),
            });
        }
        Ok(e)
    }

    /// True when the tag set satisfies the expression.
    pub fn eval(&self, tags: &BTreeSet<&str>) -> bool {
        match self {
            TagExpr::Tag(t) => tags.contains(t.as_str()),
            TagExpr::Not(e) => !e.eval(tags),
            TagExpr::And(a, b) => a.eval(tags) && b.eval(tags),
            TagExpr::Or(a, b) => a.eval(tags) || b.eval(tags),
        }
    }

    /// Every tag the expression mentions.
    pub fn tags(&self) -> BTreeSet<&str> {
        let mut out = BTreeSet::new();
        self.collect(&mut out);
        out
    }

    fn collect<'a>(&'a self, out: &mut BTreeSet<&'a str>) {
        match self {
            TagExpr::Tag(t) => {
                out.insert(t);
            }
            TagExpr::Not(e) => e.collect(out),
            TagExpr::And(a, b) | TagExpr::Or(a, b) => {
                a.collect(out);
                b.collect(out);
            }
        }
    }
}

/// Prints with the fewest parentheses that parse back to the same tree.
impl fmt::Display for TagExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn prec(e: &TagExpr) -> u8 {
            match e {
                TagExpr::Or(..) => 0,
                TagExpr::And(..) => 1,
                TagExpr::Not(..) | TagExpr::Tag(..) => 2,
            }
        }
        fn wrap(f: &mut fmt::Formatter<'_>, e: &TagExpr, min: u8) -> fmt::Result {
            if prec(e) < min {
                write!(f, "({e})")
            } else {
                write!(f, "{e}")
            }
        }
        match self {
            TagExpr::Tag(t) => f.write_str(t),
            TagExpr::Not(e) => {
                f.write_str("!")?;
                wrap(f, e, 2)
            }
            // Left-associative: the right operand needs parentheses at equal precedence.
            TagExpr::And(a, b) => {
                wrap(f, a, 1)?;
                f.write_str(" && ")?;
                wrap(f, b, 2)
            }
            TagExpr::Or(a, b) => {
                wrap(f, a, 0)?;
                f.write_str(" || ")?;
                wrap(f, b, 1)
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Tag(String),
    Not,
    And,
    Or,
    LParen,
    RParen,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Tag(t) => write!(f, "tag `{t}`"),
            Tok::Not => f.write_str("`!`"),
            Tok::And => f.write_str("`&&`"),
            Tok::Or => f.write_str("`||`"),
            Tok::LParen => f.write_str("`(`"),
            Tok::RParen => f.write_str("`)`"),
        }
    }
}

fn lex(input: &str) -> Result<Vec<(Tok, Range<usize>)>, TagError> {
    let bytes = input.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let two = bytes.get(i..i + 2);
        let (tok, len) = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'!' => (Tok::Not, 1),
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b'&' if two == Some(b"&&") => (Tok::And, 2),
            b'|' if two == Some(b"||") => (Tok::Or, 2),
            b'&' | b'|' => {
                let op = if c == b'&' { "&&" } else { "||" };
                return Err(TagError {
                    message: format!("`{}` is not an operator; use `{op}`", c as char),
                    range: i..i + 1,
                });
            }
            c if c.is_ascii_alphanumeric() || c == b'_' => {
                let len = bytes[i..]
                    .iter()
                    .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                    .count();
                (Tok::Tag(input[i..i + len].to_string()), len)
            }
            _ => {
                let ch = input[i..].chars().next().unwrap_or('?');
                return Err(TagError {
                    message: format!("unexpected character `{ch}`: tags are [A-Za-z0-9_]+"),
                    range: i..i + ch.len_utf8(),
                });
            }
        };
        out.push((tok, i..i + len));
        i += len;
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(Tok, Range<usize>)>,
    pos: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|(t, _)| t)
    }

    fn or(&mut self) -> Result<TagExpr, TagError> {
        let mut left = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            let right = self.and()?;
            left = TagExpr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<TagExpr, TagError> {
        let mut left = self.unary()?;
        loop {
            match self.peek() {
                Some(Tok::And) => self.pos += 1,
                Some(Tok::Tag(_) | Tok::Not | Tok::LParen) => {}
                _ => return Ok(left),
            }
            let right = self.unary()?;
            left = TagExpr::And(Box::new(left), Box::new(right));
        }
    }

    fn unary(&mut self) -> Result<TagExpr, TagError> {
        let Some((tok, range)) = self.tokens.get(self.pos).cloned() else {
            return Err(TagError {
                message: "expected a tag, `!` or `(` but the expression ends".into(),
                range: self.end..self.end,
            });
        };
        self.pos += 1;
        match tok {
            Tok::Tag(t) => Ok(TagExpr::Tag(t)),
            Tok::Not => Ok(TagExpr::Not(Box::new(self.unary()?))),
            Tok::LParen => {
                let e = self.or()?;
                match self.tokens.get(self.pos) {
                    Some((Tok::RParen, _)) => {
                        self.pos += 1;
                        Ok(e)
                    }
                    Some((other, r)) => Err(TagError {
                        message: format!("expected `)` to close the `(` but found {other}"),
                        range: r.clone(),
                    }),
                    None => Err(TagError {
                        message: "unclosed `(`".into(),
                        range,
                    }),
                }
            }
            other => Err(TagError {
                message: format!("expected a tag, `!` or `(` but found {other}"),
                range,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set<'a>(tags: &[&'a str]) -> BTreeSet<&'a str> {
        tags.iter().copied().collect()
    }

    #[test]
    fn precedence_and_implicit_and() {
        let e = TagExpr::parse("base && (server || network)").expect("parses");
        assert_eq!(e.to_string(), "base && (server || network)");
        assert!(e.eval(&set(&["base", "network"])));
        assert!(!e.eval(&set(&["server"])));

        let e = TagExpr::parse("a b || c").expect("parses");
        assert_eq!(e.to_string(), "a && b || c");
        assert!(e.eval(&set(&["c"])));
        assert!(e.eval(&set(&["a", "b"])));
        assert!(!e.eval(&set(&["a"])));

        let e = TagExpr::parse("!desktop server").expect("parses");
        assert_eq!(e.to_string(), "!desktop && server");
        assert!(e.eval(&set(&["server"])));
        assert!(!e.eval(&set(&["server", "desktop"])));

        let e = TagExpr::parse("!(a || b)").expect("parses");
        assert!(e.eval(&set(&["c"])));
        assert!(!e.eval(&set(&["b"])));
    }

    #[test]
    fn errors_point_at_the_problem() {
        let err = |s: &str| TagExpr::parse(s).expect_err("must fail");
        assert_eq!(err("a & b").range, 2..3);
        assert!(err("a & b").message.contains("use `&&`"));
        assert_eq!(err("a && (b").message, "unclosed `(`");
        assert_eq!(err("a && (b").range, 5..6);
        assert_eq!(err("a)").message, "unbalanced `)`");
        assert_eq!(err("a &&").range, 4..4);
        assert_eq!(err("").message, "empty tag expression");
        assert_eq!(err("   ").message, "empty tag expression");
        assert_eq!(err("a-b").range, 1..2);
        assert_eq!(err("|| a").message, "expected a tag, `!` or `(` but found `||`");
        assert_eq!(err("(a b c").range, 0..1);
        assert_eq!(err("a é").range, 2..4);
    }
}
