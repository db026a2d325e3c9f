//! The overview: who you are and where the estate stands. Only real figures appear here.

use crate::auth::use_me;
use crate::components::EmptyState;
use leptos::prelude::*;
use leptos_meta::Title;
use store::Role;

fn role_summary(role: Role) -> &'static str {
    match role {
        Role::Admin => "You administer Palisade: users, teams, and everything security leads can do.",
        Role::Security => "You see every API, publish policy, and watch risk across the estate.",
        Role::Developer => "You register your teams' APIs and declare how they are protected.",
        Role::Auditor => "You can read everything, including the audit trail, and change nothing.",
    }
}

#[component]
pub fn OverviewPage() -> impl IntoView {
    let me = use_me();
    view! {
        <Title text="Overview"/>
        <h1>"Overview"</h1>
        {me.map(|me| {
            let teams = me.teams.iter().map(|t| t.name.clone()).collect::<Vec<_>>().join(", ");
            view! {
                <section class="card">
                    <p>"Signed in as " <strong>{me.display_name.clone()}</strong> " (" {me.email.clone()} "), " {me.role.label()} "."</p>
                    <p>{role_summary(me.role)}</p>
                    {(!teams.is_empty()).then(|| view! { <p>"Teams: " {teams}</p> })}
                </section>
            }
        })}
        <EmptyState title="Your API estate at a glance">
            <p>
                "Once APIs are registered and agents report decisions, this page shows how many APIs "
                "you have and how each is protected (authentication, authorization levels L1–L4), "
                "the active policy revision and how much of the agent fleet runs it, and the top "
                "risk signals and posture findings. Nothing is registered yet, so there are no figures to show."
            </p>
        </EmptyState>
    }
}
