//! Aggregate UDFs over survey scores: `nps(score)`, `nps_moe(score)` and
//! `csat(score[, positive_min])`, with the formulas of spec 4.5. They count
//! answers per class (promoters / passives / detractors, or positive /
//! other), so partial states merge exactly; the groups accumulator keeps one
//! row of counters per group, which is what makes GROUP BY over many groups
//! fast. Null scores are ignored; no scores gives null. They take every
//! score given: the latest-response-per-customer rule of the run is the
//! view `nps_responses`, which an analyst aggregates with `nps(score)`.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Builder, Int64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, TypeSignature, Volatility,
};

/// `csat.positive_min` of the spec, used when `csat` gets no second argument.
pub const DEFAULT_CSAT_POSITIVE_MIN: f64 = 4.0;

/// The counters a score falls into: three for NPS, two for CSAT.
const SLOTS: usize = 3;
type Counts = [i64; SLOTS];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScoreKpi {
    Nps,
    NpsMoe,
    Csat,
}

impl ScoreKpi {
    fn name(self) -> &'static str {
        match self {
            Self::Nps => "nps",
            Self::NpsMoe => "nps_moe",
            Self::Csat => "csat",
        }
    }

    fn slot_names(self) -> &'static [&'static str] {
        match self {
            Self::Nps | Self::NpsMoe => &["promoters", "passives", "detractors"],
            Self::Csat => &["positive", "other"],
        }
    }

    /// The counter a score goes to (`threshold` only matters for CSAT).
    fn slot(self, score: f64, threshold: f64) -> usize {
        match self {
            Self::Nps | Self::NpsMoe if score >= 9.0 => 0,
            Self::Nps | Self::NpsMoe if score >= 7.0 => 1,
            Self::Nps | Self::NpsMoe => 2,
            Self::Csat if score >= threshold => 0,
            Self::Csat => 1,
        }
    }

    fn finish(self, counts: &Counts) -> Option<f64> {
        let responses: i64 = counts.iter().sum();
        if responses == 0 {
            return None;
        }
        let n = responses as f64;
        let [first, _, third] = counts.map(|c| c as f64);
        Some(match self {
            Self::Nps => 100.0 * (first - third) / n,
            Self::NpsMoe => {
                let (p, d) = (first / n, third / n);
                let variance = (p + d - ((first - third) / n).powi(2)).max(0.0);
                196.0 * (variance / n).sqrt()
            }
            Self::Csat => 100.0 * first / n,
        })
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ScoreAggregate {
    kpi: ScoreKpi,
    signature: Signature,
}

impl ScoreAggregate {
    pub fn new(kpi: ScoreKpi) -> Self {
        let score = TypeSignature::Exact(vec![DataType::Float64]);
        let signature = match kpi {
            ScoreKpi::Nps | ScoreKpi::NpsMoe => Signature::new(score, Volatility::Immutable),
            ScoreKpi::Csat => Signature::one_of(
                vec![
                    score,
                    TypeSignature::Exact(vec![DataType::Float64, DataType::Float64]),
                ],
                Volatility::Immutable,
            ),
        };
        Self { kpi, signature }
    }
}

impl AggregateUDFImpl for ScoreAggregate {
    fn name(&self) -> &str {
        self.kpi.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(ScoreAccumulator {
            kpi: self.kpi,
            counts: Counts::default(),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(self
            .kpi
            .slot_names()
            .iter()
            .map(|slot| {
                Arc::new(Field::new(
                    format_state_name(args.name, slot),
                    DataType::Int64,
                    false,
                ))
            })
            .collect())
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        _args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(ScoreGroupsAccumulator {
            kpi: self.kpi,
            counts: Vec::new(),
        }))
    }
}

/// The scores of a batch, row by row: (row, slot) of every counted row.
fn classified<'a>(
    kpi: ScoreKpi,
    values: &'a [ArrayRef],
    filter: Option<&'a BooleanArray>,
) -> Result<impl Iterator<Item = (usize, usize)> + 'a> {
    let Some(scores) = values.first() else {
        return exec_err!("{} takes a score argument", kpi.name());
    };
    let scores = scores.as_primitive::<Float64Type>();
    let thresholds = values.get(1).map(|t| t.as_primitive::<Float64Type>());
    Ok((0..scores.len()).filter_map(move |row| {
        if filter.is_some_and(|f| !f.is_valid(row) || !f.value(row)) || scores.is_null(row) {
            return None;
        }
        let threshold = match thresholds {
            Some(t) if t.is_null(row) => return None,
            Some(t) => t.value(row),
            None => DEFAULT_CSAT_POSITIVE_MIN,
        };
        Some((row, kpi.slot(scores.value(row), threshold)))
    }))
}

fn state_arrays(kpi: ScoreKpi, counts: &[Counts]) -> Vec<ArrayRef> {
    (0..kpi.slot_names().len())
        .map(|slot| Arc::new(counts.iter().map(|c| c[slot]).collect::<Int64Array>()) as ArrayRef)
        .collect()
}

#[derive(Debug)]
struct ScoreAccumulator {
    kpi: ScoreKpi,
    counts: Counts,
}

impl ScoreAccumulator {
    fn count(&mut self, values: &[ArrayRef], sign: i64) -> Result<()> {
        for (_, slot) in classified(self.kpi, values, None)? {
            self.counts[slot] += sign;
        }
        Ok(())
    }
}

impl Accumulator for ScoreAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.count(values, 1)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.count(values, -1)
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(self.kpi.finish(&self.counts)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let slots = self.kpi.slot_names().len();
        Ok(self.counts[..slots]
            .iter()
            .map(|c| ScalarValue::Int64(Some(*c)))
            .collect())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for (slot, state) in states.iter().enumerate() {
            let state = state.as_primitive::<Int64Type>();
            self.counts[slot] += state.iter().flatten().sum::<i64>();
        }
        Ok(())
    }
}

struct ScoreGroupsAccumulator {
    kpi: ScoreKpi,
    counts: Vec<Counts>,
}

impl GroupsAccumulator for ScoreGroupsAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.counts.resize(total_num_groups, Counts::default());
        for (row, slot) in classified(self.kpi, values, opt_filter)? {
            self.counts[group_indices[row]][slot] += 1;
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let counts = emit_to.take_needed(&mut self.counts);
        let mut out = Float64Builder::with_capacity(counts.len());
        for c in &counts {
            out.append_option(self.kpi.finish(c));
        }
        Ok(Arc::new(out.finish()) as ArrayRef)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let counts = emit_to.take_needed(&mut self.counts);
        Ok(state_arrays(self.kpi, &counts))
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.counts.resize(total_num_groups, Counts::default());
        for (slot, state) in values.iter().enumerate() {
            let state = state.as_primitive::<Int64Type>();
            for (row, &group) in group_indices.iter().enumerate() {
                if state.is_valid(row) {
                    self.counts[group][slot] += state.value(row);
                }
            }
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let mut counts = vec![Counts::default(); values.first().map_or(0, |v| v.len())];
        for (row, slot) in classified(self.kpi, values, opt_filter)? {
            counts[row][slot] = 1;
        }
        Ok(state_arrays(self.kpi, &counts))
    }

    fn size(&self) -> usize {
        self.counts.capacity() * std::mem::size_of::<Counts>()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Float64Array;

    use super::*;

    fn counts_of(kpi: ScoreKpi, scores: &[f64]) -> Counts {
        let mut c = Counts::default();
        for &s in scores {
            c[kpi.slot(s, DEFAULT_CSAT_POSITIVE_MIN)] += 1;
        }
        c
    }

    #[test]
    fn nps_and_its_margin_by_hand() {
        // 10, 9, 8, 6, 3: 2 promoters, 1 passive, 2 detractors -> NPS 0;
        // p = d = 0.4: moe = 196 * sqrt((0.8 - 0) / 5) = 196 * 0.4 = 78.4.
        let c = counts_of(ScoreKpi::Nps, &[10.0, 9.0, 8.0, 6.0, 3.0]);
        assert_eq!(c, [2, 1, 2]);
        assert_eq!(ScoreKpi::Nps.finish(&c), Some(0.0));
        let moe = ScoreKpi::NpsMoe.finish(&c).unwrap();
        assert!((moe - 78.4).abs() < 1e-9, "{moe}");
        assert_eq!(ScoreKpi::Nps.finish(&Counts::default()), None);
    }

    #[test]
    fn unanimous_answers_have_no_margin() {
        for scores in [[10.0, 9.0], [0.0, 6.0], [7.0, 8.0]] {
            let c = counts_of(ScoreKpi::NpsMoe, &scores);
            assert_eq!(ScoreKpi::NpsMoe.finish(&c), Some(0.0), "{scores:?}");
        }
    }

    #[test]
    fn csat_counts_scores_at_or_above_the_threshold() {
        let c = counts_of(ScoreKpi::Csat, &[5.0, 4.0, 3.0, 1.0]);
        assert_eq!(ScoreKpi::Csat.finish(&c), Some(50.0));
        assert_eq!(ScoreKpi::Csat.slot(4.0, 5.0), 1);
    }

    #[test]
    fn convert_to_state_counts_each_row_once_and_skips_nulls_and_filtered_rows() {
        let acc = ScoreGroupsAccumulator {
            kpi: ScoreKpi::Nps,
            counts: Vec::new(),
        };
        let scores: ArrayRef = Arc::new(Float64Array::from(vec![Some(10.0), None, Some(2.0)]));
        let filter = BooleanArray::from(vec![true, true, false]);
        let state = acc.convert_to_state(&[scores], Some(&filter)).unwrap();
        let promoters = state[0].as_primitive::<Int64Type>();
        let detractors = state[2].as_primitive::<Int64Type>();
        assert_eq!(promoters.values(), &[1, 0, 0]);
        assert_eq!(detractors.values(), &[0, 0, 0]);
    }
}
