//! Safe wrappers over the Filter Manager: registration, the communication port. Runs in the
//! kernel at PASSIVE_LEVEL unless a function says otherwise.

pub mod port;
pub mod registration;
