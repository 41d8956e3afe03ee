//! Decisions per second of the policy engine with 1,000 policies and 10,000
//! role assignments, all in memory (as they are once loaded). Run with
//! `cargo bench -p basalt-server --bench authz_decisions`. The loop is
//! bounded in count and time.

use basalt_server::authz::engine::{Engine, Policy, Subject};
use std::time::{Duration, Instant};
use uuid::Uuid;

const ROLES: usize = 100;
const POLICIES: usize = 1_000;
const USERS: usize = 10_000;

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let users: Vec<Uuid> = (0..USERS).map(|_| Uuid::new_v4()).collect();
    let engine = runtime.block_on(async {
        let mut inheritance: Vec<(String, String)> = (1..ROLES)
            .map(|i| (format!("role{i}"), format!("role{}", i / 10)))
            .collect();
        inheritance.extend(
            users
                .iter()
                .enumerate()
                .map(|(i, user)| (format!("user:{user}"), format!("role{}", i % ROLES))),
        );
        let policies: Vec<Policy> = (0..POLICIES)
            .map(|i| {
                let condition = (i % 2 == 0).then_some("or=(public.is.true,owner.eq.{auth.uid})");
                let object = if i % 10 == 0 {
                    format!("table:public.t{}*", i % 50)
                } else {
                    format!("table:public.t{}", i % 50)
                };
                Policy::new(
                    &format!("role{}", i % ROLES),
                    &object,
                    ["select", "insert", "update", "delete"][i % 4],
                    condition,
                    None,
                )
                .expect("valid policy")
            })
            .collect();
        Engine::from_rules(policies, inheritance)
            .await
            .expect("engine")
    });
    let subjects: Vec<Subject> = users
        .iter()
        .map(|user| Subject {
            role: "authenticated".into(),
            user_id: Some(*user),
            claim_roles: Vec::new(),
        })
        .collect();
    let started = Instant::now();
    let mut decisions = 0usize;
    let mut allowed = 0usize;
    while started.elapsed() < Duration::from_secs(3) && decisions < 10_000_000 {
        for (i, subject) in subjects.iter().enumerate().take(1_000) {
            let decision = engine.authorize(
                subject,
                &format!("table:public.t{}", (decisions + i) % 50),
                "select",
            );
            allowed += usize::from(decision.allowed);
        }
        decisions += 1_000;
    }
    let elapsed = started.elapsed();
    println!(
        "authz: {decisions} decisions in {:.2} s = {:.0} decisions/s ({:.2} µs each; {allowed} allowed) with {POLICIES} policies, {USERS} role assignments, {ROLES} roles",
        elapsed.as_secs_f64(),
        decisions as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / decisions as f64
    );
}
