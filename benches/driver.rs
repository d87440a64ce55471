//! Driver measurements (placeholder until the bench lands).
fn main() {}
