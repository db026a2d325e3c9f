//! User administration: the list with a creation form, and one user's page (role, teams,
//! disable, password reset). Admins change; auditors read.

use crate::api::sso::{UnlinkUserIdentity, list_user_identities};
use store::sso::LinkedIdentity;
use crate::api::admin::{
    AccountWithLink, CreateUser, ResetUserMfa, ResetUserPassword, SetSignInPolicy, SetUserDisabled, SetUserTeam, SignInPolicy,
    UpdateUser, get_sign_in_policy, get_user, list_teams, list_users,
};
use crate::auth::use_me;
use crate::components::{ActionOutcome, ErrorMessage, FlashMessage, Forbidden, Loaded, SecretOutcome, format_time};
use crate::pages::SettingsNav;
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;
use store::{Account, Role};

fn status_of(account: &Account) -> &'static str {
    if account.is_disabled() {
        "disabled"
    } else if !account.has_password {
        "invited"
    } else {
        "active"
    }
}

fn flash_of(done: AccountWithLink) -> crate::flash::Flash {
    done.flash
}

fn role_options(selected: Option<Role>) -> impl IntoView {
    Role::ALL
        .into_iter()
        .map(|role| view! { <option value=role.as_str() selected=selected == Some(role)>{role.label()}</option> })
        .collect_view()
}

#[component]
pub fn UsersPage() -> impl IntoView {
    let Some(me) = use_me().filter(|me| me.can_read_users()) else {
        return view! { <Title text="Users"/><h1>"Settings"</h1><SettingsNav/><Forbidden/> }.into_any();
    };
    let can_edit = me.can_administer_users();
    let create = ServerAction::<CreateUser>::new();
    let users = Resource::new(move || create.version().get(), |_| list_users());
    let teams = Resource::new(|| (), |_| list_teams());
    view! {
        <Title text="Users"/>
        <h1>"Settings"</h1>
        <SettingsNav/>
        <FlashMessage/>
        {can_edit.then(|| view! {
            <section class="card">
                <h2>"New user"</h2>
                <ActionForm action=create>
                    <label>"Email" <input type="email" name="email" required/></label>
                    <label>"Name" <input type="text" name="display_name" maxlength="100"/></label>
                    <label>"Role" <select name="role">{role_options(Some(Role::Developer))}</select></label>
                    <label>"Team"
                        <select name="team_id">
                            <option value="">"no team"</option>
                            <Suspense>
                                {move || Suspend::new(async move {
                                    teams.await.unwrap_or_default().into_iter().map(|team| view! {
                                        <option value=team.id.0>{team.name}</option>
                                    }).collect_view()
                                })}
                            </Suspense>
                        </select>
                    </label>
                    <label>"Initial password (leave empty to create an invitation link)"
                        <input type="password" name="password" autocomplete="new-password" maxlength="128"/>
                    </label>
                    <button type="submit">"Create user"</button>
                </ActionForm>
                <SecretOutcome value=create.value() to_flash=flash_of/>
            </section>
        })}
        <section class="card">
            <h2>"Users"</h2>
            <Loaded resource=users render=users_table/>
        </section>
        <SignInPolicySection can_edit/>
    }
    .into_any()
}

/// Which roles must have a second factor; admins change it, auditors read it.
#[component]
fn SignInPolicySection(can_edit: bool) -> impl IntoView {
    let save = ServerAction::<SetSignInPolicy>::new();
    let policy = Resource::new(move || save.version().get(), |_| get_sign_in_policy());
    let render = move |policy: SignInPolicy| {
        let source = if policy.configured_default { " (the configured default: PALISADE_MFA_REQUIRED_ROLES)" } else { "" };
        let required = policy.mfa_required_roles.clone();
        let names: Vec<&str> = required.iter().map(|role| role.label()).collect();
        view! {
            <p data-testid="mfa-policy">
                {if names.is_empty() { "No role needs a second factor".to_owned() } else { format!("A second factor is required for: {}", names.join(", ")) }}
                {source}
            </p>
            {can_edit.then(|| view! {
                <ActionForm action=save>
                    {Role::ALL.into_iter().map(|role| view! {
                        <label class="inline">
                            <input type="checkbox" name=role.as_str() value="on" checked=required.contains(&role)/>
                            {format!(" {}", role.label())}
                        </label>
                    }).collect_view()}
                    <button type="submit">"Save sign-in policy"</button>
                </ActionForm>
                <ActionOutcome value=save.value() success="Sign-in policy saved; it applies from each user's next sign-in."/>
            })}
        }
        .into_any()
    };
    view! {
        <section class="card" id="sign-in-policy">
            <h2>"Sign-in policy"</h2>
            <Loaded resource=policy render=render/>
        </section>
    }
}

#[component]
pub fn UserPage() -> impl IntoView {
    let Some(me) = use_me().filter(|me| me.can_read_users()) else {
        return view! { <Title text="User"/><h1>"Settings"</h1><SettingsNav/><Forbidden/> }.into_any();
    };
    let can_edit = me.can_administer_users();
    let params = use_params_map();
    let account_id = move || params.read().get("id").and_then(|id| id.parse::<i64>().ok()).unwrap_or(-1);
    let update = ServerAction::<UpdateUser>::new();
    let set_team = ServerAction::<SetUserTeam>::new();
    let disable = ServerAction::<SetUserDisabled>::new();
    let reset = ServerAction::<ResetUserPassword>::new();
    let reset_mfa = ServerAction::<ResetUserMfa>::new();
    let user = Resource::new(
        move || (account_id(), update.version().get(), set_team.version().get(), disable.version().get(), reset.version().get()),
        |(id, ..)| get_user(id),
    );
    let teams = Resource::new(|| (), |_| list_teams());
    view! {
        <Title text="User"/>
        <h1>"Settings"</h1>
        <SettingsNav/>
        <FlashMessage/>
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                let account = match user.await {
                    Ok(account) => account,
                    Err(error) => return view! { <ErrorMessage error/> }.into_any(),
                };
                let all_teams = teams.await.unwrap_or_default();
                let id = account.id.0;
                let member_of = account.teams.clone();
                let (name, role, disabled) = (account.display_name.clone(), account.role, account.is_disabled());
                view! {
                    <section class="card">
                        <h2>{account.email.clone()}</h2>
                        <dl>
                            <dt>"Name"</dt><dd>{account.display_name.clone()}</dd>
                            <dt>"Role"</dt><dd>{account.role.label()}</dd>
                            <dt>"Status"</dt><dd data-testid="status">{status_of(&account)}</dd>
                            <dt>"Created"</dt><dd>{format_time(account.created_at)}</dd>
                        </dl>
                    </section>
                    <Identities account_id=id can_edit/>
                    {can_edit.then(|| view! {
                        <section class="card">
                            <h2>"Name and role"</h2>
                            <ActionForm action=update>
                                <input type="hidden" name="account_id" value=id/>
                                <label>"Name" <input type="text" name="display_name" value=name maxlength="100"/></label>
                                <label>"Role" <select name="role">{role_options(Some(role))}</select></label>
                                <button type="submit">"Save"</button>
                            </ActionForm>
                            <ActionOutcome value=update.value() success="Saved."/>
                        </section>
                        <section class="card">
                            <h2>"Teams"</h2>
                            <ul class="plain">
                                {all_teams.into_iter().map(|team| {
                                    let member = member_of.iter().any(|t| t.id == team.id);
                                    view! {
                                        <li>
                                            <ActionForm action=set_team>
                                                <input type="hidden" name="account_id" value=id/>
                                                <input type="hidden" name="team_id" value=team.id.0/>
                                                <input type="hidden" name="member" value=(!member).to_string()/>
                                                {team.name.clone()} {if member { " (member) " } else { " " }}
                                                <button type="submit" class="small">{if member { "Remove" } else { "Add" }}</button>
                                            </ActionForm>
                                        </li>
                                    }
                                }).collect_view()}
                            </ul>
                            <ActionOutcome value=set_team.value() success="Teams updated."/>
                        </section>
                        <section class="card">
                            <h2>"Access"</h2>
                            <ActionForm action=disable>
                                <input type="hidden" name="account_id" value=id/>
                                <input type="hidden" name="disabled" value=(!disabled).to_string()/>
                                <button type="submit" class="danger">
                                    {if disabled { "Enable account" } else { "Disable account" }}
                                </button>
                            </ActionForm>
                            <ActionOutcome value=disable.value() success="Access updated."/>
                            <h3>"Reset password"</h3>
                            <ActionForm action=reset>
                                <input type="hidden" name="account_id" value=id/>
                                <label>"New password (leave empty to create a one-time reset link)"
                                    <input type="password" name="password" autocomplete="new-password" maxlength="128"/>
                                </label>
                                <button type="submit">"Reset password"</button>
                            </ActionForm>
                            <SecretOutcome value=reset.value() to_flash=flash_of/>
                            <h3>"Two-factor authentication"</h3>
                            <p>"For a user who lost their authenticator and their recovery codes: they set up a new one at their next sign-in."</p>
                            <ActionForm action=reset_mfa>
                                <input type="hidden" name="account_id" value=id/>
                                <button type="submit" class="danger">"Remove their second factor"</button>
                            </ActionForm>
                            <ActionOutcome value=reset_mfa.value() success="Second factor removed."/>
                        </section>
                    })}
                }
                .into_any()
            })}
        </Suspense>
    }
    .into_any()
}

fn users_table(list: Vec<Account>) -> impl IntoView {
    view! {
        <table data-testid="users">
            <thead><tr><th>"Email"</th><th>"Name"</th><th>"Role"</th><th>"Teams"</th><th>"Status"</th><th>"Created"</th></tr></thead>
            <tbody>
                {list.into_iter().map(|account| {
                    let teams = account.teams.iter().map(|t| t.name.clone()).collect::<Vec<_>>().join(", ");
                    view! {
                        <tr>
                            <td><a href=format!("/settings/users/{}", account.id)>{account.email.clone()}</a></td>
                            <td>{account.display_name.clone()}</td>
                            <td>{account.role.label()}</td>
                            <td>{teams}</td>
                            <td>{status_of(&account)}</td>
                            <td>{format_time(account.created_at)}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
}

/// The provider identities an account signs in with; admins unlink one.
#[component]
fn Identities(account_id: i64, can_edit: bool) -> impl IntoView {
    let unlink = ServerAction::<UnlinkUserIdentity>::new();
    let identities = Resource::new(move || unlink.version().get(), move |_| list_user_identities(account_id));
    let render = move |list: Vec<LinkedIdentity>| {
        if list.is_empty() {
            return view! { <p>"Signs in with a password only."</p> }.into_any();
        }
        view! {
            <table data-testid="identities">
                <thead><tr><th>"Provider"</th><th>"Subject"</th><th>"Linked"</th><th>"Last sign-in"</th><th></th></tr></thead>
                <tbody>
                    {list.into_iter().map(|identity| view! {
                        <tr>
                            <td>{identity.provider.clone()}</td>
                            <td><code>{identity.subject.clone()}</code></td>
                            <td>{format_time(identity.linked_at)}</td>
                            <td>{identity.last_login_at.map(format_time).unwrap_or_default()}</td>
                            <td>{can_edit.then(|| view! {
                                <ActionForm action=unlink>
                                    <input type="hidden" name="account_id" value=account_id/>
                                    <input type="hidden" name="provider_id" value=identity.provider_id/>
                                    <button type="submit" class="small danger">"Unlink"</button>
                                </ActionForm>
                            })}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        }
        .into_any()
    };
    view! {
        <section class="card">
            <h2>"Single sign-on"</h2>
            <Loaded resource=identities render=render/>
            <ActionOutcome value=unlink.value() success="Unlinked: their next sign-in there counts as a first one."/>
        </section>
    }
}
