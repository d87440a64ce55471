//! cargo-fuzz targets for every vigil-protocol decoder; the checks live in `checks.rs`.

pub mod checks;
