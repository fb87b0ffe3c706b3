//! Pure parsers for the textual and nested replies of the cluster admin commands.
//!
//! They take what the server sent and either return typed values or a [`ParseError`]; they
//! never panic, whatever the input (property tests feed them arbitrary text).

pub mod cluster_info;
pub mod cluster_nodes;
pub mod cluster_shards;
pub mod info;
pub mod info_fields;

/// A reply that does not have the documented format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct ParseError {
    /// Which reply or field was being parsed.
    pub what: &'static str,
    /// What was wrong, with a bounded excerpt of the input.
    pub detail: String,
}

impl ParseError {
    pub(crate) fn new(what: &'static str, detail: impl Into<String>) -> Self {
        let detail: String = detail.into();
        Self {
            what,
            detail: detail.chars().take(200).collect(),
        }
    }
}
