//! Safe wrappers over the Filter Manager: registration, the communication port. Runs in the
//! kernel at PASSIVE_LEVEL unless a function says otherwise.

pub mod context;
pub mod name;
pub mod operation;
pub mod port;
pub mod registration;
pub mod volumes;
