//! Behaviour knobs, one group per surface. Set in the world file under `knobs:` and changed at
//! run time with `PATCH /admin/knobs` (a JSON merge of the same shape).

use serde::{Deserialize, Serialize};

pub use crate::arm::ArmKnobs;
pub use crate::entra::EntraKnobs;
pub use crate::imds::ImdsKnobs;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Knobs {
    pub imds: ImdsKnobs,
    pub arm: ArmKnobs,
    pub entra: EntraKnobs,
}
