//! A bound on how much one source may unpack to. A few kilobytes of gzip,
//! bzip2 or xz can expand to terabytes; the bound is counted on the
//! uncompressed tar stream (data, headers and padding), so it caps the bytes
//! written and, at 512 bytes a member, the number of files too.
//!
//! The `tar` crate reads a long name or a PAX record whole into memory
//! before it hands over the member it belongs to, so what is read between
//! two members has a bound of its own: no real archive has a megabyte of
//! headers in a row.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

/// The most that may be read between two members: headers, long names,
/// PAX records.
pub(super) const MAX_BETWEEN_MEMBERS: u64 = 1 << 20;

/// How many bytes of the uncompressed stream have been read, and where the
/// last member's data ended (`None` while a member is being read).
#[derive(Clone, Default)]
pub(super) struct Counter(Rc<Cell<u64>>, Rc<Cell<Option<u64>>>);

impl Counter {
    pub fn read(&self) -> u64 {
        self.0.get()
    }

    pub fn exceeded(&self, limit: u64) -> bool {
        self.read() > limit
    }

    /// A member was handed over: what follows is its data.
    pub fn member_started(&self) {
        self.1.set(None);
    }

    /// The member is done: what follows, up to the next, is headers.
    pub fn member_done(&self) {
        self.1.set(Some(self.read()));
    }

    /// Whether more than [`MAX_BETWEEN_MEMBERS`] came since the last member.
    pub fn too_much_between(&self) -> bool {
        self.1
            .get()
            .is_some_and(|end| self.read() - end > MAX_BETWEEN_MEMBERS)
    }
}

/// A reader that fails once more than `limit` bytes came through it.
pub(super) struct Counted<R> {
    inner: R,
    counter: Counter,
    limit: u64,
}

impl<R> Counted<R> {
    pub fn new(inner: R, counter: Counter, limit: u64) -> Self {
        Counted {
            inner,
            counter,
            limit,
        }
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.counter.exceeded(self.limit) {
            return Err(io::Error::other("the unpacked size limit is reached"));
        }
        // Never more than one byte past the limit, so a bomb stops at once.
        let room = (self.limit - self.counter.read()).saturating_add(1);
        let len = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..len])?;
        self.counter.0.set(self.counter.read() + n as u64);
        if self.counter.exceeded(self.limit) {
            return Err(io::Error::other("the unpacked size limit is reached"));
        }
        if self.counter.too_much_between() {
            return Err(io::Error::other("too many header bytes in a row"));
        }
        Ok(n)
    }
}

/// Why a size (`--max-unpacked`) does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadSize {
    #[error("{0:?} is not a size (like 8G, 512M or 1048576)")]
    NotANumber(String),
    #[error("{0:?}: unknown unit (use K, M, G or T)")]
    UnknownUnit(String),
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// A size as people write it: `8G`, `512M`, `64k`, `1T` (powers of 1024;
/// `GiB`, `GB` and `G` alike), or a number of bytes.
pub fn parse_size(text: &str) -> Result<u64, BadSize> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| BadSize::NotANumber(text.to_string()))?;
    let shift = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches(['B', 'I'])
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(BadSize::UnknownUnit(text.to_string())),
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| BadSize::TooLarge(text.to_string()))
}

/// A size for messages: the largest unit that divides it, else bytes.
pub fn format_size(bytes: u64) -> String {
    if bytes == u64::MAX {
        return "no limit".into();
    }
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_size("8G"), Ok(8 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("8X").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert_eq!(format_size(8 << 30), "8 GiB");
        assert_eq!(format_size(1536 << 10), "1536 KiB");
        assert_eq!(format_size(1000), "1000 bytes");
    }

    #[test]
    fn headers_between_members_are_bounded() {
        let counter = Counter::default();
        counter.member_done();
        let mut reader = Counted::new(io::repeat(0), counter.clone(), u64::MAX);
        let e = io::copy(&mut reader, &mut io::sink()).unwrap_err();
        assert!(e.to_string().contains("header"), "{e}");
        assert!(counter.read() <= MAX_BETWEEN_MEMBERS + 8192);
        // Inside a member only the size limit counts.
        counter.member_started();
        let mut reader = Counted::new(io::repeat(0).take(4 << 20), counter.clone(), u64::MAX);
        assert_eq!(io::copy(&mut reader, &mut io::sink()).unwrap(), 4 << 20);
    }

    #[test]
    fn the_counted_reader_stops_just_past_its_limit() {
        let counter = Counter::default();
        let mut reader = Counted::new(io::repeat(0), counter.clone(), 1000);
        let mut sink = Vec::new();
        let e = io::copy(&mut reader, &mut sink).unwrap_err();
        assert!(e.to_string().contains("limit"), "{e}");
        assert_eq!(counter.read(), 1001);
        assert!(sink.len() <= 1000);
    }
}
