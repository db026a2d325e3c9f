//! Setting a password from a one-time invitation or reset link.

use crate::api::setup::{CompleteSetup, check_setup_link};
use crate::components::ErrorMessage;
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

#[component]
pub fn SetupPasswordPage() -> impl IntoView {
    let query = use_query_map();
    let token = move || query.read().get("token").unwrap_or_default();
    let link = Resource::new(token, check_setup_link);
    let complete = ServerAction::<CompleteSetup>::new();
    view! {
        <Title text="Set your password"/>
        <main class="login">
            <section class="card">
                <h1>"Set your password"</h1>
                <Suspense fallback=|| view! { <p>"Checking the link…"</p> }>
                    {move || Suspend::new(async move {
                        match link.await {
                            Err(error) => view! { <ErrorMessage error/> }.into_any(),
                            Ok(email) => view! {
                                <p>"For " <strong>{email}</strong> ". Use 12 to 128 characters."</p>
                                <ActionForm action=complete>
                                    <input type="hidden" name="token" value=token()/>
                                    <label>"Password" <input type="password" name="password" autocomplete="new-password" required minlength="12" maxlength="128"/></label>
                                    <label>"Password again" <input type="password" name="password_again" autocomplete="new-password" required/></label>
                                    <button type="submit">"Set password"</button>
                                </ActionForm>
                            }.into_any(),
                        }
                    })}
                </Suspense>
                {move || complete.value().get().and_then(Result::err).map(|error| view! { <ErrorMessage error/> })}
            </section>
        </main>
    }
}
