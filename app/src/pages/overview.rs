//! The overview: who you are and where the estate stands. Only real figures appear here.

use crate::auth::use_me;
use crate::api::inventory::get_estate_posture;
use crate::components::{EmptyState, Loaded};
use leptos::prelude::*;
use leptos_meta::Title;
use store::{EstatePosture, Role};

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
        <Loaded resource=Resource::new(|| (), |_| get_estate_posture()) render=estate_view/>
    }
}

fn estate_view(estate: EstatePosture) -> AnyView {
    let Some(score) = estate.score else {
        return view! {
            <EmptyState title="Your API estate at a glance">
                <p>
                    "Once APIs are registered, this page shows how many there are and their posture "
                    "findings against the OWASP API Security Top 10. Nothing is registered yet, so "
                    "there are no figures to show."
                </p>
            </EmptyState>
        }
        .into_any();
    };
    let count = estate.apis.len();
    view! {
        <section class="card">
            <h2>"API posture"</h2>
            <p data-testid="estate-score">"Estate score " <strong>{score}</strong> " / 100 over " {count} " APIs (the mean of each API's score)."</p>
            <table data-testid="estate">
                <thead><tr><th>"API"</th><th>"Team"</th><th>"Score"</th><th>"High"</th><th>"Medium"</th><th>"Low"</th></tr></thead>
                <tbody>
                    {estate.apis.into_iter().map(|scored| view! {
                        <tr>
                            <td><a href=format!("/apis/{}#findings", scored.api.id)>{scored.api.name}</a></td>
                            <td>{scored.api.team_name}</td>
                            <td>{scored.score}</td>
                            <td>{scored.high}</td>
                            <td>{scored.medium}</td>
                            <td>{scored.low}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </section>
    }
    .into_any()
}
