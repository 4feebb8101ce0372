//! `hist_merge` and `hist_quantile`: exact merges and quantiles of the stored HDR
//! histograms, decoded straight from their V2 encoding.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, Float64Array};
use arrow::datatypes::DataType;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    create_udf, Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, EmitTo,
    GroupsAccumulator, ScalarUDF, Signature, Volatility,
};
use datafusion::scalar::ScalarValue;
use hdrhistogram::serialization::{Serializer as _, V2Serializer};
use hdrhistogram::Histogram;

fn new_hist() -> Histogram<u64> {
    Histogram::new(crate::window::sketch::HIST_SIGFIG).expect("a valid significant-figure count")
}

fn encode(h: &Histogram<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail for a valid histogram.
    let _ = V2Serializer::new().serialize(h, &mut out);
    out
}

fn decode(bytes: &[u8], who: &str) -> Result<Histogram<u64>, DataFusionError> {
    crate::window::sketch::deserialize_hist(bytes).map_err(|e| {
        DataFusionError::Execution(format!(
            "{who}: the value is not an HDR histogram (V2 encoding, as the *_hist columns): {e:?}"
        ))
    })
}

/// The V2 encoding's cookie (uncompressed).
const V2_COOKIE: u32 = 0x1c84_9303 | 0x10;
/// HDR layout of driftwatch's histograms (2 significant digits, lowest value 1): counts
/// index `i` covers the values from `value_for(i)`; 128 = the sub-bucket half count.
const HALF_COUNT_MAGNITUDE: u32 = 7;
const HALF_COUNT: usize = 1 << HALF_COUNT_MAGNITUDE;

/// The lowest value of counts index `i` (hdrhistogram's `value_for` for this layout).
fn value_for(i: usize) -> u64 {
    let bucket = (i >> HALF_COUNT_MAGNITUDE) as i64 - 1;
    let sub = (i & (HALF_COUNT - 1)) + HALF_COUNT;
    if bucket < 0 {
        (sub - HALF_COUNT) as u64
    } else {
        (sub as u64) << bucket
    }
}

/// Adds the counts of a V2-encoded histogram to `counts` (by HDR index) without building a
/// histogram per row: the fast path of `hist_merge`. `None` when the encoding is not
/// driftwatch's layout (the caller then decodes it the slow way).
fn add_v2_counts(bytes: &[u8], counts: &mut Vec<u64>) -> Option<()> {
    let be32 = |i: usize| -> Option<u32> {
        Some(u32::from_be_bytes(bytes.get(i..i + 4)?.try_into().ok()?))
    };
    let be64 = |i: usize| -> Option<u64> {
        Some(u64::from_be_bytes(bytes.get(i..i + 8)?.try_into().ok()?))
    };
    if be32(0)? != V2_COOKIE || be32(8)? != 0 || be32(12)? != 2 || be64(16)? != 1 {
        return None;
    }
    if f64::from_bits(be64(32)?) != 1.0 {
        return None;
    }
    let len = be32(4)? as usize;
    let payload = bytes.get(40..40 + len)?;
    let (mut i, mut index) = (0usize, 0usize);
    while i < payload.len() {
        let mut v: u64 = 0;
        let mut shift = 0;
        loop {
            let b = *payload.get(i)?;
            i += 1;
            if shift == 56 {
                v |= u64::from(b) << 56;
                break;
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        let n = ((v >> 1) as i64) ^ -((v & 1) as i64);
        if n < 0 {
            index = index.checked_add(n.unsigned_abs() as usize)?;
        } else {
            // Values up to 2^63 fit in fewer than 8,000 indexes.
            if index >= 8192 {
                return None;
            }
            if index >= counts.len() {
                counts.resize(index + 1, 0);
            }
            counts[index] += n as u64;
            index += 1;
        }
    }
    Some(())
}

/// The V2 encoding of a histogram in driftwatch's layout with `counts` by HDR index: the
/// inverse of [`add_v2_counts`], byte for byte what HdrHistogram's V2 serializer writes for
/// an auto-resizing histogram (zero runs as negative lengths, ZigZag LEB128 of up to 9 bytes).
fn encode_counts_v2(counts: &[u64]) -> Vec<u8> {
    fn put(out: &mut Vec<u8>, n: i64) {
        let mut v = ((n << 1) ^ (n >> 63)) as u64;
        for _ in 0..8 {
            if v < 0x80 {
                out.push(v as u8);
                return;
            }
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let last = counts.iter().rposition(|c| *c > 0);
    let mut payload = Vec::new();
    if let Some(last) = last {
        let mut zeros: i64 = 0;
        for &c in &counts[..=last] {
            if c == 0 {
                zeros += 1;
                continue;
            }
            if zeros > 0 {
                put(&mut payload, if zeros == 1 { 0 } else { -zeros });
                zeros = 0;
            }
            put(&mut payload, c.min(i64::MAX as u64) as i64);
        }
    }
    // The highest trackable value covers the last index (and the layout's minimum of 2).
    let highest = last.map_or(2, |l| value_for(l + 1).max(2));
    let mut out = Vec::with_capacity(40 + payload.len());
    out.extend_from_slice(&V2_COOKIE.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&(crate::window::sketch::HIST_SIGFIG as u32).to_be_bytes());
    out.extend_from_slice(&1u64.to_be_bytes());
    out.extend_from_slice(&highest.to_be_bytes());
    out.extend_from_slice(&1.0f64.to_bits().to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

/// `hist_merge(hist)`: merges HDR histograms exactly.
#[derive(Debug)]
struct HistMerge {
    /// Counts by HDR index, for histograms in driftwatch's layout.
    counts: Vec<u64>,
    /// Anything else, merged the general way.
    other: Option<Histogram<u64>>,
    any: bool,
}

impl HistMerge {
    fn new() -> Self {
        HistMerge {
            counts: Vec::new(),
            other: None,
            any: false,
        }
    }

    fn add_all(&mut self, values: &ArrayRef) -> Result<(), DataFusionError> {
        let arr: &BinaryArray = values.as_binary::<i32>();
        for i in 0..arr.len() {
            if !arr.is_null(i) {
                self.add(arr.value(i))?;
            }
        }
        Ok(())
    }

    fn add(&mut self, bytes: &[u8]) -> Result<(), DataFusionError> {
        self.any = true;
        if add_v2_counts(bytes, &mut self.counts).is_some() {
            return Ok(());
        }
        let h = decode(bytes, "hist_merge")?;
        let acc = self.other.get_or_insert_with(new_hist);
        // Auto-resizing histograms of one precision always add.
        acc.add(&h).map_err(|e| {
            DataFusionError::Execution(format!("hist_merge: histograms do not merge: {e:?}"))
        })
    }

    fn histogram(&self) -> Result<Option<Histogram<u64>>, DataFusionError> {
        if !self.any {
            return Ok(None);
        }
        let mut h = self.other.clone().unwrap_or_else(new_hist);
        for (i, c) in self.counts.iter().enumerate().filter(|(_, c)| **c > 0) {
            h.record_n(value_for(i), *c).map_err(|e| {
                DataFusionError::Execution(format!("hist_merge: value out of range: {e:?}"))
            })?;
        }
        Ok(Some(h))
    }
}

impl Accumulator for HistMerge {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<(), DataFusionError> {
        self.add_all(&values[0])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<(), DataFusionError> {
        self.add_all(&states[0])
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>, DataFusionError> {
        Ok(vec![self.evaluate()?])
    }

    fn evaluate(&mut self) -> Result<ScalarValue, DataFusionError> {
        if self.any && self.other.is_none() {
            // Encoded straight from the counts: no histogram built per group.
            return Ok(ScalarValue::Binary(Some(encode_counts_v2(&self.counts))));
        }
        Ok(ScalarValue::Binary(self.histogram()?.as_ref().map(encode)))
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.counts.capacity() * std::mem::size_of::<u64>()
            + self
                .other
                .as_ref()
                .map_or(0, |h| h.distinct_values() * std::mem::size_of::<u64>())
    }
}

/// `hist_merge` for many groups at once: rows go straight to their group's counts, without
/// an accumulator call per group and batch.
#[derive(Debug, Default)]
struct HistMergeGroups {
    groups: Vec<HistMerge>,
}

impl HistMergeGroups {
    fn add(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&arrow::array::BooleanArray>,
        total_num_groups: usize,
    ) -> Result<(), DataFusionError> {
        if self.groups.len() < total_num_groups {
            self.groups.resize_with(total_num_groups, HistMerge::new);
        }
        let arr: &BinaryArray = values[0].as_binary::<i32>();
        for (row, &g) in group_indices.iter().enumerate() {
            if opt_filter.is_some_and(|f| !f.is_valid(row) || !f.value(row)) || arr.is_null(row) {
                continue;
            }
            self.groups[g].add(arr.value(row))?;
        }
        Ok(())
    }
}

impl GroupsAccumulator for HistMergeGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&arrow::array::BooleanArray>,
        total_num_groups: usize,
    ) -> Result<(), DataFusionError> {
        self.add(values, group_indices, opt_filter, total_num_groups)
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<(), DataFusionError> {
        self.add(values, group_indices, None, total_num_groups)
    }

    /// Each row's histogram is already a state of one row.
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&arrow::array::BooleanArray>,
    ) -> Result<Vec<ArrayRef>, DataFusionError> {
        let arr: &BinaryArray = values[0].as_binary::<i32>();
        let kept: BinaryArray = (0..arr.len())
            .map(|i| {
                let keep = opt_filter.is_none_or(|f| f.is_valid(i) && f.value(i));
                (keep && arr.is_valid(i)).then(|| arr.value(i))
            })
            .collect();
        Ok(vec![Arc::new(kept)])
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef, DataFusionError> {
        let mut out = arrow::array::BinaryBuilder::new();
        for mut g in emit_to.take_needed(&mut self.groups) {
            match g.evaluate()? {
                ScalarValue::Binary(Some(b)) => out.append_value(b),
                _ => out.append_null(),
            }
        }
        Ok(Arc::new(out.finish()))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>, DataFusionError> {
        Ok(vec![self.evaluate(emit_to)?])
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>() + self.groups.iter().map(Accumulator::size).sum::<usize>()
    }
}

/// The `hist_merge` aggregate (its state is a histogram too).
#[derive(Debug, PartialEq, Eq, Hash)]
struct HistMergeUdaf {
    signature: Signature,
}

impl AggregateUDFImpl for HistMergeUdaf {
    fn name(&self) -> &str {
        "hist_merge"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType, DataFusionError> {
        Ok(DataType::Binary)
    }

    fn accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn Accumulator>, DataFusionError> {
        Ok(Box::new(HistMerge::new()))
    }

    fn state_fields(
        &self,
        args: StateFieldsArgs,
    ) -> Result<Vec<arrow::datatypes::FieldRef>, DataFusionError> {
        Ok(vec![Arc::new(arrow::datatypes::Field::new(
            format!("{}[hist]", args.name),
            DataType::Binary,
            true,
        ))])
    }

    fn groups_accumulator_supported(&self, _: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        _: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>, DataFusionError> {
        Ok(Box::new(HistMergeGroups::default()))
    }
}

/// The `hist_merge` aggregate.
pub fn hist_merge() -> AggregateUDF {
    AggregateUDF::from(HistMergeUdaf {
        signature: Signature::exact(vec![DataType::Binary], Volatility::Immutable),
    })
}

fn quantile_of(bytes: &[u8], q: f64) -> Result<Option<f64>, DataFusionError> {
    if !(0.0..=1.0).contains(&q) {
        return Err(DataFusionError::Execution(format!(
            "hist_quantile: q must be between 0 and 1, got {q}"
        )));
    }
    let h = decode(bytes, "hist_quantile")?;
    Ok((!h.is_empty()).then(|| h.value_at_quantile(q) as f64))
}

/// The `hist_quantile` function.
pub fn hist_quantile() -> ScalarUDF {
    create_udf(
        "hist_quantile",
        vec![DataType::Binary, DataType::Float64],
        DataType::Float64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            if let (ColumnarValue::Scalar(h), ColumnarValue::Scalar(q)) = (&args[0], &args[1]) {
                let v = match (h, q) {
                    (ScalarValue::Binary(Some(b)), ScalarValue::Float64(Some(q))) => {
                        quantile_of(b, *q)?
                    }
                    _ => None,
                };
                return Ok(ColumnarValue::Scalar(ScalarValue::Float64(v)));
            }
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let hs = arrays[0].as_binary::<i32>();
            let qs = arrays[1].as_primitive::<arrow::datatypes::Float64Type>();
            let out: Float64Array = (0..hs.len())
                .map(|i| {
                    if hs.is_null(i) || qs.is_null(i) {
                        Ok(None)
                    } else {
                        quantile_of(hs.value(i), qs.value(i))
                    }
                })
                .collect::<Result<_, DataFusionError>>()?;
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist_of(values: &[u64]) -> Vec<u8> {
        let mut h = new_hist();
        for v in values {
            h.record(*v).unwrap();
        }
        encode(&h)
    }

    #[test]
    fn counts_encode_as_hdrhistogram_reads_them() {
        // Sparse values over a wide range: zero runs of 1 and many, large counts.
        let mut h = new_hist();
        for (v, n) in [
            (1u64, 3u64),
            (3, 1),
            (130, 7),
            (131, 1),
            (5_000, 2),
            (3_600_000_000, 9),
        ] {
            h.record_n(v, n).unwrap();
        }
        h.record_n(77, 1 << 40).unwrap();
        let mut counts = Vec::new();
        add_v2_counts(&encode(&h), &mut counts).unwrap();
        let bytes = encode_counts_v2(&counts);
        let back = crate::window::sketch::deserialize_hist(&bytes).unwrap();
        assert_eq!(back.len(), h.len());
        let a: Vec<(u64, u64)> = h
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        let b: Vec<(u64, u64)> = back
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        assert_eq!(a, b);
        let mut again = Vec::new();
        add_v2_counts(&bytes, &mut again).unwrap();
        assert_eq!(again, counts);
    }

    #[test]
    fn merging_histograms_equals_recording_everything_in_one() {
        let a: Vec<u64> = (1..=500).collect();
        let b: Vec<u64> = (400..=2000).step_by(3).collect();
        let mut acc = HistMerge::new();
        let arr: ArrayRef = Arc::new(BinaryArray::from(vec![
            Some(hist_of(&a).as_slice()),
            None,
            Some(hist_of(&b).as_slice()),
        ]));
        acc.update_batch(&[arr]).unwrap();
        let ScalarValue::Binary(Some(merged)) = acc.evaluate().unwrap() else {
            panic!("no histogram")
        };
        let all: Vec<u64> = a.iter().chain(&b).copied().collect();
        let one = crate::window::sketch::deserialize_hist(&hist_of(&all)).unwrap();
        let m = crate::window::sketch::deserialize_hist(&merged).unwrap();
        assert_eq!(m.len(), one.len());
        for q in [0.5, 0.9, 0.99, 0.999] {
            assert_eq!(m.value_at_quantile(q), one.value_at_quantile(q));
            assert_eq!(
                quantile_of(&merged, q).unwrap(),
                Some(one.value_at_quantile(q) as f64)
            );
        }
        assert!(quantile_of(&merged, 1.5).is_err());
        // The fast path decodes exactly what hdrhistogram encodes, at every magnitude.
        let wide: Vec<u64> = (0..60)
            .map(|k| 1u64 << k)
            .chain([0, 1, 127, 128, 255, 256, 12_345_678])
            .collect();
        let mut counts = Vec::new();
        add_v2_counts(&hist_of(&wide), &mut counts).unwrap();
        let mut h = new_hist();
        for (i, c) in counts.iter().enumerate().filter(|(_, c)| **c > 0) {
            h.record_n(value_for(i), *c).unwrap();
        }
        let expect = crate::window::sketch::deserialize_hist(&hist_of(&wide)).unwrap();
        assert_eq!(h.len(), expect.len());
        for q in [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0] {
            assert_eq!(h.value_at_quantile(q), expect.value_at_quantile(q), "q={q}");
        }
        assert!(decode(b"not a histogram", "t").is_err());
    }
}
