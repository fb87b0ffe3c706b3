//! Every condition reason the operator can set has an entry in `docs/runbook.md`: a heading
//! `## <Reason>` (any level from `##` down). There is no central list of reasons — they are
//! string literals where a step, a problem, a failed action or a condition is made — so this
//! test finds them in `src/` the way a reader would:
//!
//! * an argument passed for a parameter named `…reason` of type `&'static str` (`Step::new`,
//!   `Step::refuse`, `Problem::new`, `failed`, `kube_failed`, `Outcomes::finish`'s failed
//!   reason, and any new function declared the same way), or for any `…reason` parameter of a
//!   function in `src/controller/status/` (where conditions are built: `Desired::new`);
//!   a `const` passed there is resolved;
//! * a struct field written `reason: "…"` (`Executed::Failed { reason: "NameConflict", .. }`);
//! * in `src/controller/plan/` and `src/controller/status/` (where steps, waits and conditions
//!   are decided; `act/` sets reasons only through the calls above), a CamelCase literal that
//!   opens a tuple (`("WaitingForSync", msg, …)`, the health's waiting reasons and the
//!   rollout's) or is wrapped in `Some("…")`.
//!
//! Comments, `#[cfg(test)]` items and test files are skipped. Event-only reasons
//! (`publish(…, "MemberCreated", …)`) are not condition reasons and are not asked for. The test
//! also checks that a sanity set of reasons is found, so a broken scanner fails loudly.

use std::collections::BTreeSet;
use std::path::Path;

#[path = "runbook/scan.rs"]
mod scan;
use scan::scan;

/// Reasons the scanner must find: if one is missing, the scanner is broken (or the reason was
/// renamed, and this list must follow).
const KNOWN: &[&str] = &[
    "DataLoss",
    "QuorumLost",
    "DataUnavailable",
    "ZoneUnavailable",
    "FailoverDeferred",
    "FailoverFailed",
    "InvalidSpec",
    "ScaleInRefused",
    "ConfigRejected",
    "NameConflict",
    "AuthMismatch",
    "CreateFailed",
    "RolloutBlocked",
    "RolloutPaused",
    "OnDelete",
    "WaitingForSync",
    "PlacementUnsatisfiable",
    "Unsatisfiable",
    "ClusterReady",
];

/// The `## Heading` texts of the runbook (any level from `##`), outside code blocks.
fn headings(runbook: &str) -> BTreeSet<String> {
    let mut fenced = false;
    let mut out = BTreeSet::new();
    for line in runbook.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with("##") {
            out.insert(
                line.trim_start_matches('#')
                    .trim()
                    .trim_matches('`')
                    .to_string(),
            );
        }
    }
    out
}

#[test]
fn every_condition_reason_has_a_runbook_entry() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let found = scan(&root.join("src"));
    let unfound: Vec<&&str> = KNOWN.iter().filter(|k| !found.contains_key(**k)).collect();
    assert!(
        unfound.is_empty(),
        "the reason scanner is broken: it did not find {unfound:?} in src/ (found {:?})",
        found.keys().collect::<Vec<_>>()
    );
    let runbook = std::fs::read_to_string(root.join("docs/runbook.md")).expect("docs/runbook.md");
    let entries = headings(&runbook);
    let missing: Vec<String> = found
        .iter()
        .filter(|(r, _)| !entries.contains(*r))
        .map(|(r, path)| {
            format!(
                "{r} (set in {})",
                path.strip_prefix(root).unwrap_or(path).display()
            )
        })
        .collect();
    assert!(
        missing.is_empty(),
        "condition reasons without a `## <Reason>` heading in docs/runbook.md:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn the_scanner_reads_every_form_a_reason_is_set_in() {
    // A file in the shapes reasons are set in, and the shapes that are not reasons.
    let dir = std::env::temp_dir().join(format!("runbook-scan-{}", std::process::id()));
    let controller = dir.join("controller");
    for d in ["plan", "status", "act"] {
        std::fs::create_dir_all(controller.join(d)).expect("temp dir");
    }
    // An Event's reason chosen in act/ is not a condition's.
    std::fs::write(
        controller.join("act").join("mod.rs"),
        "fn g() { let (reason, kind) = (\"EventTuple\", EventType::Normal); }\n",
    )
    .expect("write");
    std::fs::write(
        controller.join("plan").join("mod.rs"),
        r#"
pub const NAMED: &str = "ByConst";
impl Step {
    pub fn new(action: Action, reason: &'static str, message: impl Into<String>) -> Self { todo!() }
    pub fn refuse(reason: &'static str, message: impl Into<String>) -> Self { todo!() }
}
fn failed(reason: &'static str, message: String) -> Executed { todo!() }
fn publish(ctx: &Context, reason: &str, note: &str) {}
fn f() {
    let s = Step::new(
        Action::Failover { shard: 1, reason: format!("a {}", "(NotOne, x)") },
        "MultiLine",
        "text",
    );
    Step::refuse(NAMED, "m");
    Step::refuse(spec::NAMED, "m");
    let _ = failed("FailedCall", String::new());
    let _ = Executed::Failed { reason: "FieldInit", message: String::new() };
    let w = ("TupleReason", String::new(), false);
    let r = Some("WrappedReason");
    publish(ctx, "EventOnly", "note"); // Step::new(a, "InComment", "")
    let c = 'x'; let q = '"'; let l: &'static str = "NotCamel";
}
#[cfg(test)]
mod tests {
    fn t() { Step::refuse("InTest", ""); }
}
"#,
    )
    .expect("write");
    std::fs::write(
        controller.join("status").join("conditions.rs"),
        "impl Desired { pub fn new(type_: &'static str, status: bool, reason: &str, message: String) -> Self { todo!() } }\n\
         fn g() { Desired::new(types::READY, true, \"Condition\", String::new()); }\n",
    )
    .expect("write");
    let found: BTreeSet<String> = scan(&dir).into_keys().collect();
    std::fs::remove_dir_all(&dir).ok();
    let want: BTreeSet<String> = [
        "ByConst",
        "MultiLine",
        "FailedCall",
        "FieldInit",
        "TupleReason",
        "WrappedReason",
        "Condition",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    assert_eq!(found, want);
}
