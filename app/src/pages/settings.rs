//! Settings: one's own profile, password and second factor, and the navigation between
//! settings pages.

use crate::api::account::{BeginMfa, ChangePassword, ConfirmMfa, TwoFactorStatus, RemoveMfa, mfa_status};
use crate::auth::use_me;
use crate::components::{ActionOutcome, ErrorMessage, Loaded};
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
                <A href="/settings/sso">"Single sign-on"</A>
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
        <TwoFactor/>
    }
}

/// Two-factor authentication: set up an authenticator app (QR code, confirmation code,
/// recovery codes shown once), or remove it with a current code.
#[component]
fn TwoFactor() -> impl IntoView {
    let begin = ServerAction::<BeginMfa>::new();
    let confirm = ServerAction::<ConfirmMfa>::new();
    let remove = ServerAction::<RemoveMfa>::new();
    let confirmed = move || confirm.value().get().is_some_and(|outcome| outcome.is_ok());
    let removed = move || remove.value().get().is_some_and(|outcome| outcome.is_ok());
    let status = Resource::new(move || (confirmed(), removed()), |_| mfa_status());
    let render_status = move |status: TwoFactorStatus| status_view(status, begin, remove);
    let required = leptos_router::hooks::use_query_map().read_untracked().get("notice").as_deref() == Some("enroll-mfa");
    view! {
        <section class="card" id="two-factor">
            <h2>"Two-factor authentication"</h2>
            {(required && !confirmed()).then(|| view! {
                <p class="error" role="alert" data-testid="mfa-required">"Your role requires two-factor authentication. Set it up to continue."</p>
            })}
            <Loaded resource=status render=render_status/>
            {move || begin.value().get().map(|outcome| match outcome {
                Err(error) => view! { <ErrorMessage error/> }.into_any(),
                Ok(_) if confirmed() => ().into_any(),
                Ok(enrollment) => view! {
                    <div data-testid="mfa-enrollment">
                        <p>"Scan this code with an authenticator app, or type the key in, then enter the code it shows."</p>
                        <div class="qr" inner_html=enrollment.qr_svg></div>
                        <p>"Key: "<code data-testid="mfa-secret">{enrollment.secret}</code></p>
                        <ActionForm action=confirm>
                            <label>"Code from the app"
                                <input type="text" name="code" inputmode="numeric" autocomplete="one-time-code" required maxlength="6"/>
                            </label>
                            <button type="submit">"Confirm"</button>
                        </ActionForm>
                        {move || confirm.value().get().and_then(Result::err).map(|error| view! { <ErrorMessage error/> })}
                    </div>
                }.into_any(),
            })}
            {move || confirm.value().get().and_then(Result::ok).map(|codes| view! {
                <div class="success" role="status">
                    <p>"Two-factor authentication is on. Keep these recovery codes somewhere safe: each signs you in once if you lose the app, and they are not shown again."</p>
                    <ul data-testid="recovery-codes">{codes.into_iter().map(|code| view! { <li><code>{code}</code></li> }).collect_view()}</ul>
                </div>
            })}
        </section>
    }
}

fn status_view(status: TwoFactorStatus, begin: ServerAction<BeginMfa>, remove: ServerAction<RemoveMfa>) -> AnyView {
    if !status.enrolled {
        return view! {
            <p data-testid="mfa-status">"Off: a password alone signs you in."</p>
            <ActionForm action=begin>
                <button type="submit">"Set up an authenticator app"</button>
            </ActionForm>
        }
        .into_any();
    }
    view! {
        <p data-testid="mfa-status">{format!("On: {} recovery codes left.", status.recovery_codes_left)}</p>
        <ActionForm action=remove>
            <label>"Current code or a recovery code" <input type="text" name="code" autocomplete="one-time-code" required/></label>
            <button type="submit" class="danger">"Turn off two-factor authentication"</button>
        </ActionForm>
        {move || remove.value().get().and_then(Result::err).map(|error| view! { <ErrorMessage error/> })}
    }
    .into_any()
}
