//! State shared by every surface of one emulator instance.

use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::clock::Clock;
use crate::faults::FaultBook;
use crate::journal::Journal;
use crate::knobs::Knobs;
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
    pub fn new(initial: WorldFile, tokens: TokenIssuer) -> Result<Arc<Self>, WorldError> {
        let clock = Clock::default();
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

    pub fn endpoints(&self) -> &Endpoints {
        self.endpoints.get_or_init(Endpoints::default)
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
