//! Log group and stream names from event attributes: `/shop/{env}/{module}`, `{instance_id|host}`
//! (the first attribute present wins). Rendered values are made safe for CloudWatch names.

/// A parsed name template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// Alternatives: the first attribute present is used.
    Field(Vec<String>),
}

impl Template {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in `{s}`"))?
                + open;
            let names: Vec<String> = rest[open + 1..close]
                .split('|')
                .map(|n| n.trim().to_owned())
                .collect();
            if names.iter().any(|n| n.is_empty() || n.contains('{')) {
                return Err(format!("empty or nested field name in `{s}`"));
            }
            parts.push(Part::Field(names));
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("unmatched `}}` in `{s}`"));
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        if parts.is_empty() {
            return Err("must not be empty".to_owned());
        }
        Ok(Self { parts })
    }

    /// Parses a group or stream name template whose literal text CloudWatch accepts in such a
    /// name (`valid`): a `:` in a stream template would be refused on every send.
    pub fn parse_name(s: &str, valid: fn(char) -> bool) -> Result<Self, String> {
        let t = Self::parse(s)?;
        for part in &t.parts {
            if let Part::Literal(l) = part
                && let Some(c) = l.chars().find(|c| !valid(*c))
            {
                return Err(format!(
                    "`{}` is not allowed in this name (in `{s}`)",
                    c.escape_debug()
                ));
            }
        }
        Ok(t)
    }

    /// The field names, in order (each alternative).
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.parts
            .iter()
            .flat_map(|p| match p {
                Part::Field(names) => names.as_slice(),
                Part::Literal(_) => &[],
            })
            .map(String::as_str)
    }

    /// The template as an IAM resource pattern: every field becomes `*` (any value).
    pub fn wildcard(&self) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(l) => out.push_str(l),
                Part::Field(_) if out.ends_with('*') => {}
                Part::Field(_) => out.push('*'),
            }
        }
        out
    }

    /// Renders with `lookup`; a field with no value present (or only an empty one, which would
    /// make an empty name) becomes `unknown` and is reported through `missing`.
    pub fn render(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
        valid: fn(char) -> bool,
        missing: &mut bool,
    ) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(l) => out.push_str(l),
                Part::Field(names) => match names
                    .iter()
                    .find_map(|n| lookup(n).filter(|v| !v.is_empty()))
                {
                    Some(v) => out.extend(v.chars().map(|c| if valid(c) { c } else { '_' })),
                    None => {
                        *missing = true;
                        out.push_str("unknown");
                    }
                },
            }
        }
        // Group and stream names: at most 512 characters.
        crate::text::truncate_chars(&mut out, 512);
        out
    }
}

/// Characters CloudWatch allows in a log group name.
pub fn group_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | '#')
}

/// Characters CloudWatch allows in a log stream name (anything but `:` and `*`).
pub fn stream_char(c: char) -> bool {
    c != ':' && c != '*' && !c.is_control()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_fields_alternatives_and_missing() {
        let t = Template::parse("/shop/{env}/{module}").unwrap();
        let look = |k: &str| match k {
            "env" => Some("prod".to_owned()),
            "module" => Some("check out:1".to_owned()),
            _ => None,
        };
        let mut missing = false;
        assert_eq!(
            t.render(look, group_char, &mut missing),
            "/shop/prod/check_out_1"
        );
        assert!(!missing);
        let s = Template::parse("{instance_id|host}").unwrap();
        let look = |k: &str| (k == "host").then(|| "web-1".to_owned());
        assert_eq!(s.render(look, stream_char, &mut missing), "web-1");
        let mut missing = false;
        assert_eq!(s.render(|_| None, stream_char, &mut missing), "unknown");
        assert!(missing);
        assert!(Template::parse("/a/{b").is_err());
        assert!(Template::parse("/a/{}").is_err());
    }

    /// Caught by the name_templates fuzz target: an empty field value made an empty stream
    /// name, and literal text CloudWatch refuses (`:` in a stream, a space in a group) passed
    /// validation, so every send would fail.
    #[test]
    fn empty_values_count_as_missing_and_invalid_literals_are_refused() {
        let t = Template::parse_name("{a|b}", stream_char).unwrap();
        let mut missing = false;
        let look = |k: &str| (k == "a").then(String::new);
        assert_eq!(t.render(look, stream_char, &mut missing), "unknown");
        assert!(missing);
        let err = Template::parse_name("app:{host}", stream_char).unwrap_err();
        assert!(err.contains("`:`"), "{err}");
        assert!(Template::parse_name("/shop logs/{env}", group_char).is_err());
        assert!(Template::parse_name("/shop/{env}", group_char).is_ok());
    }

    #[test]
    fn a_long_non_ascii_name_is_cut_to_512_characters_without_panicking() {
        // 2-byte characters straddle byte 512: cutting by bytes would split one.
        let t = Template::parse("x{stream}").unwrap();
        let value = "é".repeat(600);
        let mut missing = false;
        let out = t.render(|_| Some(value.clone()), stream_char, &mut missing);
        assert_eq!(out.chars().count(), 512);
        assert!(out.starts_with("xé"));
    }
}
