//! kernel-sim: runs a real minifilter .sys on Linux with Driver-Verifier-style checks (skeleton; filled in by its own issue).
