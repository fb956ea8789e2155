//! The JSONPath subset a rule names its values with: `$`, `.name`, `[*]`, `[n]` and `..name`.
//!
//! A path is parsed once, when the config is, and then matched against the location of each
//! value the walker meets (`walk.rs`), so masking needs one pass over the body and no tree of
//! it. `[*]` selects every member of an object and every element of an array; `..name`
//! selects the member `name` of the value it is applied to and of every value below it.

/// The longest path accepted, in characters.
const PATH_CHARS_MAX: usize = 256;
/// Most segments in one path.
const SEGMENTS_MAX: usize = 32;
/// Largest `[n]`: nine digits.
const INDEX_DIGITS_MAX: usize = 9;

/// One segment after `$`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// `.name`: the member `name` of an object.
    Child(String),
    /// `[n]`: the element `n` (from 0) of an array.
    Index(usize),
    /// `[*]`: every member of an object, every element of an array.
    Wildcard,
    /// `..name`: the member `name` of this value or of any value below it.
    Descendant(String),
}

/// Where a value sits in the document: the member names and indexes from the root down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// An object member.
    Key(String),
    /// An array element.
    Index(usize),
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Path {
    segments: Vec<Segment>,
}

/// A character allowed in a `.name` or `..name`: ASCII letters and digits, `_`, `-`, and any
/// character outside ASCII.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-' || !c.is_ascii()
}

impl Path {
    /// Parses `text`; the error says what is wrong and at which character (from 0).
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let chars: Vec<char> = text.chars().collect();
        if chars.len() > PATH_CHARS_MAX {
            return Err(format!("longer than {PATH_CHARS_MAX} characters"));
        }
        if chars.first() != Some(&'$') {
            return Err("must start with `$`".into());
        }
        let mut segments = Vec::new();
        let mut at = 1;
        while at < chars.len() {
            if segments.len() == SEGMENTS_MAX {
                return Err(format!("more than {SEGMENTS_MAX} segments"));
            }
            let (segment, next) = match chars[at] {
                '.' if chars.get(at + 1) == Some(&'.') => {
                    let (name, next) = name(&chars, at + 2)?;
                    (Segment::Descendant(name), next)
                }
                '.' => {
                    let (name, next) = name(&chars, at + 1)?;
                    (Segment::Child(name), next)
                }
                '[' => bracket(&chars, at + 1)?,
                other => {
                    return Err(format!(
                        "unexpected `{other}` at character {at}; expected `.name`, `..name`, `[*]` or `[n]`"
                    ));
                }
            };
            segments.push(segment);
            at = next;
        }
        Ok(Self { segments })
    }

    /// Whether the value at `location` is selected.
    pub(crate) fn matches(&self, location: &[Step]) -> bool {
        matches(&self.segments, location)
    }
}

/// A name starting at `at`; returns it and where the next segment starts.
fn name(chars: &[char], at: usize) -> Result<(String, usize), String> {
    let end = chars[at..]
        .iter()
        .position(|c| !is_name_char(*c))
        .map_or(chars.len(), |n| at + n);
    if end == at {
        return Err(format!(
            "expected a name at character {at} (letters, digits, `_` or `-`)"
        ));
    }
    Ok((chars[at..end].iter().collect(), end))
}

/// The inside of `[...]` starting at `at`: `*` or an index; returns it and where the next
/// segment starts.
fn bracket(chars: &[char], at: usize) -> Result<(Segment, usize), String> {
    let close = chars[at..]
        .iter()
        .position(|c| *c == ']')
        .map(|n| at + n)
        .ok_or_else(|| format!("`[` at character {} is never closed", at - 1))?;
    let inside: String = chars[at..close].iter().collect();
    let segment = if inside == "*" {
        Segment::Wildcard
    } else if !inside.is_empty()
        && inside.len() <= INDEX_DIGITS_MAX
        && inside.bytes().all(|b| b.is_ascii_digit())
        && (inside == "0" || !inside.starts_with('0'))
    {
        Segment::Index(
            inside
                .parse()
                .map_err(|_| "index out of range".to_string())?,
        )
    } else {
        return Err(format!(
            "`[{inside}]` at character {} is not `[*]` or an index (0 to {})",
            at - 1,
            "9".repeat(INDEX_DIGITS_MAX)
        ));
    };
    Ok((segment, close + 1))
}

fn matches(segments: &[Segment], location: &[Step]) -> bool {
    let Some((segment, rest)) = segments.split_first() else {
        return location.is_empty();
    };
    match segment {
        Segment::Descendant(want) => (0..location.len()).any(|skip| {
            matches!(&location[skip], Step::Key(key) if key == want)
                && matches(rest, &location[skip + 1..])
        }),
        _ => {
            let Some((step, below)) = location.split_first() else {
                return false;
            };
            let selected = match (segment, step) {
                (Segment::Child(want), Step::Key(key)) => key == want,
                (Segment::Index(want), Step::Index(index)) => index == want,
                (Segment::Wildcard, _) => true,
                _ => false,
            };
            selected && matches(rest, below)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(location: &[&str]) -> Vec<Step> {
        location
            .iter()
            .map(|s| match s.parse() {
                Ok(index) => Step::Index(index),
                Err(_) => Step::Key((*s).to_string()),
            })
            .collect()
    }

    fn selects(path: &str, location: &[&str]) -> bool {
        Path::parse(path).unwrap().matches(&at(location))
    }

    #[test]
    fn the_subset_parses() {
        let path = Path::parse("$.a..b[*][12].c-d_e").unwrap();
        assert_eq!(
            path.segments,
            vec![
                Segment::Child("a".into()),
                Segment::Descendant("b".into()),
                Segment::Wildcard,
                Segment::Index(12),
                Segment::Child("c-d_e".into()),
            ]
        );
        assert_eq!(Path::parse("$").unwrap().segments, vec![]);
        assert_eq!(
            Path::parse("$.kontonummer_ü").unwrap().segments,
            vec![Segment::Child("kontonummer_ü".into())]
        );
    }

    #[test]
    fn what_is_outside_the_subset_is_refused_with_its_place() {
        for (path, reason) in [
            ("", "must start with `$`"),
            ("a.b", "must start with `$`"),
            ("$.", "expected a name at character 2"),
            ("$..", "expected a name at character 3"),
            ("$.a[", "`[` at character 3 is never closed"),
            ("$[01]", "`[01]` at character 1 is not `[*]` or an index"),
            ("$[-1]", "`[-1]` at character 1"),
            ("$['a']", "`['a']` at character 1"),
            ("$[?(@.a)]", "`[?(@.a)]` at character 1"),
            ("$.a b", "unexpected ` ` at character 3"),
            ("$.*", "expected a name at character 2"),
        ] {
            let error = Path::parse(path).unwrap_err();
            assert!(error.contains(reason), "{path}: {error}");
        }
        assert!(Path::parse(&format!("${}", ".a".repeat(33))).is_err());
        assert!(Path::parse(&format!("$.{}", "a".repeat(300))).is_err());
        assert!(Path::parse("$[1234567890]").is_err());
    }

    #[test]
    fn children_and_indexes_select_one_place() {
        assert!(selects("$", &[]));
        assert!(!selects("$", &["a"]));
        assert!(selects("$.a.b", &["a", "b"]));
        assert!(!selects("$.a.b", &["a"]));
        assert!(!selects("$.a.b", &["a", "b", "c"]));
        assert!(selects("$.a[1]", &["a", "1"]));
        assert!(!selects("$.a[1]", &["a", "0"]));
        assert!(!selects("$.a[1]", &["a", "x"]));
    }

    #[test]
    fn a_wildcard_selects_members_and_elements() {
        assert!(selects("$.a[*].n", &["a", "0", "n"]));
        assert!(selects("$.a[*].n", &["a", "key", "n"]));
        assert!(!selects("$.a[*].n", &["a", "n"]));
        assert!(selects("$[*]", &["x"]));
    }

    #[test]
    fn recursive_descent_selects_at_any_depth() {
        assert!(selects("$..card", &["card"]));
        assert!(selects("$..card", &["a", "0", "b", "card"]));
        assert!(!selects("$..card", &["card", "x"]));
        assert!(selects("$..card.number", &["x", "card", "number"]));
        assert!(selects("$.a..n[0]", &["a", "b", "n", "0"]));
        assert!(!selects("$.a..n", &["b", "n"]));
        assert!(selects("$..a..b", &["a", "x", "b"]));
    }
}
