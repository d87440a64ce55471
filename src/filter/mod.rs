//! Safe wrappers over the Filter Manager: registration, the communication port, push locks,
//! stream and stream-handle contexts, typed set-information requests. Runs in the
//! kernel at PASSIVE_LEVEL unless a function says otherwise.

pub mod context;
pub mod context_ref;
pub mod file_id;
pub mod name;
pub mod operation;
pub mod port;
pub mod push_lock;
pub mod registration;
pub mod set_information;
pub mod stream_context;
pub mod volumes;
