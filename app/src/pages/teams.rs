//! Teams: the list, and creation for admins.

use crate::api::admin::{CreateTeam, list_teams};
use crate::auth::use_me;
use crate::components::{ActionOutcome, Forbidden, Loaded, format_time};
use store::Team;
use crate::pages::SettingsNav;
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn TeamsPage() -> impl IntoView {
    let Some(me) = use_me().filter(|me| me.can_read_users()) else {
        return view! { <Title text="Teams"/><h1>"Settings"</h1><SettingsNav/><Forbidden/> }.into_any();
    };
    let create = ServerAction::<CreateTeam>::new();
    let teams = Resource::new(move || create.version().get(), |_| list_teams());
    view! {
        <Title text="Teams"/>
        <h1>"Settings"</h1>
        <SettingsNav/>
        {me.can_administer_users().then(|| view! {
            <section class="card">
                <h2>"New team"</h2>
                <ActionForm action=create>
                    <label>"Name" <input type="text" name="name" required maxlength="64"/></label>
                    <button type="submit">"Create team"</button>
                </ActionForm>
                <ActionOutcome value=create.value() success="Team created."/>
            </section>
        })}
        <section class="card">
            <h2>"Teams"</h2>
            <Loaded resource=teams render=teams_table/>
        </section>
    }
    .into_any()
}

fn teams_table(list: Vec<Team>) -> AnyView {
    if list.is_empty() {
        return view! { <p>"There are no teams yet."</p> }.into_any();
    }
    view! {
        <table>
            <thead><tr><th>"Team"</th><th>"Members"</th><th>"Created"</th></tr></thead>
            <tbody>
                {list.into_iter().map(|team| view! {
                    <tr><td>{team.name}</td><td>{team.member_count}</td><td>{format_time(team.created_at)}</td></tr>
                }).collect_view()}
            </tbody>
        </table>
    }.into_any()
}
