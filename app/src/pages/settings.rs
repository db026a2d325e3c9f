//! Settings: one's own profile and password, and the navigation between settings pages.

use crate::api::account::ChangePassword;
use crate::auth::use_me;
use crate::components::ActionOutcome;
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

/// Links between the settings pages; administration links only for those who may see it.
#[component]
pub fn SettingsNav() -> impl IntoView {
    let can_read_users = use_me().is_some_and(|me| me.can_read_users());
    view! {
        <nav class="tabs" aria-label="Settings">
            <A href="/settings" exact=true>"Profile"</A>
            <A href="/settings/tokens">"API tokens"</A>
            {can_read_users.then(|| view! {
                <A href="/settings/users">"Users"</A>
                <A href="/settings/teams">"Teams"</A>
            })}
        </nav>
    }
}

#[component]
pub fn ProfilePage() -> impl IntoView {
    let change = ServerAction::<ChangePassword>::new();
    let me = use_me();
    view! {
        <Title text="Settings"/>
        <h1>"Settings"</h1>
        <SettingsNav/>
        {me.map(|me| {
            let teams = me.teams.iter().map(|t| t.name.clone()).collect::<Vec<_>>().join(", ");
            view! {
                <section class="card">
                    <h2>"Profile"</h2>
                    <dl>
                        <dt>"Name"</dt><dd>{me.display_name.clone()}</dd>
                        <dt>"Email"</dt><dd>{me.email.clone()}</dd>
                        <dt>"Role"</dt><dd>{me.role.label()}</dd>
                        <dt>"Teams"</dt><dd>{if teams.is_empty() { "none".to_owned() } else { teams }}</dd>
                    </dl>
                </section>
            }
        })}
        <section class="card">
            <h2>"Change password"</h2>
            <ActionForm action=change>
                <label>"Current password"
                    <input type="password" name="current_password" autocomplete="current-password" required/>
                </label>
                <label>"New password (12 to 128 characters)"
                    <input type="password" name="new_password" autocomplete="new-password" required minlength="12" maxlength="128"/>
                </label>
                <button type="submit">"Change password"</button>
            </ActionForm>
            <ActionOutcome value=change.value() success="Password changed. Your other sessions have ended."/>
        </section>
    }
}
