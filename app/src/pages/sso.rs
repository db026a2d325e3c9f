//! Single sign-on settings: the configured OpenID Connect providers, what to register at
//! each, and (for admins) adding, changing and removing them.

use crate::api::sso::{ConfiguredProvider, DeleteSsoProvider, SaveSsoProvider, list_sso_providers};
use crate::auth::use_me;
use crate::components::{ActionOutcome, Forbidden, Loaded};
use crate::pages::SettingsNav;
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;
use store::sso::SsoProvider;

#[component]
pub fn SsoPage() -> impl IntoView {
    let Some(me) = use_me().filter(|me| me.can_read_users()) else {
        return view! { <Title text="Single sign-on"/><h1>"Settings"</h1><SettingsNav/><Forbidden/> }.into_any();
    };
    let can_edit = me.can_administer_users();
    let save = ServerAction::<SaveSsoProvider>::new();
    let delete = ServerAction::<DeleteSsoProvider>::new();
    let providers = Resource::new(move || (save.version().get(), delete.version().get()), |_| list_sso_providers());
    let render = move |list: Vec<ConfiguredProvider>| {
        if list.is_empty() {
            return view! { <p>"No provider is configured: everyone signs in with a password."</p> }.into_any();
        }
        list.into_iter().map(|configured| view! { <ProviderCard configured can_edit save delete/> }).collect_view().into_any()
    };
    view! {
        <Title text="Single sign-on"/>
        <h1>"Settings"</h1>
        <SettingsNav/>
        <ActionOutcome value=save.value() success="Provider saved."/>
        <section class="card">
            <h2>"Single sign-on providers"</h2>
            <p class="hint">
                "People sign in through their organisation's OpenID Connect provider. Their groups decide their role \
                 (the first matching rule) and, when team rules are given, their teams, at every sign-in. Sign-ins \
                 through a provider do not ask for Palisade's own second factor: require one at the provider."
            </p>
            <Loaded resource=providers render=render/>
            <ActionOutcome value=delete.value() success="Provider removed."/>
        </section>
        {can_edit.then(|| view! {
            <section class="card">
                <h2>"Add a provider"</h2>
                <ProviderForm existing=None save/>
            </section>
        })}
    }
    .into_any()
}

#[component]
fn ProviderCard(
    configured: ConfiguredProvider,
    can_edit: bool,
    save: ServerAction<SaveSsoProvider>,
    delete: ServerAction<DeleteSsoProvider>,
) -> impl IntoView {
    let ConfiguredProvider { provider, callback_url, signed_out_url } = configured;
    let flags = [
        (provider.enabled, "enabled", "disabled"),
        (provider.create_accounts, "creates accounts", "does not create accounts"),
        (provider.link_by_email, "links local accounts by verified email", "does not link local accounts"),
    ]
    .map(|(on, yes, no)| if on { yes } else { no })
    .join(", ");
    let id = provider.id;
    view! {
        <article class="provider" data-testid=format!("provider-{}", provider.slug)>
            <h3>{provider.display_name.clone()} " " <code>{provider.slug.clone()}</code></h3>
            <dl>
                <dt>"Issuer"</dt><dd>{provider.issuer_url.clone()}</dd>
                <dt>"Client id"</dt><dd>{provider.client_id.clone()}</dd>
                <dt>"Scopes"</dt><dd>{format!("openid {}", provider.scopes.join(" "))}</dd>
                <dt>"Groups claim"</dt><dd>{provider.groups_claim.clone()}</dd>
                <dt>"Roles"</dt><dd><pre>{provider.mapping.roles_text()}</pre></dd>
                <dt>"Teams"</dt><dd><pre>{provider.mapping.teams_text()}</pre></dd>
                <dt>"Accounts"</dt><dd>{flags}</dd>
                <dt>"Redirect URI to register"</dt><dd><code data-testid="callback-url">{callback_url}</code></dd>
                <dt>"Post-logout redirect URI"</dt><dd><code>{signed_out_url}</code></dd>
            </dl>
            {can_edit.then(|| view! {
                <details>
                    <summary>"Change"</summary>
                    <ProviderForm existing=Some(provider.clone()) save/>
                </details>
                <ActionForm action=delete>
                    <input type="hidden" name="id" value=id/>
                    <button type="submit" class="danger">"Remove provider"</button>
                </ActionForm>
            })}
        </article>
    }
}

/// The form for a new provider (`existing: None`) or a change to one.
#[component]
fn ProviderForm(existing: Option<SsoProvider>, save: ServerAction<SaveSsoProvider>) -> impl IntoView {
    let is_new = existing.is_none();
    let value = |read: fn(&SsoProvider) -> String| existing.as_ref().map(read).unwrap_or_default();
    let flag = |read: fn(&SsoProvider) -> bool, default: bool| existing.as_ref().map_or(default, read);
    let (slug, display_name, issuer_url, client_id) =
        (value(|p| p.slug.clone()), value(|p| p.display_name.clone()), value(|p| p.issuer_url.clone()), value(|p| p.client_id.clone()));
    let (roles, teams) = (value(|p| p.mapping.roles_text()), value(|p| p.mapping.teams_text()));
    let (create_accounts, link_by_email, enabled) =
        (flag(|p| p.create_accounts, true), flag(|p| p.link_by_email, false), flag(|p| p.enabled, true));
    let id = existing.as_ref().map(|provider| provider.id);
    let scopes = existing.as_ref().map_or_else(|| "email profile".to_owned(), |provider| provider.scopes.join(" "));
    let groups_claim = existing.as_ref().map_or_else(|| "groups".to_owned(), |provider| provider.groups_claim.clone());
    view! {
        <ActionForm action=save>
            {id.map(|id| view! { <input type="hidden" name="id" value=id/> })}
            <label>"Name in URLs" <input type="text" name="slug" required maxlength="32" pattern="[a-z0-9][a-z0-9-]*" value=slug/></label>
            <label>"Button label" <input type="text" name="display_name" required maxlength="60" value=display_name/></label>
            <label>"Issuer URL" <input type="url" name="issuer_url" required value=issuer_url placeholder="https://login.example.com"/></label>
            <label>"Client id" <input type="text" name="client_id" required maxlength="255" value=client_id/></label>
            <label>
                {if is_new { "Client secret" } else { "New client secret (leave empty to keep the current one)" }}
                <input type="password" name="client_secret" autocomplete="off" maxlength="1024" required=is_new/>
            </label>
            <label>"Scopes besides openid" <input type="text" name="scopes" value=scopes/></label>
            <label>"Groups claim" <input type="text" name="groups_claim" required maxlength="100" value=groups_claim/></label>
            <label>
                "Role mapping: one "<code>"group = role"</code>" per line (admin, security, developer, auditor); the first match wins"
                <textarea name="role_mapping" rows="4" required>{roles}</textarea>
            </label>
            <label>
                "Team mapping: one "<code>"group = team"</code>" per line; when given, teams follow the provider"
                <textarea name="team_mapping" rows="3">{teams}</textarea>
            </label>
            <label class="inline"><input type="checkbox" name="create_accounts" value="on" checked=create_accounts/>" Create an account at a first sign-in"</label>
            <label class="inline"><input type="checkbox" name="link_by_email" value="on" checked=link_by_email/>" Link a first sign-in to the local account with the same verified email"</label>
            <label class="inline"><input type="checkbox" name="enabled" value="on" checked=enabled/>" Enabled"</label>
            <button type="submit">{if is_new { "Add provider" } else { "Save provider" }}</button>
        </ActionForm>
    }
}
