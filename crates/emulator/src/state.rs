//! State shared by every surface of one emulator instance.

use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::clock::{Clock, ClockMode};
use crate::faults::FaultBook;
use crate::journal::Journal;
use crate::knobs::{InvalidKnobs, Knobs};
use crate::server::Endpoints;
use crate::tokens::TokenIssuer;
use crate::world::{World, WorldError, WorldFile};

pub struct Shared {
    /// The world as loaded, for `POST /admin/reset`.
    pub initial: WorldFile,
    pub world: RwLock<World>,
    pub knobs: RwLock<Knobs>,
    pub clock: Clock,
    pub faults: FaultBook,
    pub journal: Journal,
    pub tokens: TokenIssuer,
    /// Where each surface listens; set once the listeners are bound.
    pub endpoints: OnceLock<Endpoints>,
    pub imds: crate::imds::ImdsState,
    pub arm: crate::arm::ArmState,
    pub entra: crate::entra::EntraState,
}

impl Shared {
    pub fn new(
        initial: WorldFile,
        tokens: TokenIssuer,
        clock_mode: ClockMode,
    ) -> Result<Arc<Self>, WorldError> {
        let clock = Clock::new(clock_mode);
        let world = World::from_file(&initial, clock.now())?;
        Ok(Arc::new(Self {
            knobs: RwLock::new(initial.knobs.clone()),
            world: RwLock::new(world),
            initial,
            clock,
            faults: FaultBook::default(),
            journal: Journal::default(),
            tokens,
            endpoints: OnceLock::new(),
            imds: Default::default(),
            arm: Default::default(),
            entra: Default::default(),
        }))
    }

    // A poisoned lock means a handler panicked while holding it; the data is still the last
    // consistent state each writer left, so keep serving rather than failing every request.
    pub fn world(&self) -> RwLockReadGuard<'_, World> {
        self.world.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn world_mut(&self) -> RwLockWriteGuard<'_, World> {
        self.world.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn knobs(&self) -> Knobs {
        self.knobs_with(Knobs::clone)
    }

    /// Reads part of the knobs without copying the rest (request paths use this).
    pub fn knobs_with<T>(&self, read: impl FnOnce(&Knobs) -> T) -> T {
        read(&self.knobs.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn set_knobs(&self, knobs: Knobs) {
        *self.knobs.write().unwrap_or_else(|p| p.into_inner()) = knobs;
    }

    /// Applies a JSON merge patch to the knobs under one write lock: concurrent patches never
    /// lose each other's changes, readers see the knobs from before or after (never half of a
    /// patch), and a refused patch changes nothing. Returns the knobs now in force.
    pub fn patch_knobs(&self, patch: &serde_json::Value) -> Result<Knobs, InvalidKnobs> {
        let mut knobs = self.knobs.write().unwrap_or_else(|p| p.into_inner());
        let merged = knobs.merged(patch)?;
        *knobs = merged.clone();
        Ok(merged)
    }

    pub fn endpoints(&self) -> &Endpoints {
        self.endpoints.get_or_init(Endpoints::default)
    }

    /// Whether Entra ID and IMDS issue tokens for `resource`: one the world knows, or this
    /// emulator's own ARM URL (a custom cloud's resource manager endpoint is its audience).
    pub fn resource_known(&self, world: &World, resource: &str) -> bool {
        let own_arm = &self.endpoints().arm;
        world.resources.contains(resource)
            || (!own_arm.is_empty() && own_arm.eq_ignore_ascii_case(resource.trim_end_matches('/')))
    }

    /// Back to the world as loaded: state, knobs, clock, faults, journal, caches.
    pub fn reset(&self) -> Result<(), WorldError> {
        self.clock.reset();
        let world = World::from_file(&self.initial, self.clock.now())?;
        *self.world_mut() = world;
        self.set_knobs(self.initial.knobs.clone());
        self.faults.clear();
        self.journal.clear();
        self.imds.reset();
        self.arm.reset();
        self.entra.reset();
        Ok(())
    }
}

/// State for unit tests: the world in `yaml` (the world-file format), a manual clock.
#[cfg(test)]
pub(crate) fn for_tests(yaml: &str) -> Arc<Shared> {
    let file = WorldFile::parse(yaml).expect("a valid world");
    let tokens = TokenIssuer::new([file.tenant_id.as_str()]).expect("keys");
    Shared::new(file, tokens, ClockMode::Manual).expect("state")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn shared() -> Arc<Shared> {
        for_tests(
            "tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47\n\
             subscriptions: [{id: 6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c}]\n",
        )
    }

    #[test]
    fn a_refused_patch_changes_nothing() {
        let shared = shared();
        let before = shared.knobs();
        let err = shared
            .patch_knobs(&json!({"arm": {"lroDurationMs": 1}, "imds": {"tokenVersion": 9}}))
            .expect_err("tokenVersion 9 is invalid");
        assert!(err.to_string().contains("1 or 2"), "{err}");
        assert_eq!(shared.knobs(), before);
    }

    #[test]
    fn concurrent_patches_are_all_kept_and_never_seen_half_applied() {
        const ROUNDS: u64 = 300;
        let shared = shared();
        std::thread::scope(|scope| {
            // Each patch sets two ARM knobs to the same value; a reader must never see them
            // differ. Another writer patches an IMDS knob; neither may undo the other.
            scope.spawn(|| {
                for n in 1..=ROUNDS {
                    shared
                        .patch_knobs(&json!({"arm": {"lroDurationMs": n, "retryAfterSecs": n}}))
                        .expect("valid");
                }
            });
            scope.spawn(|| {
                for n in 1..=ROUNDS {
                    let n = u32::try_from(n).expect("small");
                    shared
                        .patch_knobs(&json!({"imds": {"maxConcurrent": n}}))
                        .expect("valid");
                }
            });
            scope.spawn(|| {
                for _ in 0..ROUNDS {
                    let (duration, retry) =
                        shared.knobs_with(|k| (k.arm.lro_duration_ms, k.arm.retry_after_secs));
                    if duration != 500 {
                        assert_eq!(duration, retry, "half of a patch is visible");
                    }
                }
            });
        });
        let knobs = shared.knobs();
        assert_eq!(knobs.arm.lro_duration_ms, ROUNDS);
        assert_eq!(knobs.arm.retry_after_secs, ROUNDS);
        assert_eq!(u64::from(knobs.imds.max_concurrent), ROUNDS);
    }
}
