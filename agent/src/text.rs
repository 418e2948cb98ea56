//! Cutting text that came from outside to a service's limit, always on a character boundary
//! (`String::truncate` panics inside a multi-byte character).

/// Cuts `s` to at most `max` characters.
pub fn truncate_chars(s: &mut String, max: usize) {
    if s.len() <= max {
        return; // no more bytes than the limit: no more characters either
    }
    if let Some((at, _)) = s.char_indices().nth(max) {
        s.truncate(at);
    }
}

/// Cuts `s` to at most `max` bytes, backing off to the last whole character. `true` if cut.
pub fn truncate_bytes(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_never_split_a_character() {
        let mut s = "é".repeat(300);
        truncate_chars(&mut s, 256);
        assert_eq!(s.chars().count(), 256);
        let mut s = "aé".repeat(300);
        assert!(truncate_bytes(&mut s, 512));
        assert!(s.len() <= 512 && s.len() >= 510);
        let mut s = "€".repeat(200); // 3 bytes each
        assert!(truncate_bytes(&mut s, 512));
        assert_eq!(s.len(), 510);
        let mut short = String::from("abc");
        assert!(!truncate_bytes(&mut short, 512));
        truncate_chars(&mut short, 512);
        assert_eq!(short, "abc");
    }
}
