//! The shell's backslash commands, typed: parsed with `FromStr`, and the
//! help text is made from the same enum, so a command cannot be missing
//! from it.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::ShellError;
use super::print::Format;

#[derive(Debug, Clone, PartialEq)]
pub enum MetaCommand {
    /// `\d`
    ListTables,
    /// `\d NAME`
    Describe(String),
    /// `\i FILE`
    Include(PathBuf),
    /// `\pset format F`
    SetFormat(Format),
    /// `\?`
    Help,
    /// `\q`
    Quit,
}

impl MetaCommand {
    /// Every command, in the order the help lists them (arguments are
    /// placeholders).
    pub fn all() -> [MetaCommand; 6] {
        [
            MetaCommand::ListTables,
            MetaCommand::Describe("NAME".into()),
            MetaCommand::Include("FILE".into()),
            MetaCommand::SetFormat(Format::Table),
            MetaCommand::Help,
            MetaCommand::Quit,
        ]
    }

    /// How the command is written and what it does, for the help.
    fn usage(&self) -> (String, String) {
        let text_formats = || {
            Format::TEXT
                .iter()
                .map(|f| f.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            MetaCommand::ListTables => (
                self.to_string(),
                "list tables and views (inputs, KPI views, last_run.*)".into(),
            ),
            MetaCommand::Describe(_) => ("\\d NAME".into(), "describe a table or view".into()),
            MetaCommand::Include(_) => ("\\i FILE".into(), "run the SQL in FILE".into()),
            MetaCommand::SetFormat(_) => (
                "\\pset format F".into(),
                format!("output format: {}", text_formats()),
            ),
            MetaCommand::Help => (self.to_string(), "this help".into()),
            MetaCommand::Quit => (self.to_string(), "quit (or Ctrl-D)".into()),
        }
    }

    /// The help: every command, then the functions cskpi adds to SQL.
    pub fn help(function_names: &[String]) -> String {
        let usages: Vec<(String, String)> = Self::all().iter().map(Self::usage).collect();
        let width = usages.iter().map(|(u, _)| u.len()).max().unwrap_or(0);
        let mut text = String::from("SQL statements end with ';'. Backslash commands:\n");
        for (usage, description) in usages {
            text.push_str(&format!("  {usage:<width$}  {description}\n"));
        }
        text.push_str("Ctrl-C cancels the running query (or clears the line being typed).\n");
        text.push_str(&format!(
            "cskpi's functions: {}.\n`cskpi kpis` lists every KPI with its formula.",
            function_names.join(", ")
        ));
        text
    }
}

impl fmt::Display for MetaCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaCommand::ListTables => write!(f, "\\d"),
            MetaCommand::Describe(name) => write!(f, "\\d {name}"),
            MetaCommand::Include(file) => write!(f, "\\i {}", file.display()),
            MetaCommand::SetFormat(format) => write!(f, "\\pset format {}", format.name()),
            MetaCommand::Help => write!(f, "\\?"),
            MetaCommand::Quit => write!(f, "\\q"),
        }
    }
}

impl FromStr for MetaCommand {
    type Err = ShellError;

    fn from_str(line: &str) -> Result<Self, Self::Err> {
        let mut parts = line.split_whitespace();
        let name = parts.next().unwrap_or_default();
        let args: Vec<&str> = parts.collect();
        match (name, args.as_slice()) {
            ("\\q", _) => Ok(MetaCommand::Quit),
            ("\\?", _) => Ok(MetaCommand::Help),
            ("\\d", []) => Ok(MetaCommand::ListTables),
            ("\\d", [table]) => Ok(MetaCommand::Describe(table.to_string())),
            ("\\i", [file]) => Ok(MetaCommand::Include(file.into())),
            ("\\pset", ["format", format]) => Format::TEXT
                .into_iter()
                .find(|f| f.name() == *format)
                .map(MetaCommand::SetFormat)
                .ok_or_else(|| {
                    ShellError::Usage(format!(
                        "\\pset format {format}: expected one of {}",
                        Format::TEXT.map(Format::name).join(", ")
                    ))
                }),
            _ => Err(ShellError::Usage(format!(
                "unknown command {line}; \\? lists the commands"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_reads_back_from_its_text() {
        for command in MetaCommand::all() {
            assert_eq!(command.to_string().parse::<MetaCommand>().unwrap(), command);
        }
        for format in Format::TEXT {
            let command = MetaCommand::SetFormat(format);
            assert_eq!(command.to_string().parse::<MetaCommand>().unwrap(), command);
        }
    }

    #[test]
    fn help_lists_every_command_and_every_function_it_is_given() {
        let help = MetaCommand::help(&["key_hash".into(), "nps".into()]);
        for usage in [
            "\\d ",
            "\\d NAME",
            "\\i FILE",
            "\\pset format F",
            "\\?",
            "\\q",
        ] {
            assert!(help.contains(usage), "{usage} missing from\n{help}");
        }
        assert!(help.contains("table, csv, json, ndjson"), "{help}");
        assert!(help.contains("key_hash, nps."), "{help}");
    }

    #[test]
    fn wrong_commands_are_usage_errors() {
        for line in ["\\x", "\\pset format parquet", "\\pset border 2", "\\d a b"] {
            let error = line.parse::<MetaCommand>().unwrap_err();
            assert!(matches!(error, ShellError::Usage(_)), "{line}: {error}");
        }
    }
}
