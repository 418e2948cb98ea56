//! Payment card numbers in free text.
//!
//! A candidate is a run of 13–19 digits, optionally grouped by single spaces or dashes, standing
//! alone (no letter or digit right before or after). It is a card when its issuer prefix and
//! length fit a card brand and its Luhn checksum holds. The prefix rule matters: without it,
//! one in ten 13-digit millisecond timestamps would pass the Luhn check and be redacted.

/// The marker that replaces a card number.
pub const CARD_MARKER: &str = "[REDACTED:card]";

/// Returns the text with card numbers replaced and how many there were, or `None` (without
/// allocating) when there are none.
pub fn redact_cards(text: &str) -> Option<(String, usize)> {
    let bytes = text.as_bytes();
    // Fast path: a card needs at least 13 digits in the line.
    if bytes.iter().filter(|b| b.is_ascii_digit()).take(13).count() < 13 {
        return None;
    }
    let mut out: Option<String> = None;
    let mut copied = 0; // bytes of `text` already in `out`
    let mut found = 0;
    let mut i = 0;
    while i < bytes.len() {
        let starts_run = bytes[i].is_ascii_digit() && (i == 0 || !is_word(bytes[i - 1]));
        if !starts_run {
            i += 1;
            continue;
        }
        let mut groups = Groups::default();
        digit_groups(bytes, i, &mut groups);
        let groups = &groups.spans[..groups.len];
        let run_end = groups.last().map(|g| g.1).unwrap_or(i);
        // The run must stand alone, and hold a card's 13 digits at least (timestamps, ids and
        // dates, the common runs, are shorter: skipped without further work).
        let digit_count: usize = groups.iter().map(|(s, e)| e - s).sum();
        if (run_end < bytes.len() && is_word(bytes[run_end])) || digit_count < 13 {
            i = run_end.max(i + 1);
            continue;
        }
        // Try spans of whole groups, leftmost first (a run may hold two cards side by side).
        let mut g = 0;
        while g < groups.len() {
            let mut matched = None;
            let mut digits = [0u8; 19];
            let mut n = 0;
            for (h, &(s, e)) in groups.iter().enumerate().skip(g) {
                if n + (e - s) > 19 {
                    break;
                }
                for (d, b) in digits[n..].iter_mut().zip(&bytes[s..e]) {
                    *d = b - b'0';
                }
                n += e - s;
                if is_card(&digits[..n]) {
                    matched = Some(h);
                }
            }
            match matched {
                Some(h) => {
                    let (start, end) = (groups[g].0, groups[h].1);
                    let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
                    o.push_str(&text[copied..start]);
                    o.push_str(CARD_MARKER);
                    copied = end;
                    found += 1;
                    g = h + 1;
                }
                None => g += 1,
            }
        }
        i = run_end.max(i + 1);
    }
    out.map(|mut o| {
        o.push_str(&text[copied..]);
        (o, found)
    })
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Most digit groups one run is split into.
const MAX_GROUPS: usize = 8;

/// The digit groups of one run, on the stack: this runs for every digit run of every line.
#[derive(Default)]
struct Groups {
    spans: [(usize, usize); MAX_GROUPS],
    len: usize,
}

/// Digit groups `(start, end)` of the run starting at `i`, separated by single ' ' or '-'.
fn digit_groups(bytes: &[u8], mut i: usize, groups: &mut Groups) {
    loop {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        groups.spans[groups.len] = (start, i);
        groups.len += 1;
        let sep = i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'-');
        if sep && i + 1 < bytes.len() && bytes[i + 1].is_ascii_digit() && groups.len < MAX_GROUPS {
            i += 1;
        } else {
            return;
        }
    }
}

/// Issuer prefix and length of a known brand, and a valid Luhn checksum.
fn is_card(d: &[u8]) -> bool {
    let n = d.len();
    if !(13..=19).contains(&n) {
        return false;
    }
    let p2 = d[0] as u32 * 10 + d[1] as u32;
    let p4 = p2 * 100 + d[2] as u32 * 10 + d[3] as u32;
    let brand = match d[0] {
        4 => matches!(n, 13 | 16 | 19), // Visa
        5 => (51..=55).contains(&p2) && n == 16 || (n >= 12 && matches!(p2, 50 | 56..=58)), // Mastercard, Maestro
        2 => (2221..=2720).contains(&p4) && n == 16, // Mastercard 2-series
        3 => match p2 {
            34 | 37 => n == 15,           // Amex
            30 | 36 | 38 | 39 => n >= 14, // Diners
            35 => n >= 16,                // JCB
            _ => false,
        },
        6 => n >= 16, // Discover, UnionPay, Maestro
        _ => false,
    };
    brand && luhn(d)
}

fn luhn(d: &[u8]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = x as u32;
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 { y - 9 } else { y }
            } else {
                x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> String {
        redact_cards(s)
            .map(|(o, _)| o)
            .unwrap_or_else(|| s.to_owned())
    }

    #[test]
    fn redacts_cards_with_and_without_separators() {
        for (text, redacted) in [
            ("card=4111111111111111 ok", "card=[REDACTED:card] ok"),
            ("pan 4111 1111 1111 1111.", "pan [REDACTED:card]."),
            ("5500-0000-0000-0004", "[REDACTED:card]"),
            ("amex 378282246310005", "amex [REDACTED:card]"),
            (
                "{\"pan\":\"6011111111111117\"}",
                "{\"pan\":\"[REDACTED:card]\"}",
            ),
            (
                "two: 4111 1111 1111 1111 5500 0000 0000 0004",
                "two: [REDACTED:card] [REDACTED:card]",
            ),
        ] {
            assert_eq!(r(text), redacted);
        }
        assert_eq!(
            redact_cards("a 4111111111111111 b 4012888888881881")
                .unwrap()
                .1,
            2
        );
    }

    #[test]
    fn leaves_look_alikes_alone() {
        for text in [
            // Fails Luhn.
            "4111111111111112",
            // Millisecond timestamps: 13 digits starting with 1.
            "ts=1732252800007",
            // Part of a longer token.
            "id=x4111111111111111",
            "order 4111111111111111a",
            // Too short.
            "4111 1111 1111",
        ] {
            assert_eq!(r(text), text);
        }
        assert!(redact_cards("no digits here at all").is_none());
    }
}
