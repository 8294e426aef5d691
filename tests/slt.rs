//! sqllogictest files under tests/sql/: the bundled views queried as an
//! analyst would. Each file creates its `<input>_input` tables with SQL, then
//! the directive `cskpi prepare as_of=YYYY-MM-DD [from=YYYY-MM]` registers
//! every cskpi view over them (the same code path as a run, without
//! materialising), after which plain SQL is checked.

use std::path::PathBuf;

use async_trait::async_trait;
use chrono::NaiveDate;
use cskpi::config::JobConfig;
use datafusion::prelude::SessionContext;
use libtest_mimic::{Arguments, Failed, Trial};
use sqllogictest::{DBOutput, DefaultColumnType};

struct CskpiDb {
    ctx: SessionContext,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct DbError(String);

impl CskpiDb {
    fn new() -> Self {
        let ctx = cskpi::engine::session::context(
            cskpi::engine::session::session_config().expect("session config"),
            cskpi::engine::session::runtime(None, None).unwrap(),
        );
        cskpi::engine::udf::register_all(
            &ctx,
            std::sync::Arc::new(cskpi::feedback::Taxonomy::built_in()),
        );
        Self { ctx }
    }

    async fn prepare(&self, directive: &str) -> Result<(), DbError> {
        let mut as_of = None;
        let mut from = None;
        for part in directive.split_whitespace().skip(2) {
            match part.split_once('=') {
                Some(("as_of", v)) => {
                    as_of = Some(
                        NaiveDate::parse_from_str(v, "%Y-%m-%d")
                            .map_err(|e| DbError(e.to_string()))?,
                    )
                }
                Some(("from", v)) => from = Some(v.to_string()),
                _ => return Err(DbError(format!("unknown directive part {part}"))),
            }
        }
        let mut text =
            "[input]\ncustomers='-'\norders='-'\ntickets='-'\n[output]\npath='-'\n".to_string();
        if let Some(from) = from {
            text.push_str(&format!("[run]\nfrom = '{from}'\n"));
        }
        let job = JobConfig::parse(&text).map_err(|e| DbError(e.to_string()))?;
        let as_of = as_of.ok_or_else(|| DbError("cskpi prepare needs as_of=".into()))?;
        cskpi::catalog::register_typed_views(&self.ctx)
            .await
            .map_err(|e| DbError(e.to_string()))?;
        cskpi::views::register_views(&self.ctx, &job, as_of)
            .await
            .map_err(|e| DbError(e.to_string()))?;
        Ok(())
    }
}

#[async_trait]
impl sqllogictest::AsyncDB for CskpiDb {
    type Error = DbError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<Self::ColumnType>, Self::Error> {
        if sql.trim_start().starts_with("cskpi prepare") {
            self.prepare(sql.trim()).await?;
            return Ok(DBOutput::StatementComplete(0));
        }
        let df = self
            .ctx
            .sql(sql)
            .await
            .map_err(|e| DbError(e.to_string()))?;
        let is_query = !df.schema().fields().is_empty()
            && sql
                .trim_start()
                .to_ascii_uppercase()
                .starts_with(['S', 'W', '(', 'V']);
        let batches = df.collect().await.map_err(|e| DbError(e.to_string()))?;
        if !is_query {
            return Ok(DBOutput::StatementComplete(0));
        }
        let mut rows = Vec::new();
        let options = datafusion::arrow::util::display::FormatOptions::default().with_null("NULL");
        let mut width = 0;
        for b in &batches {
            width = b.num_columns();
            let formatters: Vec<_> = b
                .columns()
                .iter()
                .map(|c| {
                    datafusion::arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &options)
                        .unwrap()
                })
                .collect();
            for i in 0..b.num_rows() {
                rows.push(formatters.iter().map(|f| f.value(i).to_string()).collect());
            }
        }
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; width],
            rows,
        })
    }

    async fn shutdown(&mut self) {}
}

fn main() {
    let args = Arguments::from_args();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sql");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    let trials = files
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            Trial::test(name, move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    let mut runner = sqllogictest::Runner::new(|| async { Ok(CskpiDb::new()) });
                    runner
                        .run_file_async(&path)
                        .await
                        .map_err(|e| Failed::from(e.display(true).to_string()))
                })
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
