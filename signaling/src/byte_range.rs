//! HTTP range requests on recordings (RFC 9110 §14): one `bytes=` range, parsed and resolved
//! against a file's length. Several ranges in one header are not served (the whole file is,
//! as the RFC allows); a range that cannot be satisfied gets `416`.

/// One requested byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=a-b` (inclusive) or `bytes=a-` (`None`: to the end).
    From(u64, Option<u64>),
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
}

impl ByteRange {
    /// The single range of a `Range` header value; `None` for anything else (no range, a
    /// unit other than bytes, several ranges, malformed), which is served as the whole file.
    pub fn parse(header: &str) -> Option<ByteRange> {
        let spec = header.trim().strip_prefix("bytes=")?.trim();
        if spec.contains(',') {
            return None;
        }
        let (a, b) = spec.split_once('-')?;
        let num = |s: &str| s.trim().parse::<u64>().ok();
        match (a.trim().is_empty(), b.trim().is_empty()) {
            (true, false) => Some(ByteRange::Suffix(num(b)?)),
            (false, true) => Some(ByteRange::From(num(a)?, None)),
            (false, false) => {
                let (a, b) = (num(a)?, num(b)?);
                (a <= b).then_some(ByteRange::From(a, Some(b)))
            }
            (true, true) => None,
        }
    }

    /// The first and last byte (inclusive) of this range in a file of `len` bytes; `None`
    /// when it cannot be satisfied (starts at or past the end, or an empty suffix).
    pub fn resolve(self, len: u64) -> Option<(u64, u64)> {
        match self {
            ByteRange::From(a, b) if a < len => Some((a, b.map_or(len - 1, |b| b.min(len - 1)))),
            ByteRange::Suffix(n) if n > 0 && len > 0 => Some((len.saturating_sub(n), len - 1)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ByteRange::{self, From, Suffix};

    #[test]
    fn parses_one_bytes_range() {
        assert_eq!(ByteRange::parse("bytes=0-99"), Some(From(0, Some(99))));
        assert_eq!(ByteRange::parse("bytes=100-"), Some(From(100, None)));
        assert_eq!(ByteRange::parse("bytes=-500"), Some(Suffix(500)));
        for bad in [
            "bytes=5-1",
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=-",
            "bytes=a-b",
            "",
        ] {
            assert_eq!(ByteRange::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn resolves_against_the_length() {
        assert_eq!(From(0, Some(99)).resolve(1000), Some((0, 99)));
        assert_eq!(From(900, Some(5000)).resolve(1000), Some((900, 999)));
        assert_eq!(From(100, None).resolve(1000), Some((100, 999)));
        assert_eq!(Suffix(500).resolve(1000), Some((500, 999)));
        assert_eq!(Suffix(5000).resolve(1000), Some((0, 999)));
        assert_eq!(From(1000, None).resolve(1000), None);
        assert_eq!(Suffix(0).resolve(1000), None);
        assert_eq!(Suffix(10).resolve(0), None);
    }
}
