//! The sign-in page: a plain form posted to `/auth/login`, so it works without JavaScript.

use crate::auth::use_me;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::Redirect;
use leptos_router::hooks::use_query_map;

fn error_text(code: &str) -> &'static str {
    match code {
        "throttled" => "Too many failed sign-ins. Wait a little and try again.",
        "origin" => "This sign-in came from another site and was refused.",
        "code" => "That code is not right, or it was used already.",
        "expired-code" => "The sign-in took too long. Start again with your password.",
        _ => "Email or password is incorrect.",
    }
}

fn notice_text(code: &str) -> Option<&'static str> {
    match code {
        "signed-out" => Some("You have signed out."),
        "password-set" => Some("Your password is set. Sign in with it now."),
        "expired" => Some("Your session has ended. Sign in again."),
        _ => None,
    }
}

#[component]
pub fn LoginPage() -> impl IntoView {
    let query = use_query_map();
    // Signed in already: only a confirmation for a sensitive action asks again.
    let reauth = query.read_untracked().get("reauth").is_some();
    if use_me().is_some() && !reauth {
        return view! { <Redirect path="/"/> }.into_any();
    }
    let error = move || query.read().get("error").map(|code| error_text(&code));
    let notice = move || query.read().get("notice").and_then(|code| notice_text(&code));
    let next = move || query.read().get("next").unwrap_or_default();
    if query.read_untracked().get("step").as_deref() == Some("code") {
        return view! {
            <Title text="Sign in"/>
            <main class="login">
                <form class="card" method="post" action="/auth/mfa">
                    <h1>"Two-factor authentication"</h1>
                    {move || error().map(|text| view! { <p class="error" role="alert" data-testid="login-error">{text}</p> })}
                    <label>"Code from your authenticator app"
                        <input type="text" name="code" autocomplete="one-time-code" required maxlength="20" autofocus/>
                    </label>
                    <p class="hint">"Lost the app? Enter one of your recovery codes instead."</p>
                    <button type="submit">"Verify"</button>
                </form>
            </main>
        }
        .into_any();
    }
    view! {
        <Title text="Sign in"/>
        <main class="login">
            <form class="card" method="post" action="/auth/login">
                <h1>"Sign in to Palisade"</h1>
                {reauth.then(|| view! { <p class="hint" data-testid="reauth">"Confirm it is you: sign in again to continue."</p> })}
                {move || notice().map(|text| view! { <p class="success" role="status">{text}</p> })}
                {move || error().map(|text| view! { <p class="error" role="alert" data-testid="login-error">{text}</p> })}
                <input type="hidden" name="next" value=next/>
                <label>"Email" <input type="email" name="email" autocomplete="username" required/></label>
                <label>
                    "Password"
                    <input type="password" name="password" autocomplete="current-password" required maxlength="128"/>
                </label>
                <button type="submit">"Sign in"</button>
            </form>
        </main>
    }
    .into_any()
}
