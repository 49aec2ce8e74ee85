//! `memory_bomb`: allocates (and touches) 1 MiB blocks without bound.

use stevedore_sdk::{Category, Error};

/// The category.
pub struct MemoryBomb;

impl Category for MemoryBomb {
    const NAME: &'static str = "memory_bomb";
    const SUMMARY: &'static str = "Allocate without bound";
    type Params = stevedore_sdk::AnyParams;
    fn validate(_: &stevedore_sdk::AnyParams) -> Result<(), Error> {
        Ok(())
    }
    fn run(_: stevedore_sdk::AnyParams) -> Result<Option<String>, Error> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
        }
    }
}

stevedore_sdk::category!(MemoryBomb);
