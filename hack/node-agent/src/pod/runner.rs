//! One worker per pod: sandbox, volumes, containers as processes, probes, restarts, status
//! writes and graceful termination. The rest of the agent sees only the worker and the
//! process helpers re-exported here.

mod ctr;
mod hooks;
mod launch;
mod process;
mod restart;
mod sandbox;
mod start;
mod status_write;
mod terminate;
mod volume_sync;
mod worker;

pub use process::{proc_start_time, signal_group};
pub use worker::Worker;
