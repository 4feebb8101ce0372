//! Label and annotation templates: `{{ var }}` / `{{ var | format }}` pieces, the variables
//! and formats they may use, and the check that a rule's templates only name what its alerts
//! carry. The alert stage renders them with [`template_parts`].

use super::spec::{RuleContext, BASELINE_VERSION_LABEL, CODE_FIELD_LABEL, CODE_LABEL, JUDGE_LABEL};

/// Variables annotation templates may use (`{{ value }}`, `{{ labels.request_model }}`).
pub const TEMPLATE_VARS: [&str; 12] = [
    "rule",
    "signal",
    "value",
    "baseline",
    "effect",
    "threshold",
    "p_value",
    "n_current",
    "n_baseline",
    "over",
    "severity",
    "series",
];
/// Formatters: `{{ value | pct }}`.
pub const TEMPLATE_FORMATS: [&str; 4] = ["pct", "ms", "round", "usd"];

/// The `{{ var | format }}` pieces of a template.
pub(crate) fn template_parts(text: &str) -> Result<Vec<TemplatePart<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            out.push(TemplatePart::Text(&rest[..open]));
        }
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| "unclosed `{{` (close it with `}}`)".to_string())?;
        let inner = after[..close].trim();
        let (var, fmt) = match inner.split_once('|') {
            Some((v, f)) => (v.trim(), Some(f.trim())),
            None => (inner, None),
        };
        out.push(TemplatePart::Var { var, fmt });
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        out.push(TemplatePart::Text(rest));
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum TemplatePart<'a> {
    Text(&'a str),
    Var { var: &'a str, fmt: Option<&'a str> },
}

pub(super) fn check_template(
    text: &str,
    ctx: &RuleContext,
    instance: &[&str],
    details: &[&str],
) -> Result<(), String> {
    for p in template_parts(text)? {
        if let TemplatePart::Var { var, fmt } = p {
            if let Some(d) = var.strip_prefix("details.") {
                if !details.contains(&d) {
                    return Err(if details.is_empty() {
                        format!("{{{{ {var} }}}}: alerts of this signal carry no details")
                    } else {
                        format!(
                            "unknown detail {d:?}; this signal's alerts carry details.{}",
                            details.join(", details.")
                        )
                    });
                }
                check_format(var, fmt)?;
                continue;
            }
            if let Some(l) = var.strip_prefix("labels.") {
                if !instance.contains(&l)
                    && (ctx.labels.iter().any(|x| x.as_str() == l)
                        || [
                            JUDGE_LABEL,
                            CODE_FIELD_LABEL,
                            CODE_LABEL,
                            BASELINE_VERSION_LABEL,
                        ]
                        .contains(&l))
                {
                    return Err(format!(
                        "{{{{ {var} }}}} would be empty: alerts of this rule carry the labels [{}] (see `by`; `judge` only when signal.judge is not set)",
                        instance.join(", ")
                    ));
                }
            }
            let ok = TEMPLATE_VARS.contains(&var)
                || var
                    .strip_prefix("labels.")
                    .is_some_and(|l| instance.contains(&l));
            if !ok {
                let labels: Vec<_> = ctx.labels.iter().map(|l| format!("labels.{l}")).collect();
                return Err(format!(
                    "unknown template variable {var:?}; use {} or {}",
                    TEMPLATE_VARS.join(", "),
                    labels.join(", ")
                ));
            }
            check_format(var, fmt)?;
        }
    }
    Ok(())
}

fn check_format(var: &str, fmt: Option<&str>) -> Result<(), String> {
    match fmt {
        Some(f) if !TEMPLATE_FORMATS.contains(&f) => Err(format!(
            "unknown format {f:?} in {{{{ {var} | {f} }}}}; use {}",
            TEMPLATE_FORMATS.join(", ")
        )),
        _ => Ok(()),
    }
}
