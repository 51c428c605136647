//! `key=value,key2=value2` lists as used by `OTEL_EXPORTER_OTLP_HEADERS` and
//! `OTEL_RESOURCE_ATTRIBUTES` (W3C-baggage-like, values percent-encoded).

use crate::error::{ListError, ListErrorKind};

/// How a list is parsed and how its members appear in errors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListStyle {
    /// Members are headers: values are secrets (never shown) and names are
    /// ASCII-lowercased.
    pub headers: bool,
}

impl ListStyle {
    /// `OTEL_EXPORTER_OTLP_HEADERS` and `otlp.headers`.
    pub(crate) const HEADERS: ListStyle = ListStyle { headers: true };
    /// `OTEL_RESOURCE_ATTRIBUTES` and `service.resource_attributes`.
    pub(crate) const PLAIN: ListStyle = ListStyle { headers: false };
}

/// Parses `k=v,k2=v2`: optional whitespace around keys and values is
/// trimmed, empty members are skipped, values are percent-decoded. Later
/// duplicates win.
pub(crate) fn parse_list(
    input: &str,
    style: ListStyle,
) -> Result<Vec<(String, String)>, ListError> {
    let mut out = Vec::new();
    for (index, member) in input.split(',').enumerate() {
        if member.trim().is_empty() {
            continue;
        }
        let fail = |kind| ListError {
            index: index + 1,
            member: if style.headers {
                redact_member(member)
            } else {
                member.trim().to_string()
            },
            kind,
        };
        let Some((key, value)) = member.split_once('=') else {
            return Err(fail(ListErrorKind::MissingEquals));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(fail(ListErrorKind::EmptyKey));
        }
        let value = percent_decode(value.trim()).map_err(fail)?;
        let key = if style.headers {
            key.to_ascii_lowercase()
        } else {
            key.to_string()
        };
        out.push((key, value));
    }
    Ok(out)
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits, or a result
/// that is not UTF-8, is an error.
pub(crate) fn percent_decode(input: &str) -> Result<String, ListErrorKind> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
            match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                (Some(hi), Some(lo)) => {
                    // Two hex digits: the value fits in a byte.
                    out.push(u8::try_from(hi * 16 + lo).unwrap_or(u8::MAX));
                    i += 3;
                }
                _ => return Err(ListErrorKind::InvalidPercentEncoding),
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ListErrorKind::InvalidUtf8)
}

/// A header list member with its value hidden: `name=***`.
pub(crate) fn redact_member(member: &str) -> String {
    let member = member.trim();
    if let Some((key, _)) = member.split_once('=') {
        return format!("{}=***", key.trim());
    }
    // No `=`: show the first word only, the rest may be a secret.
    let word = member
        .split(|c: char| c.is_whitespace() || c == ':')
        .next()
        .unwrap_or_default();
    if word.len() < member.len() {
        format!("{word} ***")
    } else {
        word.to_string()
    }
}

/// A whole header list with every value hidden.
pub(crate) fn redact_list(input: &str) -> String {
    input
        .split(',')
        .filter(|m| !m.trim().is_empty())
        .map(redact_member)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: ListStyle = ListStyle { headers: false };
    const HEADERS: ListStyle = ListStyle { headers: true };

    #[test]
    fn parses_trims_and_decodes() {
        let got = parse_list(" a = 1 ,, b=x%20y%2Cz ,c=", PLAIN).unwrap();
        assert_eq!(
            got,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y,z".into()),
                ("c".into(), String::new())
            ]
        );
    }

    #[test]
    fn value_may_contain_equals() {
        let got = parse_list("k=a=b", PLAIN).unwrap();
        assert_eq!(got, vec![("k".into(), "a=b".into())]);
    }

    #[test]
    fn header_names_are_lowercased() {
        let got = parse_list("X-Api-Key=S", HEADERS).unwrap();
        assert_eq!(got, vec![("x-api-key".into(), "S".into())]);
    }

    #[test]
    fn errors_name_member_and_kind() {
        let err = parse_list("a=1,oops", PLAIN).unwrap_err();
        assert_eq!((err.index, err.member.as_str()), (2, "oops"));
        assert_eq!(err.kind, ListErrorKind::MissingEquals);
        let err = parse_list("=1", PLAIN).unwrap_err();
        assert_eq!(err.kind, ListErrorKind::EmptyKey);
        let err = parse_list("a=%zz", PLAIN).unwrap_err();
        assert_eq!(err.kind, ListErrorKind::InvalidPercentEncoding);
        let err = parse_list("a=%", PLAIN).unwrap_err();
        assert_eq!(err.kind, ListErrorKind::InvalidPercentEncoding);
        let err = parse_list("a=%ff", PLAIN).unwrap_err();
        assert_eq!(err.kind, ListErrorKind::InvalidUtf8);
    }

    #[test]
    fn header_errors_hide_values() {
        let err = parse_list("authorization=%zzsecret", HEADERS).unwrap_err();
        assert_eq!(err.member, "authorization=***");
        let err = parse_list("Authorization: Bearer secret", HEADERS).unwrap_err();
        assert!(!err.member.contains("secret"), "{}", err.member);
        assert_eq!(redact_list("a=1, b=2"), "a=***,b=***");
    }

    #[test]
    fn percent_decodes_multibyte() {
        assert_eq!(percent_decode("%C3%A9t%C3%A9").unwrap(), "été");
        assert_eq!(percent_decode("100%25").unwrap(), "100%");
    }
}
