//! Python's `fnmatch` (`*`, `?`, `[seq]`, `[!seq]`), as Koji's patterns
//! match names. Linear in the pattern times the name: no pattern is slow.

enum Tok {
    Lit(char),
    Any,
    Star,
    Set(Vec<(char, char)>, bool),
}

fn tokens(pattern: &str) -> Vec<Tok> {
    let p: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '*' => out.push(Tok::Star),
            '?' => out.push(Tok::Any),
            '[' => {
                let mut j = i + 1;
                let negate = p.get(j) == Some(&'!');
                if negate {
                    j += 1;
                }
                let start = j;
                // A `]` first in the set is a member.
                if p.get(j) == Some(&']') {
                    j += 1;
                }
                while j < p.len() && p[j] != ']' {
                    j += 1;
                }
                if j >= p.len() {
                    out.push(Tok::Lit('['));
                } else {
                    let body = &p[start..j];
                    let mut ranges = Vec::new();
                    let mut k = 0;
                    while k < body.len() {
                        if k + 2 < body.len() && body[k + 1] == '-' {
                            ranges.push((body[k], body[k + 2]));
                            k += 3;
                        } else {
                            ranges.push((body[k], body[k]));
                            k += 1;
                        }
                    }
                    out.push(Tok::Set(ranges, negate));
                    i = j;
                }
            }
            c => out.push(Tok::Lit(c)),
        }
        i += 1;
    }
    out
}

/// Whether `name` matches the glob `pattern`.
pub fn matches(pattern: &str, name: &str) -> bool {
    let s: Vec<char> = name.chars().collect();
    let n = s.len();
    let mut rest = vec![false; n + 1];
    rest[n] = true;
    for tok in tokens(pattern).into_iter().rev() {
        let mut cur = vec![false; n + 1];
        for j in (0..=n).rev() {
            let here = s.get(j).copied();
            cur[j] = match &tok {
                Tok::Lit(c) => here == Some(*c) && rest[j + 1],
                Tok::Any => here.is_some() && rest[j + 1],
                Tok::Star => rest[j] || (here.is_some() && cur[j + 1]),
                Tok::Set(ranges, negate) => {
                    here.is_some_and(|c| ranges.iter().any(|(a, b)| (*a..=*b).contains(&c)) != *negate) && rest[j + 1]
                }
            };
        }
        rest = cur;
    }
    rest[0]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::matches;

    #[test]
    fn as_fnmatch() {
        assert!(matches("f4*", "f40-build"));
        assert!(!matches("f4*", "ef40"));
        assert!(matches("f?0", "f40"));
        assert!(matches("f[34]0", "f30"));
        assert!(!matches("f[!34]0", "f30"));
        assert!(matches("[]]x", "]x"));
        assert!(matches("a[b", "a[b"));
        assert!(matches("*", ""));
        assert!(!matches("?", ""));
        assert!(matches(&"*a".repeat(50), &"a".repeat(60)));
    }
}
