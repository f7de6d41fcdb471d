//! Label selectors of a scenario file, validated while the file is read (so an error names the field
//! path and line). Their own module because the scenario and the sections it embeds (distribution,
//! zones) all read them: the sections import these types from here, never from the scenario, which
//! imports the sections.

use placement_core::selector::LabelSelector;
use serde::Deserialize;

/// A label selector over pod labels, validated when read.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "LabelSelector")]
pub struct ValidSelector(pub LabelSelector);

impl TryFrom<LabelSelector> for ValidSelector {
    type Error = placement_core::selector::SelectorError;
    fn try_from(s: LabelSelector) -> Result<Self, Self::Error> {
        s.validate().map(|()| ValidSelector(s))
    }
}

/// A label selector over node labels (`Gt`/`Lt` allowed), validated when read.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "LabelSelector")]
pub struct ValidNodeSelector(pub LabelSelector);

impl TryFrom<LabelSelector> for ValidNodeSelector {
    type Error = placement_core::selector::SelectorError;
    fn try_from(s: LabelSelector) -> Result<Self, Self::Error> {
        s.validate_for_nodes().map(|()| ValidNodeSelector(s))
    }
}
