//! `memory_bomb`: allocates (and touches) 1 MiB blocks without bound.

use stevedore_sdk::{Category, Error};

/// The category.
pub struct MemoryBomb;

impl Category for MemoryBomb {
    const NAME: &'static str = "memory_bomb";
    const SUMMARY: &'static str = "Allocate without bound";
    type Params = serde::de::IgnoredAny;
    fn validate(_: &serde::de::IgnoredAny) -> Result<(), Error> {
        Ok(())
    }
    fn run(_: serde::de::IgnoredAny) -> Result<Option<String>, Error> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
        }
    }
}

stevedore_sdk::category!(MemoryBomb);
