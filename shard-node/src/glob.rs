//! Redis's glob matching, used by `MATCH` of the SCAN family, `KEYS`, pub/sub patterns,
//! `CONFIG GET` and ACL key and channel patterns.

/// Deepest `*` nesting the glob matcher follows (Redis's protection against abusive patterns).
const GLOB_MAX_NESTING: u32 = 1000;

/// Redis's `stringmatchlen` (case-sensitive): `*` any run, `?` one byte, `[abc]`, `[^a]`,
/// `[a-z]` (ends in either order; bytes compare as C `char`, i.e. signed), `\x` a literal `x`.
/// An unterminated class ends at the end of the pattern. Like Redis, a text can only be matched
/// by consuming it: the empty text matches only the empty pattern (callers treat a lone `*` as
/// match-all themselves, as Redis does), and patterns nesting more than 1000 `*` match nothing.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let mut skip_longer = false;
    glob_at(pattern, text, &mut skip_longer, 0)
}

fn glob_at(mut p: &[u8], mut s: &[u8], skip_longer: &mut bool, nesting: u32) -> bool {
    if nesting > GLOB_MAX_NESTING {
        return false;
    }
    while let (Some(&pc), Some(&sc)) = (p.first(), s.first()) {
        match pc {
            b'*' => {
                while p.get(1) == Some(&b'*') {
                    p = &p[1..];
                }
                if p.len() == 1 {
                    return true;
                }
                while !s.is_empty() {
                    if glob_at(&p[1..], s, skip_longer, nesting + 1) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    s = &s[1..];
                }
                // No match for the rest of the pattern anywhere in the rest of the text: an
                // earlier `*` matching more could not help either.
                *skip_longer = true;
                return false;
            }
            b'?' => {
                s = &s[1..];
                p = &p[1..];
            }
            b'[' => {
                p = &p[1..];
                let negate = p.first() == Some(&b'^');
                if negate {
                    p = &p[1..];
                }
                let mut matched = false;
                loop {
                    match p {
                        [b'\\', escaped, ..] => {
                            if *escaped == sc {
                                matched = true;
                            }
                            p = &p[2..];
                        }
                        [b']', ..] | [] => break,
                        [start, b'-', end, ..] => {
                            // C `char` is signed: compare the bytes as i8.
                            let (mut lo, mut hi) = (*start as i8, *end as i8);
                            if lo > hi {
                                std::mem::swap(&mut lo, &mut hi);
                            }
                            let c = sc as i8;
                            if c >= lo && c <= hi {
                                matched = true;
                            }
                            p = &p[3..];
                        }
                        [literal, ..] => {
                            if *literal == sc {
                                matched = true;
                            }
                            p = &p[1..];
                        }
                    }
                }
                if negate {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
                s = &s[1..];
                // Past the closing `]` (an unterminated class has consumed the whole pattern).
                if !p.is_empty() {
                    p = &p[1..];
                }
            }
            _ => {
                let literal = if pc == b'\\' && p.len() >= 2 {
                    p = &p[1..];
                    p[0]
                } else {
                    pc
                };
                if literal != sc {
                    return false;
                }
                s = &s[1..];
                p = &p[1..];
            }
        }
        if s.is_empty() {
            while p.first() == Some(&b'*') {
                p = &p[1..];
            }
            break;
        }
    }
    p.is_empty() && s.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_basics() {
        assert!(glob_match(b"*", b"anything"));
        assert!(!glob_match(b"*", b""));
        assert!(!glob_match(b"**", b""));
        assert!(glob_match(b"", b""));
        assert!(!glob_match(b"", b"x"));
        assert!(glob_match(b"h?llo", b"hello"));
        assert!(!glob_match(b"h?llo", b"hllo"));
        assert!(glob_match(b"h*llo", b"heeeello"));
        assert!(glob_match(b"h*llo", b"hllo"));
        assert!(glob_match(b"a*", b"a"));
        assert!(glob_match(b"a**", b"a"));
        assert!(glob_match(b"*a*b*", b"xxaxxbxx"));
        assert!(!glob_match(b"*a*b*", b"xxbxxaxx"));
        assert!(!glob_match(b"Hello", b"hello"));
    }

    #[test]
    fn glob_classes() {
        assert!(glob_match(b"h[ae]llo", b"hello"));
        assert!(glob_match(b"h[ae]llo", b"hallo"));
        assert!(!glob_match(b"h[ae]llo", b"hillo"));
        assert!(glob_match(b"h[^e]llo", b"hallo"));
        assert!(!glob_match(b"h[^e]llo", b"hello"));
        assert!(glob_match(b"h[a-b]llo", b"hbllo"));
        assert!(!glob_match(b"h[a-b]llo", b"hcllo"));
        assert!(glob_match(b"[z-a]", b"m"), "reversed range");
        assert!(glob_match(b"[\\]]", b"]"));
        assert!(glob_match(b"[\\-]", b"-"));
        assert!(!glob_match(b"[\\-]", b"a"));
        // `[a-]` is the range `]`..`a` of an unterminated class.
        assert!(glob_match(b"[a-]", b"^"));
        assert!(!glob_match(b"[a-]", b"-"));
        assert!(
            glob_match(b"[abc", b"b"),
            "an unterminated class ends the pattern"
        );
        assert!(!glob_match(b"[abc", b"bx"));
        assert!(!glob_match(b"[", b"x"));
        assert!(
            glob_match(b"[^", b"x"),
            "an empty negated class matches any byte"
        );
        // Bytes compare as signed C chars inside ranges: 0xff (-1) lies in [\xf0-a] (-16..97)
        // and 0x00 in [a-\xff] (-1..97).
        assert!(glob_match(b"[\xf0-a]", b"\xff"));
        assert!(glob_match(b"[\xf0-a]", b"\x00"));
        assert!(!glob_match(b"[\xf0-a]", b"b"));
        assert!(!glob_match(b"[\x00-a]", b"\xff"));
        assert!(glob_match(b"[a-\xff]", b"\x00"));
        assert!(!glob_match(b"[a-\xff]", b"b"));
    }

    #[test]
    fn glob_escapes() {
        assert!(glob_match(b"\\*", b"*"));
        assert!(!glob_match(b"\\*", b"x"));
        assert!(glob_match(b"a\\?", b"a?"));
        assert!(!glob_match(b"a\\?", b"ab"));
        assert!(
            glob_match(b"a\\", b"a\\"),
            "a trailing backslash is a literal"
        );
        assert!(glob_match(b"\\\\", b"\\"));
    }

    #[test]
    fn glob_abusive_patterns() {
        let text = vec![b'a'; 3000];
        let nested = |n: usize| b"*a".repeat(n);
        assert!(glob_match(&nested(1000), &text));
        assert!(!glob_match(&nested(1001), &text));
        // Exponential backtracking is cut short.
        let mut pattern = b"*a".repeat(30);
        pattern.push(b'b');
        assert!(!glob_match(&pattern, &[b'a'; 100]));
    }
}
