//! How cskpi's per-job state travels in a distributed plan.
//!
//! Ballista ships plans as protobuf and functions by name: an executor
//! looks a name up in its own registry, built when the process started, so
//! a function holding per-job state would run there with a stale copy. And
//! DataFusion's protobuf knows no in-memory table. These codecs wrap
//! Ballista's own (which carry its shuffle nodes and file formats) and add:
//!
//! - `comment_themes` with the job's taxonomy (its themes and keywords, as
//!   JSON), so executors classify comments as the driver's job says;
//! - in-memory tables (`MemTable`: the months of the run window, the
//!   taxonomy's keywords, the CSI results, empty optional inputs), as their
//!   batches in Arrow IPC, partition by partition;
//! - `CompactBatchesExec`, the node cskpi's physical rule puts before sorts.
//!
//! Everything else goes to Ballista's codecs unchanged. Each encoding starts
//! with a tag of its own, which protobuf messages never begin with, so a
//! decoder tells cskpi's buffers from Ballista's by their first bytes.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;

use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::common::{Result, TableReference, exec_datafusion_err, exec_err};
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan, ScalarUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};

use crate::engine::compact::CompactBatchesExec;
use crate::engine::udf::CommentThemes;
use crate::feedback::Taxonomy;

/// Tags that open cskpi's encodings (none is a valid protobuf start: 0x00
/// is field number 0).
const TAXONOMY_TAG: &[u8] = b"\0cskpi-taxonomy-1\0";
const MEM_TABLE_TAG: &[u8] = b"\0cskpi-memtable-1\0";
const COMPACT_TAG: &[u8] = b"\0cskpi-compact-1\0";

/// The logical codec of drivers, the scheduler and executors.
#[derive(Debug, Default)]
pub struct LogicalCodec {
    ballista: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for LogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.ballista.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        match buf.strip_prefix(MEM_TABLE_TAG) {
            Some(batches) => Ok(Arc::new(decode_mem_table(batches, schema)?)),
            None => self
                .ballista
                .try_decode_table_provider(buf, table_ref, schema, ctx),
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        match node.downcast_ref::<MemTable>() {
            Some(table) => encode_mem_table(table, buf),
            None => self
                .ballista
                .try_encode_table_provider(table_ref, node, buf),
        }
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.ballista.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.ballista.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        decode_udf(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        encode_udf(node, buf)
    }
}

/// The physical codec of the scheduler and executors.
#[derive(Debug, Default)]
pub struct PhysicalCodec {
    ballista: BallistaPhysicalExtensionCodec,
}

impl PhysicalExtensionCodec for PhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if buf == COMPACT_TAG {
            let [input] = inputs else {
                return exec_err!("CompactBatchesExec has one input, got {}", inputs.len());
            };
            return Ok(Arc::new(CompactBatchesExec::new(Arc::clone(input))));
        }
        self.ballista.try_decode(buf, inputs, ctx, proto_converter)
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        if node.downcast_ref::<CompactBatchesExec>().is_some() {
            buf.extend_from_slice(COMPACT_TAG);
            return Ok(());
        }
        self.ballista.try_encode(node, buf, proto_converter)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        decode_udf(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        encode_udf(node, buf)
    }
}

/// `comment_themes` carries its taxonomy; every other function travels by
/// name (nothing written).
fn encode_udf(node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
    let Some(themes) = node.inner().downcast_ref::<CommentThemes>() else {
        return Ok(());
    };
    let listed: BTreeMap<&str, Vec<&str>> =
        themes
            .taxonomy()
            .keywords()
            .fold(BTreeMap::new(), |mut map, (theme, keyword)| {
                map.entry(theme).or_insert_with(Vec::new).push(keyword);
                map
            });
    buf.extend_from_slice(TAXONOMY_TAG);
    serde_json::to_writer(buf, &listed)
        .map_err(|e| exec_datafusion_err!("cannot encode the taxonomy: {e}"))
}

fn decode_udf(name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
    let Some(json) = buf.strip_prefix(TAXONOMY_TAG) else {
        return exec_err!(
            "function {name} is not registered here: is this process the same cskpi build as the driver?"
        );
    };
    let themes: BTreeMap<String, Vec<String>> = serde_json::from_slice(json)
        .map_err(|e| exec_datafusion_err!("cannot decode the taxonomy of {name}: {e}"))?;
    let taxonomy = Taxonomy::new(&themes)
        .map_err(|e| exec_datafusion_err!("the taxonomy of {name} is not valid: {e}"))?;
    Ok(Arc::new(ScalarUDF::new_from_impl(CommentThemes::new(
        Arc::new(taxonomy),
    ))))
}

/// The table's partitions, each as a length and an Arrow IPC stream.
fn encode_mem_table(table: &MemTable, buf: &mut Vec<u8>) -> Result<()> {
    let schema = table.schema();
    buf.extend_from_slice(MEM_TABLE_TAG);
    buf.extend_from_slice(&(table.batches.len() as u64).to_le_bytes());
    for partition in &table.batches {
        // Plans are encoded while no query writes into cskpi's tables.
        let batches = partition
            .try_read()
            .map_err(|_| exec_datafusion_err!("an in-memory table is being written"))?;
        let mut stream = Vec::new();
        let mut writer = StreamWriter::try_new(&mut stream, &schema)?;
        for batch in batches.iter() {
            writer.write(batch)?;
        }
        writer.finish()?;
        drop(writer);
        buf.extend_from_slice(&(stream.len() as u64).to_le_bytes());
        buf.extend_from_slice(&stream);
    }
    Ok(())
}

fn decode_mem_table(mut buf: &[u8], schema: SchemaRef) -> Result<MemTable> {
    let mut take = |n: usize| -> Result<&[u8]> {
        if buf.len() < n {
            return exec_err!("an in-memory table's encoding is cut short");
        }
        let (head, rest) = buf.split_at(n);
        buf = rest;
        Ok(head)
    };
    let read_len = |bytes: &[u8]| u64::from_le_bytes(bytes.try_into().expect("8 bytes")) as usize;
    let partitions = read_len(take(8)?);
    let mut decoded = Vec::with_capacity(partitions);
    for _ in 0..partitions {
        let len = read_len(take(8)?);
        let stream = take(len)?;
        let reader = StreamReader::try_new(Cursor::new(stream), None)?;
        let batches: Vec<RecordBatch> = reader.collect::<std::result::Result<_, _>>()?;
        decoded.push(batches);
    }
    MemTable::try_new(schema, decoded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    fn task_context() -> TaskContext {
        TaskContext::default()
    }

    #[test]
    fn comment_themes_keeps_the_jobs_taxonomy() {
        let themes = BTreeMap::from([
            (
                "billing".to_string(),
                vec!["invoice".to_string(), "hóa đơn".to_string()],
            ),
            ("speed".to_string(), vec!["slow".to_string()]),
        ]);
        let taxonomy = Arc::new(Taxonomy::new(&themes).unwrap());
        let udf = ScalarUDF::new_from_impl(CommentThemes::new(Arc::clone(&taxonomy)));
        for codec in [
            &LogicalCodec::default() as &dyn UdfCodec,
            &PhysicalCodec::default() as &dyn UdfCodec,
        ] {
            let mut buf = Vec::new();
            codec.encode(&udf, &mut buf).unwrap();
            assert!(buf.starts_with(TAXONOMY_TAG));
            let decoded = codec.decode("comment_themes", &buf).unwrap();
            let decoded = decoded.inner().downcast_ref::<CommentThemes>().unwrap();
            assert_eq!(decoded.taxonomy().as_ref(), taxonomy.as_ref());
            assert_ne!(decoded.taxonomy().as_ref(), &Taxonomy::built_in());
            assert_eq!(
                decoded.taxonomy().themes_of("the invoice was slow"),
                ["billing", "speed"]
            );
        }
    }

    #[test]
    fn other_functions_travel_by_name() {
        let codec = LogicalCodec::default();
        for udf in crate::engine::udf::scalar_udfs(Arc::new(Taxonomy::built_in())) {
            let mut buf = Vec::new();
            codec.try_encode_udf(&udf, &mut buf).unwrap();
            assert_eq!(
                buf.is_empty(),
                udf.name() != "comment_themes",
                "{}",
                udf.name()
            );
        }
        let unknown = codec
            .try_decode_udf("key_hash", &[])
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("same cskpi build"), "{unknown}");
    }

    #[test]
    fn in_memory_tables_round_trip_with_their_partitions() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("month", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
        ]));
        let batch = |months: &[&str], n: &[Option<i64>]| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(StringArray::from(months.to_vec())),
                    Arc::new(Int64Array::from(n.to_vec())),
                ],
            )
            .unwrap()
        };
        let partitions = vec![
            vec![
                batch(&["2026-01", "2026-02"], &[Some(1), None]),
                batch(&["2026-03"], &[Some(3)]),
            ],
            vec![],
            vec![batch(&["2026-04"], &[Some(-4)])],
        ];
        let table = Arc::new(MemTable::try_new(Arc::clone(&schema), partitions.clone()).unwrap());
        let codec = LogicalCodec::default();
        let mut buf = Vec::new();
        codec
            .try_encode_table_provider(&"months".into(), table, &mut buf)
            .unwrap();
        let decoded = codec
            .try_decode_table_provider(&buf, &"months".into(), Arc::clone(&schema), &task_context())
            .unwrap();
        let decoded = decoded.downcast_ref::<MemTable>().unwrap();
        let got: Vec<Vec<RecordBatch>> = decoded
            .batches
            .iter()
            .map(|p| p.try_read().unwrap().clone())
            .collect();
        assert_eq!(got, partitions);
        assert!(decode_mem_table(&buf[MEM_TABLE_TAG.len()..buf.len() - 3], schema).is_err());
    }

    /// The two codecs' UDF methods, for one test over both.
    trait UdfCodec {
        fn encode(&self, udf: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()>;
        fn decode(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>>;
    }

    impl UdfCodec for LogicalCodec {
        fn encode(&self, udf: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
            self.try_encode_udf(udf, buf)
        }
        fn decode(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
            self.try_decode_udf(name, buf)
        }
    }

    impl UdfCodec for PhysicalCodec {
        fn encode(&self, udf: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
            self.try_encode_udf(udf, buf)
        }
        fn decode(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
            self.try_decode_udf(name, buf)
        }
    }
}
