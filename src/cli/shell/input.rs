//! Cuts what the user typed (or a script) into steps: backslash commands,
//! one per line, and SQL statements, each ending with `;`.

/// What a piece of input asks for.
#[derive(Debug, PartialEq)]
pub enum Step {
    Sql(String),
    /// A backslash command line, parsed by [`super::command::MetaCommand`].
    Meta(String),
}

/// Splits input into backslash commands (a line starting with `\`) and SQL
/// statements (ending with `;` outside quotes and comments). Returns the
/// steps and the unfinished rest.
pub fn split_input(text: &str) -> (Vec<Step>, String) {
    let mut steps = Vec::new();
    let mut current = String::new();
    for line in text.split_inclusive('\n') {
        if current.trim().is_empty() && line.trim_start().starts_with('\\') {
            steps.push(Step::Meta(line.trim().to_string()));
            current.clear();
            continue;
        }
        current.push_str(line);
        while let Some(end) = statement_end(&current) {
            let statement: String = current[..=end].to_string();
            if !statement.trim().trim_end_matches(';').trim().is_empty() {
                steps.push(Step::Sql(statement.trim().to_string()));
            }
            current = current[end + 1..].to_string();
        }
    }
    (steps, current)
}

/// Byte index of the first `;` that is outside quotes and comments.
fn statement_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let (mut i, mut quote, mut line_comment, mut block_comment) = (0, None, false, false);
    while i < bytes.len() {
        let c = bytes[i];
        let next = bytes.get(i + 1).copied();
        if line_comment {
            if c == b'\n' {
                line_comment = false;
            }
        } else if block_comment {
            if c == b'*' && next == Some(b'/') {
                block_comment = false;
                i += 1;
            }
        } else if let Some(q) = quote {
            if c == q {
                quote = None;
            }
        } else {
            match c {
                b'\'' | b'"' => quote = Some(c),
                b'-' if next == Some(b'-') => line_comment = true,
                b'/' if next == Some(b'*') => {
                    block_comment = true;
                    i += 1;
                }
                b';' => return Some(i),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql_steps(text: &str) -> (Vec<String>, String) {
        let (steps, rest) = split_input(text);
        let steps = steps
            .into_iter()
            .map(|s| match s {
                Step::Sql(s) => s,
                Step::Meta(m) => format!("META {m}"),
            })
            .collect();
        (steps, rest)
    }

    #[test]
    fn statements_end_at_semicolons_outside_quotes_and_comments() {
        let (steps, rest) = sql_steps("SELECT ';' -- a; comment\n, 1;\nSELECT /* ; */ 2; SELECT 3");
        assert_eq!(
            steps,
            ["SELECT ';' -- a; comment\n, 1;", "SELECT /* ; */ 2;"]
        );
        assert_eq!(rest.trim(), "SELECT 3");
    }

    #[test]
    fn backslash_lines_are_commands() {
        let (steps, rest) = sql_steps("\\d\nSELECT 1;\n\\pset format csv\n");
        assert_eq!(steps, ["META \\d", "SELECT 1;", "META \\pset format csv"]);
        assert!(rest.is_empty());
    }
}
