//! Splitting a byte stream into lines: bounded line length, CRLF, and a record of which file
//! offset each piece ends at (checkpoints are byte offsets of fully emitted lines).

use super::config::OversizedLines;

/// What the splitter found in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// A line (without its newline) ending at file offset `end`. `oversized` when it was cut.
    Line {
        bytes: &'a [u8],
        end: u64,
        oversized: bool,
    },
    /// Bytes dropped up to `end`: the rest of a truncated line.
    Skipped { end: u64 },
}

/// Stateful splitter for one file.
#[derive(Debug)]
pub struct LineSplitter {
    max: usize,
    mode: OversizedLines,
    /// In the middle of dropping the tail of a truncated line.
    discarding: bool,
    /// Split mode: pieces of the current line were emitted already, so its last piece is one
    /// of a cut line too, however the reads fell.
    cutting: bool,
}

impl LineSplitter {
    pub fn new(max: usize, mode: OversizedLines) -> Self {
        Self {
            max,
            mode,
            discarding: false,
            cutting: false,
        }
    }

    /// Forget any half-dropped line (the file was truncated or reopened).
    pub fn reset(&mut self) {
        self.discarding = false;
        self.cutting = false;
    }

    /// Emits every complete piece of `buf` (which starts at file offset `base`) and returns how
    /// many bytes were consumed; the rest is an incomplete line to keep for the next read.
    pub fn split<'a>(
        &mut self,
        buf: &'a [u8],
        base: u64,
        mut emit: impl FnMut(Piece<'a>),
    ) -> usize {
        let mut pos = 0;
        while pos < buf.len() {
            let rest = &buf[pos..];
            let newline = memchr::memchr(b'\n', rest);
            if self.discarding {
                match newline {
                    Some(nl) => {
                        pos += nl + 1;
                        self.discarding = false;
                        emit(Piece::Skipped {
                            end: base + pos as u64,
                        });
                    }
                    None => {
                        pos = buf.len();
                        emit(Piece::Skipped {
                            end: base + pos as u64,
                        });
                    }
                }
                continue;
            }
            match newline {
                Some(nl) => {
                    let mut line = &rest[..nl];
                    if line.last() == Some(&b'\r') {
                        line = &line[..line.len() - 1];
                    }
                    let end = base + (pos + nl + 1) as u64;
                    if line.len() <= self.max {
                        emit(Piece::Line {
                            bytes: line,
                            end,
                            oversized: self.cutting,
                        });
                    } else {
                        match self.mode {
                            OversizedLines::Truncate => emit(Piece::Line {
                                bytes: &line[..self.max],
                                end,
                                oversized: true,
                            }),
                            OversizedLines::Split => {
                                let chunks = line.len().div_ceil(self.max);
                                for (i, chunk) in line.chunks(self.max).enumerate() {
                                    // Only the last chunk ends where the line does.
                                    let chunk_end = if i + 1 == chunks {
                                        end
                                    } else {
                                        base + (pos + (i + 1) * self.max) as u64
                                    };
                                    emit(Piece::Line {
                                        bytes: chunk,
                                        end: chunk_end,
                                        oversized: true,
                                    });
                                }
                            }
                        }
                    }
                    pos += nl + 1;
                    self.cutting = false;
                }
                // A line of exactly `max` bytes whose `\r` came without its `\n` yet is not
                // over the limit: wait for the next byte rather than cut it.
                None if rest.len() > self.max
                    && !(rest.len() == self.max + 1 && rest[self.max] == b'\r') =>
                {
                    // A line longer than the limit with no end in sight: deal with its head now
                    // so the buffer stays bounded.
                    let end = base + (pos + self.max) as u64;
                    emit(Piece::Line {
                        bytes: &rest[..self.max],
                        end,
                        oversized: true,
                    });
                    pos += self.max;
                    match self.mode {
                        OversizedLines::Truncate => self.discarding = true,
                        OversizedLines::Split => self.cutting = true,
                    }
                }
                None => break,
            }
        }
        pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &mut LineSplitter, buf: &[u8], base: u64) -> (Vec<(String, u64, bool)>, usize) {
        let mut out = Vec::new();
        let used = s.split(buf, base, |p| match p {
            Piece::Line {
                bytes,
                end,
                oversized,
            } => out.push((String::from_utf8_lossy(bytes).into_owned(), end, oversized)),
            Piece::Skipped { end } => out.push(("<skip>".into(), end, false)),
        });
        (out, used)
    }

    /// Caught by the line_splitter fuzz target (whole vs. piecewise reads): a line of exactly the limit whose `\r\n` was
    /// split between two reads was cut (flagged oversized) and, in split mode, followed by an
    /// extra empty line.
    #[test]
    fn a_line_of_exactly_the_limit_is_whole_when_its_crlf_falls_between_reads() {
        for mode in [OversizedLines::Truncate, OversizedLines::Split] {
            let mut s = LineSplitter::new(4, mode);
            assert_eq!(lines(&mut s, b"abcd\r", 0), (vec![], 0), "{mode:?}");
            let whole = vec![("abcd".into(), 6, false), ("x".into(), 8, false)];
            assert_eq!(lines(&mut s, b"abcd\r\nx\n", 0), (whole, 8), "{mode:?}");
        }
    }

    /// Caught by the line_splitter fuzz target (whole vs. piecewise reads): in split mode the last piece of a long line was
    /// flagged (and counted) as cut or not depending on where a read ended.
    #[test]
    fn every_piece_of_a_split_line_is_flagged_however_the_reads_fall() {
        let mut s = LineSplitter::new(4, OversizedLines::Split);
        let first = vec![("abcd".into(), 4, true)];
        assert_eq!(lines(&mut s, b"abcdef", 0), (first, 4));
        let rest = vec![("ef".into(), 7, true), ("ok".into(), 10, false)];
        assert_eq!(lines(&mut s, b"ef\nok\n", 4), (rest, 6));
    }

    #[test]
    fn splits_complete_lines_and_keeps_the_partial_one() {
        let mut s = LineSplitter::new(100, OversizedLines::Truncate);
        let complete = vec![("a".into(), 13, false), ("bb".into(), 16, false)];
        assert_eq!(lines(&mut s, b"a\r\nbb\nccc", 10), (complete, 6));
    }

    #[test]
    fn truncates_long_lines_and_drops_their_tail_across_reads() {
        let mut s = LineSplitter::new(4, OversizedLines::Truncate);
        let cut = vec![("0123".into(), 4, true), ("<skip>".into(), 10, false)];
        assert_eq!(lines(&mut s, b"0123456789", 0), (cut, 10));
        let tail = vec![("<skip>".into(), 13, false), ("ok".into(), 16, false)];
        assert_eq!(lines(&mut s, b"ab\nok\n", 10), (tail, 6));
    }

    #[test]
    fn splits_long_lines_into_chunks() {
        let mut s = LineSplitter::new(4, OversizedLines::Split);
        let (out, _) = lines(&mut s, b"0123456789\n", 0);
        assert_eq!(
            out,
            vec![
                ("0123".into(), 4, true),
                ("4567".into(), 8, true),
                ("89".into(), 11, true)
            ]
        );
    }
}
