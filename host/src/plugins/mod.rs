//! The wasm plugin host: engine, loader, sandbox limits, capability grants.
