//! The sign-in page: a plain form posted to `/auth/login`, so it works without JavaScript.

use crate::api::sso::sign_in_providers;
use crate::auth::use_me;
use crate::url::percent_encode;
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
        "sso-no-role" => "Your identity provider signed you in, but none of your groups gives access to Palisade. Ask an administrator to map one of your groups to a role.",
        "sso-no-account" => "Your identity provider signed you in, but there is no Palisade account for you. Ask an administrator for one.",
        "sso-email-taken" => "A Palisade account with your email already exists and cannot be linked to this provider. Sign in with its password, or ask an administrator.",
        "sso-no-email" => "Your identity provider did not share your email address, which Palisade needs for a new account.",
        "sso-disabled" => "Your Palisade account is disabled.",
        "sso-expired" => "The sign-in through your identity provider took too long. Try again.",
        "sso-denied" => "Your identity provider did not sign you in.",
        "sso-unavailable" => "That identity provider is not available right now. Try again later, or sign in with a password.",
        "sso-failed" => "The sign-in through your identity provider could not be verified, and was refused. Try again.",
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

/// A link per enabled single sign-on provider, carrying where to go after.
#[component]
fn ProviderButtons(next: impl Fn() -> String + Send + Sync + 'static, reauth: bool) -> impl IntoView {
    let providers = Resource::new(|| (), |_| sign_in_providers());
    let next = Signal::derive(next);
    view! {
        <Suspense>
            {move || Suspend::new(async move {
                let providers = providers.await.unwrap_or_default();
                (!providers.is_empty()).then(|| view! {
                    <div class="providers">
                        <p class="hint">"Or sign in with your organisation:"</p>
                        {providers.into_iter().map(|provider| {
                            let href = move || {
                                let mut href = format!("/auth/oidc/{}?next={}", provider.slug, percent_encode(&next.get()));
                                if reauth {
                                    href.push_str("&reauth=1");
                                }
                                href
                            };
                            view! { <a class="button" rel="external" href=href data-testid="sso-button">{format!("Sign in with {}", provider.display_name)}</a> }
                        }).collect_view()}
                    </div>
                })
            })}
        </Suspense>
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
                <ProviderButtons next reauth/>
            </form>
        </main>
    }
    .into_any()
}
