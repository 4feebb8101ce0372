//! Rule files: the YAML rule language, its validation and the compiled [`Rule`].
//!
//! A rule file holds `rules:`, a list of rules. Each rule names a signal (a statistic of a
//! series over a range of closed windows), the current range (`over`), a baseline (a trailing
//! range, a peer series or a fixed value), a condition on the effect with a recovery
//! threshold, an optional significance test, minimum sample counts, `for` /
//! `keep_firing_for`, severity, labels, annotation templates and channels. See
//! docs/rules.md for the language and `rules/` for the defaults.
//!
//! Loading never stops at the first problem: every error names the file, line, rule and
//! field, and says what to write instead.
//!
//! The rules own the language and nothing that runs it: `spec` (the types, as written and as
//! compiled), `error` ([`RuleError`]), `load` (files, YAML), `validate` (checks against the
//! [`RuleContext`]) and `template` (label and annotation templates). They hand on a
//! [`RuleSet`] of validated [`Rule`]s, plus `template_parts` for rendering, to the
//! evaluation, alert and breaker stages; they import none of those.

mod error;
mod load;
mod spec;
mod template;
mod validate;

pub use error::RuleError;
pub use load::{load_dir, load_texts, parse_file, BUILTIN_RULES};
pub use spec::{
    Action, Baseline, Category, Condition, Direction, EffectKind, Null, Resolution, Rule,
    RuleContext, RuleSet, Severity, Signal, Test, TestKind, BASELINE_VERSION_LABEL,
    CODE_FIELD_LABEL, CODE_LABEL, JUDGE_LABEL, NEW_CODE_MIN_BASELINE, NEW_CODE_MIN_EVENTS,
};
pub(crate) use template::{template_parts, TemplatePart};
pub use template::{TEMPLATE_FORMATS, TEMPLATE_VARS};
