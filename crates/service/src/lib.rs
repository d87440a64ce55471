//! Vigil's user-mode service and CLI (skeleton; filled in by its own issue).
