//! Vigil's developer tasks: build vigil.sys, run the demo, run every test (skeleton; filled in by its own issue).
