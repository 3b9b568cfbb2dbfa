//! Reading just enough of a payload to forward it: a request's `id`, `type` and `key`,
//! a response's `id`, and where the id's digits sit so they can be swapped in place.
//!
//! The proxy never builds a JSON value for what it relays: bodies, tokens and unknown
//! fields pass through as the bytes they arrived as.

use std::ops::Range;

/// Deepest nesting accepted, as the server's decoder (serde_json's default limit).
const MAX_DEPTH: usize = 128;

/// What the proxy needs of a request.
#[derive(Debug, PartialEq, Eq)]
pub struct RequestHead<'a> {
    /// The client's id.
    pub id: u64,
    /// Byte range of the id's value in the payload.
    pub id_span: Range<usize>,
    /// The operation name (`type`).
    pub op: &'a str,
    /// The routing key, if any.
    pub key: Option<&'a str>,
}

/// The head of a request in the common shape: a valid JSON object with a u64 `id`, a
/// string `type` and an optional string `key`, none of them repeated and the two
/// strings without escapes.
///
/// One pass checks the whole payload (UTF-8, syntax, nesting) and notes where the
/// three members are; nothing is allocated. `None` for anything else (invalid JSON,
/// legacy integer codes, escapes where the fields are read): the caller hands those to
/// the full decoder, which answers them exactly as a node would.
pub fn request_head(payload: &[u8]) -> Option<RequestHead<'_>> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut p = Parser { b: payload, i: 0 };
    let (mut id, mut op, mut key) = (None, None, None);
    p.ws();
    p.eat(b'{')?;
    p.ws();
    if !p.eat_if(b'}') {
        loop {
            p.ws();
            let name = p.string()?;
            p.ws();
            p.eat(b':')?;
            p.ws();
            let at = p.i;
            p.value(1)?;
            let span = at..p.i;
            let slot = match &payload[name] {
                br#""id""# => Some(&mut id),
                br#""type""# => Some(&mut op),
                br#""key""# => Some(&mut key),
                // An escaped name could spell one of the three; let the decoder see it.
                n if n.contains(&b'\\') => return None,
                _ => None,
            };
            if let Some(slot) = slot {
                // A repeated routed member: which one counts is the decoder's call.
                if slot.replace(span).is_some() {
                    return None;
                }
            }
            p.ws();
            if p.eat_if(b'}') {
                break;
            }
            p.eat(b',')?;
        }
    }
    p.ws();
    if p.i != payload.len() {
        return None;
    }
    let id_span = id?;
    let id = parse_u64(&payload[id_span.clone()])?;
    let op = plain_string(text, op?)?;
    let key = match key {
        None => None,
        Some(span) if &payload[span.clone()] == b"null" => None,
        Some(span) => Some(plain_string(text, span)?),
    };
    Some(RequestHead {
        id,
        id_span,
        op,
        key,
    })
}

/// A JSON string's contents if it has no escapes.
fn plain_string(text: &str, span: Range<usize>) -> Option<&str> {
    let s = text.get(span)?.strip_prefix('"')?.strip_suffix('"')?;
    (!s.contains('\\')).then_some(s)
}

/// Plain decimal digits that fit a u64 (JSON allows no leading zeros).
fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit()
            .then_some(())
            .and_then(|()| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
    })
}

/// A JSON syntax checker over bytes already known to be UTF-8.
struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.eat_if(c).then_some(())
    }

    fn eat_if(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        self.i += usize::from(hit);
        hit
    }

    /// A string; returns its span, quotes included.
    fn string(&mut self) -> Option<Range<usize>> {
        let at = self.i;
        self.eat(b'"')?;
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(at..self.i);
                }
                b'\\' => {
                    self.i += 1;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
                        b'u' => {
                            let hex = self.b.get(self.i + 1..self.i + 5)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.i += 5;
                        }
                        _ => return None,
                    }
                }
                0..=0x1f => return None,
                _ => self.i += 1,
            }
        }
    }

    fn digits(&mut self) -> usize {
        let at = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - at
    }

    fn number(&mut self) -> Option<()> {
        self.eat_if(b'-');
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.eat_if(b'.') && self.digits() == 0 {
            return None;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// One value at nesting `depth` (the top-level object is depth 1).
    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' if depth >= MAX_DEPTH => None,
            b'{' => {
                self.i += 1;
                self.ws();
                if self.eat_if(b'}') {
                    return Some(());
                }
                loop {
                    self.ws();
                    self.string()?;
                    self.ws();
                    self.eat(b':')?;
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    if self.eat_if(b'}') {
                        return Some(());
                    }
                    self.eat(b',')?;
                }
            }
            b'[' => {
                self.i += 1;
                self.ws();
                if self.eat_if(b']') {
                    return Some(());
                }
                loop {
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    if self.eat_if(b']') {
                        return Some(());
                    }
                    self.eat(b',')?;
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number(),
        }
    }
}

/// The `id` of a response payload and where its digits are; `None` for `"id":null`
/// or no id. Nodes write the id first, which is read without looking further.
pub fn response_id(payload: &[u8]) -> Option<(u64, Range<usize>)> {
    let span = match leading_id(payload) {
        Some(span) => span,
        None => value_span(payload, b"id")?,
    };
    let id = std::str::from_utf8(&payload[span.clone()])
        .ok()?
        .parse()
        .ok()?;
    Some((id, span))
}

/// Appends one frame holding `payload` with the bytes in `span` replaced by `id`.
pub fn encode_with_id(out: &mut Vec<u8>, payload: &[u8], span: &Range<usize>, id: u64) {
    let mut digits = [0u8; 20];
    let digits = format_u64(id, &mut digits);
    let len = payload.len() - span.len() + digits.len();
    out.reserve(4 + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(&payload[..span.start]);
    out.extend_from_slice(digits);
    out.extend_from_slice(&payload[span.end..]);
}

/// `n` in decimal, written at the end of `buf`.
fn format_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// The digits of `{"id":N` at the very start, followed by a delimiter.
fn leading_id(payload: &[u8]) -> Option<Range<usize>> {
    const PREFIX: &[u8] = br#"{"id":"#;
    let rest = payload.strip_prefix(PREFIX)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let next = *rest.get(digits)?;
    (digits > 0 && matches!(next, b',' | b'}' | b' ' | b'\t' | b'\r' | b'\n'))
        .then_some(PREFIX.len()..PREFIX.len() + digits)
}

/// Where the value of top-level member `name` is, in a payload already known to be
/// valid JSON. `None` if absent, or if some member name uses escapes (it could spell
/// `name` in a way a byte comparison misses).
fn value_span(payload: &[u8], name: &[u8]) -> Option<Range<usize>> {
    let b = payload;
    let mut i = first_non_ws(b, 0)?;
    if b[i] != b'{' {
        return None;
    }
    i += 1;
    loop {
        i = first_non_ws(b, i)?;
        if b[i] != b'"' {
            return None; // `}`: no such member
        }
        let (end, escaped) = string_end(b, i)?;
        if escaped {
            return None;
        }
        let key = &b[i + 1..end - 1];
        i = first_non_ws(b, end)?;
        if b[i] != b':' {
            return None;
        }
        let start = first_non_ws(b, i + 1)?;
        let stop = value_end(b, start)?;
        if key == name {
            return Some(start..stop);
        }
        i = first_non_ws(b, stop)?;
        if b[i] != b',' {
            return None;
        }
        i += 1;
    }
}

fn first_non_ws(b: &[u8], from: usize) -> Option<usize> {
    (from..b.len()).find(|&i| !matches!(b[i], b' ' | b'\t' | b'\r' | b'\n'))
}

/// End (one past the closing quote) of the string opening at `at`, and whether it
/// contains escapes.
fn string_end(b: &[u8], at: usize) -> Option<(usize, bool)> {
    let mut i = at + 1;
    let mut escaped = false;
    while i < b.len() {
        match b[i] {
            b'"' => return Some((i + 1, escaped)),
            b'\\' => {
                escaped = true;
                i += 2;
            }
            _ => i += 1,
        }
    }
    None
}

/// End of the value starting at `at`.
fn value_end(b: &[u8], at: usize) -> Option<usize> {
    match *b.get(at)? {
        b'"' => string_end(b, at).map(|(end, _)| end),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        i = string_end(b, i)?.0;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => Some(
            (at..b.len())
                .find(|&i| matches!(b[i], b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n'))
                .unwrap_or(b.len()),
        ),
    }
}

#[cfg(test)]
mod tests;
