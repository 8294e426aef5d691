//! Numbers and text for people: thousands separators, percentages, money
//! with two decimals (no currency: the inputs do not say which), and HTML
//! escaping.

/// `value` with `decimals` decimals and a comma every three digits.
pub fn number(value: f64, decimals: usize) -> String {
    if !value.is_finite() {
        return "–".into();
    }
    let text = format!("{:.*}", decimals, value.abs());
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (text.as_str(), None),
    };
    let mut grouped = String::new();
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    // -0.00 is 0.00
    let negative = value < 0.0 && text.chars().any(|c| c.is_ascii_digit() && c != '0');
    let sign = if negative { "-" } else { "" };
    match fraction {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// Money: two decimals, separators, no currency sign.
pub fn money(value: f64) -> String {
    number(value, 2)
}

/// A count.
pub fn count(value: f64) -> String {
    number(value, 0)
}

/// A value already in percent (0-100).
pub fn percent(value: f64) -> String {
    format!("{}%", number(value, 1))
}

/// A share (0-1) as a percentage.
pub fn share(value: f64) -> String {
    percent(value * 100.0)
}

/// An axis tick: short (k, M) for large values.
pub fn axis(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1e6 {
        format!("{}M", number(value / 1e6, 1))
    } else if magnitude >= 1e4 {
        format!("{}k", number(value / 1e3, 0))
    } else if magnitude >= 100.0 || value == value.round() {
        number(value, 0)
    } else {
        number(value, 2)
    }
}

/// Text for an HTML element or attribute.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_for_people() {
        assert_eq!(number(1234567.891, 2), "1,234,567.89");
        assert_eq!(number(-1234.5, 1), "-1,234.5");
        assert_eq!(number(999.0, 0), "999");
        assert_eq!(number(1000.0, 0), "1,000");
        assert_eq!(number(-0.001, 2), "0.00");
        assert_eq!(money(12.0), "12.00");
        assert_eq!(count(1234.0), "1,234");
        assert_eq!(percent(12.345), "12.3%");
        assert_eq!(share(0.5), "50.0%");
        assert_eq!(number(f64::NAN, 2), "–");
        assert_eq!(axis(2_500_000.0), "2.5M");
        assert_eq!(axis(25_000.0), "25k");
        assert_eq!(axis(0.25), "0.25");
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
