//! Transforms: verbs that change events between sources and sinks.
//!
//! Adding one: write its file (config + runtime + tests), add a variant here.

pub mod rename;
pub mod scale;
pub mod state_diff;

use serde::Deserialize;

use crate::config::{BuildContext, Check, ComponentConfig, Kind};
use crate::topology::{BoxError, Transform};

#[derive(Debug, Clone)]
pub enum TransformConfig {
    Scale(scale::ScaleConfig),
    Rename(rename::RenameConfig),
    StateDiff(state_diff::StateDiffConfig),
}

impl ComponentConfig for TransformConfig {
    const KIND: Kind = Kind::Transform;
    const TYPES: &'static [&'static str] = &["rename", "scale", "state_diff"];

    fn parse(ty: &str, de: toml::de::ValueDeserializer<'_>) -> Option<Result<Self, toml::de::Error>> {
        Some(match ty {
            "scale" => scale::ScaleConfig::deserialize(de).map(Self::Scale),
            "rename" => rename::RenameConfig::deserialize(de).map(Self::Rename),
            "state_diff" => state_diff::StateDiffConfig::deserialize(de).map(Self::StateDiff),
            _ => return None,
        })
    }

    fn type_name(&self) -> &'static str {
        match self {
            Self::Scale(_) => "scale",
            Self::Rename(_) => "rename",
            Self::StateDiff(_) => "state_diff",
        }
    }

    fn check(&self, cx: &mut Check<'_>) {
        match self {
            Self::Scale(c) => c.check(cx),
            Self::Rename(c) => c.check(cx),
            Self::StateDiff(c) => c.check(cx),
        }
    }
}

impl TransformConfig {
    pub fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Transform>, BoxError> {
        match self {
            Self::Scale(c) => c.build(cx),
            Self::Rename(c) => c.build(cx),
            Self::StateDiff(c) => c.build(cx),
        }
    }
}
