//! How the [`History`](crate::detect::history::History) stores a [`Summary`]: one packed
//! byte string instead of a struct of vectors and maps.
//!
//! A `Summary` is about 450 bytes of struct before its contents (five optional histograms,
//! six counters, the judge moments) and 16 bytes per histogram bucket; a busy series keeps
//! hundreds of them (window resolution for two hours, hourly roll-ups for a day, fast
//! slices). Packed, counts and bucket steps are LEB128 varints (one or two bytes each),
//! floats their 8 raw bytes (so every sum is restored bit for bit), and category and judge
//! names ids into the history's [`Interner`]. Unpacking gives back the same `Summary`
//! exactly, so merges and tests computed from packed summaries equal the unpacked ones.
//!
//! Layout: `requests errors fb0 fb1 fb2 since` then the sections `totals`, five histograms,
//! `judge` and `counts`, each prefixed by its length in bytes, so a read that wants only
//! some parts (see [`Parts`]) skips the others without decoding them.

use std::collections::HashMap;

use crate::detect::summary::{Parts, Summary, Totals};
use crate::window::sketch::{Counts, Moments, SparseHist};

/// Category and judge names, stored once per history.
#[derive(Debug, Clone, Default)]
pub struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    pub fn id(&mut self, name: &str) -> u32 {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        id
    }

    pub fn name(&self, id: u32) -> &str {
        // Ids only come from `id` of this interner.
        &self.names[id as usize]
    }

    pub fn approx_bytes(&self) -> usize {
        self.names.iter().map(|n| 2 * n.len() + 48).sum()
    }
}

/// A packed [`Summary`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Packed(Box<[u8]>);

impl Packed {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Packs `s`, naming categories and judges through `names`.
    pub fn pack(s: &Summary, names: &mut Interner) -> Packed {
        let mut out = Vec::with_capacity(64);
        for v in [
            s.requests,
            s.errors,
            s.feedback[0],
            s.feedback[1],
            s.feedback[2],
        ] {
            put(&mut out, v);
        }
        match s.since_ms {
            None => put(&mut out, 0),
            Some(t) => {
                put(&mut out, 1);
                put(&mut out, zigzag(t));
            }
        }
        section(&mut out, |b| pack_totals(b, &s.totals));
        for h in &s.hists {
            section(&mut out, |b| {
                if let Some(h) = h {
                    b.push(1);
                    b.extend_from_slice(&h.sum.to_le_bytes());
                    put(b, h.buckets.len() as u64);
                    let mut prev = 0u64;
                    for (v, n) in &h.buckets {
                        put(b, v - prev);
                        put(b, *n);
                        prev = *v;
                    }
                }
            });
        }
        section(&mut out, |b| {
            put(b, s.judge.len() as u64);
            for (name, m) in &s.judge {
                put(b, names.id(name) as u64);
                put_moments(b, m);
            }
        });
        section(&mut out, |b| {
            for c in counters(s) {
                put(b, c.0.len() as u64);
                for (k, n) in &c.0 {
                    put(b, names.id(k) as u64);
                    put(b, *n);
                }
            }
        });
        Packed(out.into_boxed_slice())
    }

    /// The summary with only `parts` unpacked (requests, errors, feedback, totals and
    /// `since_ms` always): what [`Summary::merge_parts`] with the same parts reads of it.
    pub fn unpack(&self, parts: Parts, names: &Interner) -> Summary {
        // Merged into nothing: every float added to zero, every count to none, is itself.
        let mut m = Merger::default();
        m.merge(self, parts, names);
        m.s
    }

    /// Everything.
    pub fn unpack_all(&self, names: &Interner) -> Summary {
        self.unpack(Parts::ALL, names)
    }
}

/// Merges packed summaries one after another without unpacking each into a [`Summary`]
/// first: the same result as [`Summary::merge_at`] of every unpacked one in the same order
/// (counts, floats, judge moments and categories are added in that order). Histogram
/// buckets are added in place as they are read; only buckets the merge has not seen yet
/// are collected and merged in, so a run of similar windows allocates nothing.
#[derive(Debug, Clone, Default)]
pub struct Merger {
    s: Summary,
    /// Buckets of the histogram being added that the merge did not hold yet.
    fresh: Vec<(u64, u64)>,
    any: bool,
}

impl Merger {
    /// Merges the `parts` of `p`, the window or slice starting at `start`.
    pub fn add(&mut self, start: i64, p: &Packed, parts: Parts, names: &Interner) {
        self.any = true;
        if self.merge(p, parts, names) > 0 {
            let s = &mut self.s;
            s.since_ms = Some(s.since_ms.map_or(start, |x| x.min(start)));
        }
    }

    /// Merges the `parts` of `p` (its counts always); returns its request count.
    fn merge(&mut self, p: &Packed, parts: Parts, names: &Interner) -> u64 {
        let s = &mut self.s;
        let mut r = Reader { b: &p.0, at: 0 };
        let requests = r.get();
        s.requests += requests;
        s.errors += r.get();
        for f in &mut s.feedback {
            *f += r.get();
        }
        let since = (r.get() == 1).then(|| unzigzag(r.get()));
        let mut t = r.section();
        s.totals.merge(&unpack_totals(&mut t));
        s.since_ms = match (s.since_ms, since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for (m, h) in s.hists.iter_mut().enumerate() {
            let mut hs = r.section();
            if parts.hists & (1 << m) == 0 || hs.done() {
                continue;
            }
            hs.at += 1;
            let sum = hs.f64();
            let h = h.get_or_insert_with(SparseHist::default);
            h.sum += sum;
            let acc = &mut h.buckets;
            let fresh = &mut self.fresh;
            fresh.clear();
            let mut i = 0;
            let mut prev = 0u64;
            for _ in 0..hs.get() {
                prev += hs.get();
                let n = hs.get();
                while i < acc.len() && acc[i].0 < prev {
                    i += 1;
                }
                match acc.get_mut(i) {
                    Some(b) if b.0 == prev => {
                        b.1 += n;
                        i += 1;
                    }
                    _ => fresh.push((prev, n)),
                }
            }
            merge_fresh(acc, fresh);
        }
        let mut js = r.section();
        if parts.judge {
            for _ in 0..js.get() {
                let name = names.name(js.get() as u32);
                let m = js.moments();
                match s.judge.get_mut(name) {
                    Some(e) => e.merge(&m),
                    None => {
                        let mut e = Moments::default();
                        e.merge(&m);
                        s.judge.insert(name.to_string(), e);
                    }
                }
            }
        }
        let mut cs = r.section();
        if parts.counts {
            for c in counters_mut(s) {
                for _ in 0..cs.get() {
                    let k = names.name(cs.get() as u32);
                    c.add(k, cs.get());
                }
            }
        }
        requests
    }

    /// The merge so far (`None` when nothing was added); adding goes on after.
    pub fn current(&self) -> Option<Summary> {
        self.any.then(|| self.s.clone())
    }

    /// The merge (`None` when nothing was added).
    pub fn finish(self) -> Option<Summary> {
        self.any.then_some(self.s)
    }
}

/// Merges `fresh` (sorted, none of its keys in `acc`) into the sorted `acc`, in place from
/// the back.
fn merge_fresh(acc: &mut Vec<(u64, u64)>, fresh: &[(u64, u64)]) {
    if fresh.is_empty() {
        return;
    }
    let old = acc.len();
    acc.extend_from_slice(fresh);
    let (mut i, mut j, mut k) = (old, fresh.len(), acc.len());
    while j > 0 {
        k -= 1;
        if i > 0 && acc[i - 1].0 > fresh[j - 1].0 {
            acc[k] = acc[i - 1];
            i -= 1;
        } else {
            acc[k] = fresh[j - 1];
            j -= 1;
        }
    }
}

fn counters(s: &Summary) -> [&Counts; 6] {
    [
        &s.error_types,
        &s.http_statuses,
        &s.finish_reasons,
        &s.query_types,
        &s.response_models,
        &s.system_fingerprints,
    ]
}

fn counters_mut(s: &mut Summary) -> [&mut Counts; 6] {
    [
        &mut s.error_types,
        &mut s.http_statuses,
        &mut s.finish_reasons,
        &mut s.query_types,
        &mut s.response_models,
        &mut s.system_fingerprints,
    ]
}

fn pack_totals(b: &mut Vec<u8>, t: &Totals) {
    // Mostly zero: a bit per field, then the ones that are not.
    let floats = [t.cost_usd, t.cache_savings_usd];
    let ints = [t.input_tokens, t.cached_input_tokens, t.near_context];
    let mut mask = 0u8;
    for (i, f) in floats.iter().enumerate() {
        if f.to_bits() != 0 {
            mask |= 1 << i;
        }
    }
    for (i, v) in ints.iter().enumerate() {
        if *v != 0 {
            mask |= 1 << (2 + i);
        }
    }
    if t.cache_read_share != Moments::default() {
        mask |= 1 << 5;
    }
    b.push(mask);
    for (i, f) in floats.iter().enumerate() {
        if mask & (1 << i) != 0 {
            b.extend_from_slice(&f.to_le_bytes());
        }
    }
    for (i, v) in ints.iter().enumerate() {
        if mask & (1 << (2 + i)) != 0 {
            put(b, *v);
        }
    }
    if mask & (1 << 5) != 0 {
        put_moments(b, &t.cache_read_share);
    }
}

fn unpack_totals(r: &mut Reader<'_>) -> Totals {
    let mask = r.byte();
    let mut t = Totals::default();
    let float = |r: &mut Reader<'_>, bit: u8| {
        if mask & (1 << bit) != 0 {
            r.f64()
        } else {
            0.0
        }
    };
    t.cost_usd = float(r, 0);
    t.cache_savings_usd = float(r, 1);
    let int = |r: &mut Reader<'_>, bit: u8| {
        if mask & (1 << bit) != 0 {
            r.get()
        } else {
            0
        }
    };
    t.input_tokens = int(r, 2);
    t.cached_input_tokens = int(r, 3);
    t.near_context = int(r, 4);
    if mask & (1 << 5) != 0 {
        t.cache_read_share = r.moments();
    }
    t
}

fn put_moments(b: &mut Vec<u8>, m: &Moments) {
    put(b, m.n);
    b.extend_from_slice(&m.mean.to_le_bytes());
    b.extend_from_slice(&m.m2.to_le_bytes());
}

/// Appends what `f` writes, prefixed by its length.
fn section(out: &mut Vec<u8>, f: impl FnOnce(&mut Vec<u8>)) {
    let mut b = Vec::new();
    f(&mut b);
    put(out, b.len() as u64);
    out.extend_from_slice(&b);
}

fn put(b: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        b.push((v as u8) | 0x80);
        v >>= 7;
    }
    b.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Reads what [`Packed::pack`] wrote (never anything else: no input from outside).
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.at >= self.b.len()
    }

    fn byte(&mut self) -> u8 {
        let v = self.b[self.at];
        self.at += 1;
        v
    }

    fn get(&mut self) -> u64 {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let byte = self.byte();
            v |= ((byte & 0x7f) as u64) << shift;
            if byte < 0x80 {
                return v;
            }
            shift += 7;
        }
    }

    fn f64(&mut self) -> f64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&self.b[self.at..self.at + 8]);
        self.at += 8;
        f64::from_le_bytes(a)
    }

    fn moments(&mut self) -> Moments {
        Moments {
            n: self.get(),
            mean: self.f64(),
            m2: self.f64(),
        }
    }

    /// The next length-prefixed section, skipped in this reader.
    fn section(&mut self) -> Reader<'a> {
        let n = self.get() as usize;
        let s = Reader {
            b: &self.b[self.at..self.at + n],
            at: 0,
        };
        self.at += n;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Feedback, RequestEvent, Status};
    use crate::window::sketch::WindowSketch;
    use rand::{Rng, SeedableRng};

    fn summary(seed: u64) -> Summary {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut w = WindowSketch::default();
        for i in 0..rng.random_range(0..400) {
            let ev = RequestEvent {
                latency_ms: rng.random_range(1.0..90_000.0),
                input_tokens: Some(rng.random_range(0..200_000)),
                output_tokens: Some(rng.random_range(0..4000)),
                cost_usd: Some(rng.random_range(0.0..0.3)),
                cached_input_tokens: Some(rng.random_range(0..100)),
                status: if rng.random_bool(0.1) {
                    Status::Error
                } else {
                    Status::Ok
                },
                error_type: Some(format!("e{}", rng.random_range(0..5))),
                http_status: Some(rng.random_range(200..600)),
                response_model: Some(format!("m{}", rng.random_range(0..3))),
                judge_scores: vec![
                    ("faithfulness".into(), rng.random()),
                    (format!("j{}", rng.random_range(0..3)), rng.random()),
                ],
                feedback: Some(match rng.random_range(0..3) {
                    0 => Feedback::Negative,
                    1 => Feedback::Neutral,
                    _ => Feedback::Positive,
                }),
                finish_reason: Some(format!("f{}", rng.random_range(0..2))),
                system_fingerprint: Some(format!("fp{}", rng.random_range(0..2))),
                ..Default::default()
            };
            w.observe(&ev, 0, i);
        }
        let mut s = Summary::from_sketch(&w, &[0, 2, 3, 4].into());
        s.since_ms = rng.random_bool(0.5).then(|| rng.random_range(-5..1 << 45));
        s
    }

    #[test]
    fn unpacking_gives_back_the_summary_bit_for_bit() {
        let mut names = Interner::default();
        for seed in 0..50 {
            let s = summary(seed);
            let p = Packed::pack(&s, &mut names);
            assert_eq!(p.unpack_all(&names), s, "seed {seed}");
            // Sums restored to the bit, not only equal as floats.
            for (a, b) in p.unpack_all(&names).hists.iter().zip(&s.hists) {
                assert_eq!(
                    a.as_ref().map(|h| h.sum.to_bits()),
                    b.as_ref().map(|h| h.sum.to_bits())
                );
            }
        }
        assert_eq!(
            Packed::pack(&Summary::default(), &mut names).unpack_all(&names),
            Summary::default()
        );
    }

    #[test]
    fn a_partial_unpack_merges_like_the_whole_summary() {
        let mut names = Interner::default();
        let parts = [
            Parts::ALL,
            Parts::COUNTS_ONLY,
            Parts {
                hists: 0b100,
                counts: false,
                judge: true,
            },
            Parts {
                hists: 0b1,
                counts: true,
                judge: false,
            },
        ];
        for seed in 0..20 {
            let (a, b) = (summary(seed), summary(seed + 100));
            let pb = Packed::pack(&b, &mut names);
            for p in parts {
                let mut want = a.clone();
                want.merge_parts(&b, p);
                let mut got = a.clone();
                got.merge_parts(&pb.unpack(p, &names), p);
                assert_eq!(got, want, "seed {seed} {p:?}");
            }
        }
    }

    #[test]
    fn the_merger_equals_merging_unpacked_summaries_one_by_one() {
        let mut names = Interner::default();
        let parts = [
            Parts::ALL,
            Parts::COUNTS_ONLY,
            Parts {
                hists: 0b1101,
                counts: false,
                judge: true,
            },
        ];
        for seed in 0..10 {
            let packed: Vec<(i64, Packed)> = (0..12)
                .map(|i| {
                    let mut s = summary(seed * 100 + i);
                    if i % 5 == 3 {
                        // summaries without requests do not move `since_ms`
                        s.requests = 0;
                    }
                    (i as i64 * 60_000, Packed::pack(&s, &mut names))
                })
                .collect();
            for p in parts {
                let mut want: Option<Summary> = None;
                let mut m = Merger::default();
                for (k, (start, x)) in packed.iter().enumerate() {
                    want.get_or_insert_with(Summary::default).merge_at(
                        *start,
                        &x.unpack(p, &names),
                        p,
                    );
                    m.add(*start, x, p, &names);
                    if k == 4 {
                        assert_eq!(m.current(), want, "seed {seed} {p:?} after 5");
                    }
                }
                let got = m.finish();
                assert_eq!(got, want, "seed {seed} {p:?}");
                let bits = |s: &Option<Summary>| -> Vec<Option<u64>> {
                    s.as_ref()
                        .unwrap()
                        .hists
                        .iter()
                        .map(|h| h.as_ref().map(|h| h.sum.to_bits()))
                        .collect()
                };
                assert_eq!(bits(&got), bits(&want));
            }
        }
        assert_eq!(Merger::default().finish(), None);
    }

    #[test]
    fn packed_is_a_fraction_of_the_struct() {
        let mut names = Interner::default();
        let s = summary(7);
        let buckets: usize = s.hists.iter().flatten().map(|h| h.buckets.len()).sum();
        let p = Packed::pack(&s, &mut names);
        let unpacked = std::mem::size_of::<Summary>() + 16 * buckets;
        assert!(
            p.len() * 3 < unpacked,
            "{} packed vs {unpacked} bytes",
            p.len()
        );
    }
}
