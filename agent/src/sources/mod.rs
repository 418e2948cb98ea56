//! Sources: where events enter the agent. Each source runs as one task and hands batches to a
//! [`SourceOutput`], which redacts them and fans them out to the components that read it.

pub mod file;

use crate::config::{Errors, KeyPath};

/// A source as declared under `[sources.NAME]`.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    File(file::FileSourceConfig),
}

impl SourceConfig {
    pub const TYPES: &[&str] = &["file"];

    pub(crate) fn parse(
        kind: &str,
        table: toml::Table,
        path: &KeyPath,
        errs: &mut Errors<'_>,
    ) -> Option<Self> {
        match kind {
            "file" => {
                let c: file::FileSourceConfig = errs.deserialize(path, table.into())?;
                c.validate(path, errs);
                Some(Self::File(c))
            }
            other => {
                errs.unknown_type(path, other, Self::TYPES);
                None
            }
        }
    }
}
