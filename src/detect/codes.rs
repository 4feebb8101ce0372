//! What the new-error-code rules remember for their baseline span (days, where the other
//! rules read hours): per series, when each error code occurred — as episodes, not windows —
//! and how many requests the series had per hour. "Was `content_filter` seen in the last
//! 7 days?" needs this much, not a week of window summaries.
//!
//! Occurrences closer together than the shortest baseline span (`gap`) merge into one
//! episode. That loses nothing the rules ask: a baseline range of at least `gap` contains an
//! occurrence exactly when it overlaps an episode (a range overlapping an episode but none of
//! its occurrences would be a gap of at least `gap` inside it).

use std::collections::BTreeMap;

/// Requests are counted per hour.
const HOUR_MS: i64 = 3_600_000;

/// The fields whose values are error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CodeField {
    ErrorType,
    /// HTTP statuses from 400 up (a new 2xx is not an error code).
    HttpStatus,
}

impl CodeField {
    pub const ALL: [CodeField; 2] = [CodeField::ErrorType, CodeField::HttpStatus];

    pub fn as_str(self) -> &'static str {
        match self {
            CodeField::ErrorType => "error_type",
            CodeField::HttpStatus => "http_status",
        }
    }

    /// Is `value` of this field an error code?
    pub fn is_code(self, value: &str) -> bool {
        match self {
            CodeField::ErrorType => !value.is_empty() && value != crate::window::sketch::OTHER_KEY,
            CodeField::HttpStatus => value.parse::<u16>().is_ok_and(|s| s >= 400),
        }
    }
}

/// One series' codes and traffic.
#[derive(Debug, Clone, Default)]
struct SeriesCodes {
    /// Hour start → requests.
    hours: BTreeMap<i64, u64>,
    /// Episodes `[first occurrence's window start, last occurrence's window end)`, sorted
    /// and separated by at least `gap`.
    codes: BTreeMap<(CodeField, String), Vec<(i64, i64)>>,
}

/// Per series: error-code episodes and requests per hour, for `retain_ms` behind the
/// newest window.
#[derive(Debug, Clone, Default)]
pub struct CodeMemory {
    gap_ms: i64,
    retain_ms: i64,
    series: BTreeMap<Vec<String>, SeriesCodes>,
}

impl CodeMemory {
    /// Off (`retain_ms` 0) unless some rule reads it.
    pub fn new(gap_ms: i64, retain_ms: i64) -> Self {
        Self {
            gap_ms: gap_ms.max(1),
            retain_ms: retain_ms.max(0),
            series: BTreeMap::new(),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.retain_ms > 0
    }

    /// Takes the settings of `other` (a rule reload), keeping the data. A shorter gap than
    /// the data was merged with can only make a code look seen, never new.
    pub fn set_retention_like(&mut self, other: &CodeMemory) {
        self.gap_ms = other.gap_ms;
        self.retain_ms = other.retain_ms;
        if !self.is_enabled() {
            self.series.clear();
        }
    }

    /// Records the window (or hour) `[start, end)` of `labels`: its requests and the codes
    /// that occurred in it (values that are not codes are ignored).
    pub fn observe<'a>(
        &mut self,
        labels: &[String],
        start: i64,
        end: i64,
        requests: u64,
        codes: impl IntoIterator<Item = (CodeField, &'a str)>,
    ) {
        if !self.is_enabled() {
            return;
        }
        let s = match self.series.get_mut(labels) {
            Some(s) => s,
            None => self.series.entry(labels.to_vec()).or_default(),
        };
        if requests > 0 {
            *s.hours
                .entry(start.div_euclid(HOUR_MS) * HOUR_MS)
                .or_default() += requests;
        }
        for (field, code) in codes {
            if !field.is_code(code) {
                continue;
            }
            let eps = match s.codes.get_mut(&(field, code.to_string())) {
                Some(e) => e,
                None => s.codes.entry((field, code.to_string())).or_default(),
            };
            insert(eps, start, end.max(start + 1), self.gap_ms);
        }
    }

    /// Forgets what ended `retain_ms` before `now_ms`.
    pub fn maintain(&mut self, now_ms: i64) {
        if !self.is_enabled() {
            return;
        }
        let keep_from = now_ms - self.retain_ms;
        for s in self.series.values_mut() {
            while let Some(e) = s.hours.first_entry() {
                if *e.key() + HOUR_MS > keep_from {
                    break;
                }
                e.remove();
            }
            s.codes.retain(|_, eps| {
                eps.retain(|(_, end)| *end > keep_from);
                !eps.is_empty()
            });
        }
        self.series
            .retain(|_, s| !s.hours.is_empty() || !s.codes.is_empty());
    }

    /// Did `code` occur in `labels` in a window starting in `[from, to)`? Exact for ranges
    /// at least `gap` long (see the module documentation).
    pub fn seen(
        &self,
        labels: &[String],
        field: CodeField,
        code: &str,
        from: i64,
        to: i64,
    ) -> bool {
        self.series
            .get(labels)
            .and_then(|s| s.codes.get(&(field, code.to_string())))
            .is_some_and(|eps| eps.iter().any(|(s, e)| *s < to && *e > from))
    }

    /// Requests of `labels` in the hours that end inside `(from, to]`: whole hours, none
    /// after `to` (so never the current range's), the count a baseline span needs before a
    /// code can be new in it.
    pub fn requests(&self, labels: &[String], from: i64, to: i64) -> u64 {
        let Some(s) = self.series.get(labels) else {
            return 0;
        };
        s.hours
            .range((from - HOUR_MS + 1)..=(to - HOUR_MS))
            .map(|(_, n)| *n)
            .sum()
    }

    /// Every series remembered (also those no longer in the window history).
    pub fn series(&self) -> impl Iterator<Item = &Vec<String>> {
        self.series.keys()
    }

    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Approximate heap use.
    pub fn approx_bytes(&self) -> usize {
        self.series
            .iter()
            .map(|(k, s)| {
                k.iter().map(|v| v.len() + 24).sum::<usize>()
                    + s.hours.len() * 40
                    + s.codes
                        .iter()
                        .map(|((_, c), eps)| c.len() + 48 + eps.len() * 16)
                        .sum::<usize>()
            })
            .sum()
    }
}

/// Adds `[start, end)` to the sorted episodes, merging every episode closer than `gap`.
fn insert(eps: &mut Vec<(i64, i64)>, start: i64, end: i64, gap: i64) {
    let near = |e: &(i64, i64)| e.0 - end < gap && start - e.1 < gap;
    let first = eps.partition_point(|e| e.1 + gap <= start);
    let mut merged = (start, end);
    let mut last = first;
    while last < eps.len() && near(&eps[last]) {
        merged = (merged.0.min(eps[last].0), merged.1.max(eps[last].1));
        last += 1;
    }
    eps.splice(first..last, std::iter::once(merged));
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    const DAY: i64 = 86_400_000;

    fn labels() -> Vec<String> {
        vec!["chat".into(), "gpt-4o".into()]
    }

    /// The episodes answer "seen in [from, to)" exactly as the occurrences do, for every
    /// range at least the gap long, whatever order the windows arrive in.
    #[test]
    fn episodes_answer_like_the_occurrences() {
        let gap = 60 * MIN;
        let mut mem = CodeMemory::new(gap, 30 * DAY);
        // Deterministic pseudo-random occurrence windows over 3 days, shuffled.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut windows: Vec<i64> = (0..4320).filter(|_| next() % 37 == 0).collect();
        for i in (1..windows.len()).rev() {
            windows.swap(i, (next() % (i as u64 + 1)) as usize);
        }
        for w in &windows {
            mem.observe(
                &labels(),
                w * MIN,
                (w + 1) * MIN,
                3,
                [(CodeField::ErrorType, "boom")],
            );
        }
        let eps = &mem.series[&labels()].codes[&(CodeField::ErrorType, "boom".into())];
        assert!(eps.windows(2).all(|p| p[1].0 - p[0].1 >= gap), "{eps:?}");
        for from in (0..4320).step_by(7) {
            for len in [60, 61, 90, 240, 1000] {
                let to = from + len;
                let want = windows.iter().any(|w| *w >= from && *w < to);
                let got = mem.seen(
                    &labels(),
                    CodeField::ErrorType,
                    "boom",
                    from * MIN,
                    to * MIN,
                );
                assert_eq!(got, want, "[{from}, {to}) min");
            }
        }
        assert!(!mem.seen(&labels(), CodeField::HttpStatus, "boom", 0, 4320 * MIN));
    }

    #[test]
    fn only_error_codes_are_remembered_and_old_ones_forgotten() {
        let mut mem = CodeMemory::new(DAY, 8 * DAY);
        let l = labels();
        mem.observe(
            &l,
            0,
            MIN,
            10,
            [
                (CodeField::HttpStatus, "200"),
                (CodeField::HttpStatus, "529"),
                (CodeField::HttpStatus, "n/a"),
                (CodeField::ErrorType, ""),
            ],
        );
        assert!(!mem.seen(&l, CodeField::HttpStatus, "200", 0, DAY));
        assert!(mem.seen(&l, CodeField::HttpStatus, "529", 0, DAY));
        assert!(!mem.seen(&l, CodeField::HttpStatus, "n/a", 0, DAY));
        for h in 0..48 {
            mem.observe(&l, h * HOUR_MS + MIN, h * HOUR_MS + 2 * MIN, 5, []);
        }
        // Hour 0 holds 10 + 5 requests; hours ending inside the range count.
        assert_eq!(mem.requests(&l, 0, HOUR_MS), 15);
        assert_eq!(mem.requests(&l, 0, 2 * DAY), 15 + 47 * 5);
        assert_eq!(mem.requests(&l, HOUR_MS / 2, 2 * HOUR_MS - 1), 15);
        assert_eq!(mem.requests(&l, HOUR_MS, 2 * HOUR_MS), 5);
        assert_eq!(mem.requests(&l, 0, HOUR_MS - 1), 0);
        mem.maintain(8 * DAY + HOUR_MS);
        assert!(!mem.seen(&l, CodeField::HttpStatus, "529", 0, DAY));
        assert_eq!(mem.requests(&l, 0, 2 * DAY), 47 * 5);
        mem.maintain(10 * DAY);
        assert_eq!(mem.series_count(), 0);
        let off = CodeMemory::new(DAY, 0);
        assert!(!off.is_enabled());
    }
}
