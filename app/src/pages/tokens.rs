//! Personal API tokens: create (the secret is shown once), list, revoke.

use crate::api::account::{CreateMyToken, CreatedToken, RevokeMyToken, TokenList, list_my_tokens};
use crate::components::{ErrorMessage, FlashMessage, Loaded, SecretOutcome, format_optional_time, format_time};
use crate::pages::SettingsNav;
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn TokensPage() -> impl IntoView {
    let create = ServerAction::<CreateMyToken>::new();
    let revoke = ServerAction::<RevokeMyToken>::new();
    let tokens = Resource::new(
        move || (create.version().get(), revoke.version().get()),
        |_| list_my_tokens(),
    );
    let render_tokens = move |list| tokens_table(list, revoke);
    view! {
        <Title text="API tokens"/>
        <h1>"Settings"</h1>
        <SettingsNav/>
        <FlashMessage/>
        <section class="card">
            <h2>"New API token"</h2>
            <p>"Tokens let scripts and CI call the REST API as you, with your role. Send one as "
               <code>"Authorization: Bearer …"</code> "."</p>
            <ActionForm action=create>
                <label>"Name" <input type="text" name="name" required maxlength="64" placeholder="ci-deploy"/></label>
                <label>"Expires"
                    <select name="expires_in_days">
                        <option value="30">"in 30 days"</option>
                        <option value="90" selected>"in 90 days"</option>
                        <option value="365">"in a year"</option>
                        <option value="">"never"</option>
                    </select>
                </label>
                <button type="submit">"Create token"</button>
            </ActionForm>
            <SecretOutcome value=create.value() to_flash=CreatedToken::flash/>
        </section>
        <section class="card">
            <h2>"Your tokens"</h2>
            {move || revoke.value().get().and_then(Result::err).map(|error| view! { <ErrorMessage error/> })}
            <Loaded resource=tokens render=render_tokens/>
        </section>
    }
}

fn tokens_table(TokenList { now, tokens: list }: TokenList, revoke: ServerAction<RevokeMyToken>) -> AnyView {
    if list.is_empty() {
        return view! { <p>"You have no API tokens."</p> }.into_any();
    }
    view! {
        <table>
            <thead><tr><th>"Name"</th><th>"Token"</th><th>"Created"</th><th>"Expires"</th><th>"Last used"</th><th>"Status"</th><th></th></tr></thead>
            <tbody>
                {list.into_iter().map(|token| {
                    let status = if token.revoked_at.is_some() { "revoked" }
                        else if token.expires_at.is_some_and(|at| at <= now) { "expired" }
                        else { "active" };
                    view! {
                        <tr>
                            <td>{token.name.clone()}</td>
                            <td><code>{token.prefix.clone()} "…"</code></td>
                            <td>{format_time(token.created_at)}</td>
                            <td>{format_optional_time(token.expires_at, "never")}</td>
                            <td>{format_optional_time(token.last_used_at, "never")}</td>
                            <td>{status}</td>
                            <td>
                                {(status == "active").then(|| view! {
                                    <ActionForm action=revoke>
                                        <input type="hidden" name="token_id" value=token.id.0/>
                                        <button type="submit" class="danger">"Revoke"</button>
                                    </ActionForm>
                                })}
                            </td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }.into_any()
}
