//! Transforms: verbs that change events between sources and sinks.
//!
//! Adding one: write its file (config + runtime + tests), add a row to the table below.

pub mod efficiency;
mod journal;
pub mod rename;
pub mod scale;
pub mod state_diff;

use crate::component::{components, Kind};

components! {
    /// Every transform type, by its `type` in a pipeline file.
    pub enum TransformConfig: Kind::Transform => dyn Transform {
        "efficiency" => Efficiency(efficiency::EfficiencyConfig),
        "rename" => Rename(rename::RenameConfig),
        "scale" => Scale(scale::ScaleConfig),
        "state_diff" => StateDiff(state_diff::StateDiffConfig),
    }
}
