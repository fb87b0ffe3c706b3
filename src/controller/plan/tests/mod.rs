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

/// The members concern's step alone (creates, removes, leader moves), from `fx`.
fn members_step(fx: &fixture::Fx) -> Option<crate::controller::plan::Step> {
    let obs = fx.observed();
    let f = crate::controller::plan::facts::Facts::of(&obs);
    crate::controller::plan::members::step(&f)
}

/// The Pods a step deletes.
fn deleted(step: Option<&crate::controller::plan::Step>) -> Vec<String> {
    match step.map(|s| &s.action) {
        Some(crate::controller::plan::Action::DeletePods(pods)) => {
            pods.iter().map(|(p, _)| p.clone()).collect()
        }
        _ => Vec::new(),
    }
}
