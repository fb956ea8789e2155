//! One pass over a JSON body that masks the values the rules select and copies every other
//! byte as it was.
//!
//! Parsing the body into `serde_json::Value` and writing it back would change what the plugin
//! was never asked to change: members would come back sorted, numbers past `f64` rounded (a
//! 25-digit id), `1.50` written `1.5`, escapes and spacing rewritten. So the walker reads the
//! text itself, knows where each value starts and ends, and replaces only the masked ones;
//! serde_json decodes string literals (their escapes) and encodes the replacements. What the
//! walker accepts is RFC 8259 JSON, UTF-8, nested at most [`DEPTH_MAX`] deep. The Python build
//! (`plugins/mask-py/walk.py`) is the same walk, step for step, so both builds give the same
//! bytes.
//!
//! Rules apply in their order, each to the value as the rules before it left it; a container
//! that a `redact` replaces is still read through (the body must be JSON) but nothing inside
//! it is matched. The Luhn scan comes last, on every string value as the rules left it.

use txgate_plugin_sdk::serde_json;

use crate::maskers::{Mask, Value, luhn_scan};
use crate::path::{Path, Step};

/// Deepest nesting of objects and arrays masked; a deeper body is refused, never passed.
pub(crate) const DEPTH_MAX: usize = 64;

/// A rule: the values `path` selects get `mask`.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    /// Which values.
    pub(crate) path: Path,
    /// What they get.
    pub(crate) mask: Mask,
}

/// Why a body was not masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The body is not JSON.
    NotJson,
    /// The body nests objects and arrays deeper than [`DEPTH_MAX`].
    TooDeep,
}

/// The masked body, or `None` when masking changes nothing.
pub(crate) fn mask(body: &[u8], rules: &[Rule], luhn: bool) -> Result<Option<String>, Refusal> {
    let text = std::str::from_utf8(body).map_err(|_| Refusal::NotJson)?;
    let mut walker = Walker {
        text,
        pos: 0,
        out: String::new(),
        copied: 0,
        location: Vec::new(),
        rules,
        luhn,
    };
    walker.value(0, false)?;
    walker.skip_ws();
    if walker.pos != text.len() {
        return Err(Refusal::NotJson);
    }
    Ok(walker.finish())
}

struct Walker<'a> {
    text: &'a str,
    pos: usize,
    /// The masked body up to `copied`.
    out: String,
    /// How much of `text` is in `out` (or replaced there).
    copied: usize,
    /// Where the value being read sits.
    location: Vec<Step>,
    rules: &'a [Rule],
    luhn: bool,
}

impl Walker<'_> {
    /// Reads one value at `depth` (the root is 0). `quiet`: inside a redacted container, where
    /// nothing is matched or written.
    fn value(&mut self, depth: usize, quiet: bool) -> Result<(), Refusal> {
        self.skip_ws();
        let start = self.pos;
        let masks: Vec<Mask> = if quiet {
            Vec::new()
        } else {
            self.rules
                .iter()
                .filter(|rule| rule.path.matches(&self.location))
                .map(|rule| rule.mask)
                .collect()
        };
        match self.peek() {
            Some(b'{' | b'[') => self.container(start, depth, quiet, &masks),
            Some(b'"') => {
                let text = self.string()?;
                if !quiet {
                    self.settle(start, Value::Text(text), &masks);
                }
                Ok(())
            }
            Some(b'-' | b'0'..=b'9') => {
                self.number()?;
                if !quiet {
                    let literal = self.text[start..self.pos].to_string();
                    self.settle(start, Value::Number(literal), &masks);
                }
                Ok(())
            }
            Some(b't') => self.literal("true", start, &masks, quiet),
            Some(b'f') => self.literal("false", start, &masks, quiet),
            Some(b'n') => self.literal("null", start, &masks, quiet),
            _ => Err(Refusal::NotJson),
        }
    }

    fn container(
        &mut self,
        start: usize,
        depth: usize,
        quiet: bool,
        masks: &[Mask],
    ) -> Result<(), Refusal> {
        if depth >= DEPTH_MAX {
            return Err(Refusal::TooDeep);
        }
        // Only `redact` changes a container; the maskers before it leave it as it is.
        let redact = masks.iter().position(|m| *m == Mask::Redact);
        let inside_quiet = quiet || redact.is_some();
        if self.peek() == Some(b'{') {
            self.object(depth + 1, inside_quiet)?;
        } else {
            self.array(depth + 1, inside_quiet)?;
        }
        if let Some(at) = redact {
            self.settle(start, Value::Other, &masks[at..]);
        }
        Ok(())
    }

    fn object(&mut self, depth: usize, quiet: bool) -> Result<(), Refusal> {
        self.pos += 1;
        self.skip_ws();
        if self.eat(b'}') {
            return Ok(());
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(Refusal::NotJson);
            }
            let key = self.string()?;
            self.skip_ws();
            if !self.eat(b':') {
                return Err(Refusal::NotJson);
            }
            self.nested(Step::Key(key), depth, quiet)?;
            self.skip_ws();
            if self.eat(b'}') {
                return Ok(());
            }
            if !self.eat(b',') {
                return Err(Refusal::NotJson);
            }
        }
    }

    fn array(&mut self, depth: usize, quiet: bool) -> Result<(), Refusal> {
        self.pos += 1;
        self.skip_ws();
        if self.eat(b']') {
            return Ok(());
        }
        let mut index = 0;
        loop {
            self.nested(Step::Index(index), depth, quiet)?;
            index += 1;
            self.skip_ws();
            if self.eat(b']') {
                return Ok(());
            }
            if !self.eat(b',') {
                return Err(Refusal::NotJson);
            }
        }
    }

    /// Reads a member or element, with its place pushed on the location while it is read.
    fn nested(&mut self, step: Step, depth: usize, quiet: bool) -> Result<(), Refusal> {
        if quiet {
            return self.value(depth, true);
        }
        self.location.push(step);
        let read = self.value(depth, false);
        self.location.pop();
        read
    }

    /// A string literal, decoded. Without a backslash it is its own text (control characters
    /// aside); with one, serde_json decodes the escapes and refuses bad ones and lone
    /// surrogates.
    fn string(&mut self) -> Result<String, Refusal> {
        let bytes = self.text.as_bytes();
        let start = self.pos;
        let mut at = start + 1;
        let mut escaped = false;
        loop {
            match bytes.get(at) {
                None => return Err(Refusal::NotJson),
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    at += 2;
                }
                Some(byte) if *byte < 0x20 => return Err(Refusal::NotJson),
                Some(_) => at += 1,
            }
        }
        self.pos = at + 1;
        if !escaped {
            return Ok(self.text[start + 1..at].to_string());
        }
        serde_json::from_str(&self.text[start..=at]).map_err(|_| Refusal::NotJson)
    }

    /// A number literal: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Result<(), Refusal> {
        self.eat(b'-');
        if !self.eat(b'0') && self.digits() == 0 {
            return Err(Refusal::NotJson);
        }
        if self.eat(b'.') && self.digits() == 0 {
            return Err(Refusal::NotJson);
        }
        if self.eat(b'e') || self.eat(b'E') {
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            if self.digits() == 0 {
                return Err(Refusal::NotJson);
            }
        }
        Ok(())
    }

    fn literal(
        &mut self,
        word: &str,
        start: usize,
        masks: &[Mask],
        quiet: bool,
    ) -> Result<(), Refusal> {
        if !self.text[self.pos..].starts_with(word) {
            return Err(Refusal::NotJson);
        }
        self.pos += word.len();
        if !quiet {
            self.settle(start, Value::Other, masks);
        }
        Ok(())
    }

    /// Applies `masks` (and the Luhn scan) to the value that starts at `start` and ends here,
    /// and writes the result in its place if it differs.
    fn settle(&mut self, start: usize, original: Value, masks: &[Mask]) {
        let mut value = original.clone();
        for mask in masks {
            value = mask.apply(value);
        }
        if self.luhn
            && let Value::Text(text) = &value
            && let Some(scanned) = luhn_scan(text)
        {
            value = Value::Text(scanned);
        }
        if value == original {
            return;
        }
        if let Value::Text(text) = value {
            self.out.push_str(&self.text[self.copied..start]);
            self.out
                .push_str(&serde_json::Value::String(text).to_string());
            self.copied = self.pos;
        }
    }

    /// The masked body, or `None` when nothing was replaced.
    fn finish(mut self) -> Option<String> {
        // A replacement is a JSON string, never empty: an empty `out` means none was made.
        if self.out.is_empty() {
            return None;
        }
        self.out.push_str(&self.text[self.copied..]);
        Some(self.out)
    }

    fn digits(&mut self) -> usize {
        let count = self.text.as_bytes()[self.pos..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        self.pos += count;
        count
    }

    fn skip_ws(&mut self) {
        let bytes = self.text.as_bytes();
        while matches!(bytes.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.pos += 1;
        }
        found
    }
}

#[cfg(test)]
mod tests;
