//! Plan tests: one fixture (`fixture.rs`: an `Observed` built from a table of members), one
//! file per concern, and the conditions a plan and its step produce.

mod aof;
mod bootstrap;
mod certs;
mod conditions;
mod cordon;
mod cost;
mod drain;
mod fixture;
mod loss;
mod members;
mod oracles;
mod passwords;
mod recovery;
mod rollout;
mod scale;
mod surge;
mod unready;
