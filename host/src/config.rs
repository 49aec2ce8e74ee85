//! Configuration: TOML file plus environment overrides. OWNER: api helper.
