//! The world: what drives a driver from outside, as the rest of a Windows machine would. The
//! in-memory file system under each volume ([`fs`]), mounting volumes ([`volumes`]), synthetic
//! I/O from requestors through the filter's callbacks ([`io`]), and the client side of the
//! communication ports ([`client`]). Host code, on the test's threads; it calls into the driver
//! only through Filter Manager's state and the kernel below.

pub(crate) mod cancel;
#[cfg(test)]
mod cancel_tests;
pub(crate) mod client;
#[cfg(test)]
mod filter_io_tests;
pub(crate) mod fs;
pub mod inf;
pub(crate) mod io;
#[cfg(test)]
mod io_tests;
#[cfg(test)]
mod port_tests;
pub(crate) mod volumes;
