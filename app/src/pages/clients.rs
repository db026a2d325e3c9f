//! Client applications with their per-instance credentials (API keys shown once,
//! rotated with an overlap, revoked), and the data classes page (built-in and custom).

use crate::api::admin::list_teams;
use crate::api::clients::{
    ClientAppList, CreateClientApp, CreateDataClass, DataClasses, DeleteClientApp, DeleteDataClass, IssueCredential, Issued, RevokeCredential,
    RotateCredential, list_client_apps, list_data_classes,
};
use crate::auth::use_me;
use crate::components::{ActionOutcome, ErrorMessage, FlashMessage, Loaded, SecretOutcome, format_optional_time, format_time};
use crate::flash::Flash;
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;
use store::{ClientApp, ClientKind, CredentialKind, Principal, Role};

fn issued_flash(issued: Issued) -> Flash {
    issued.flash
}

#[derive(Clone, Copy)]
struct CredentialActions {
    issue: ServerAction<IssueCredential>,
    rotate: ServerAction<RotateCredential>,
    revoke: ServerAction<RevokeCredential>,
    delete: ServerAction<DeleteClientApp>,
}

#[component]
pub fn ClientsPage() -> impl IntoView {
    let me = use_me();
    let create = ServerAction::<CreateClientApp>::new();
    let actions = CredentialActions {
        issue: ServerAction::new(),
        rotate: ServerAction::new(),
        revoke: ServerAction::new(),
        delete: ServerAction::new(),
    };
    let apps = Resource::new(
        move || (create.version().get(), actions.issue.version().get(), actions.rotate.version().get(), actions.revoke.version().get(), actions.delete.version().get()),
        |_| list_client_apps(),
    );
    let teams = Resource::new(|| (), |_| list_teams());
    let can_register = me.as_ref().is_some_and(|me| me.role != Role::Auditor);
    let render_me = me.clone();
    view! {
        <Title text="Client applications"/>
        <h1>"Client applications"</h1>
        <p>"The services, partners, mobile and web applications that call your APIs. Give every instance its own credential, so one can be revoked without the others."</p>
        <FlashMessage/>
        <SecretOutcome value=actions.issue.value() to_flash=issued_flash/>
        <SecretOutcome value=actions.rotate.value() to_flash=issued_flash/>
        {move || actions.revoke.value().get().and_then(Result::err).map(|error| view! { <ErrorMessage error/> })}
        {move || actions.delete.value().get().and_then(Result::err).map(|error| view! { <ErrorMessage error/> })}
        <Loaded resource=apps render=move |list: ClientAppList| apps_view(list, render_me.clone(), actions)/>
        {can_register.then(|| view! {
            <section class="card" id="register-client">
                <h2>"Register a client application"</h2>
                <ActionForm action=create>
                    <label>"Team"
                        <select name="team_id" required>
                            <Suspense>
                                {move || {
                                    let me = me.clone();
                                    Suspend::new(async move {
                                        teams.await.unwrap_or_default().into_iter()
                                            .filter(|team| me.as_ref().is_some_and(|me| me.can_change_owned_by(team.id)))
                                            .map(|team| view! { <option value=team.id.0>{team.name}</option> })
                                            .collect_view()
                                    })
                                }}
                            </Suspense>
                        </select>
                    </label>
                    <label>"Name" <input type="text" name="name" required maxlength="120"/></label>
                    <label>"Type"
                        <select name="kind">
                            {ClientKind::ALL.into_iter().map(|kind| view! { <option value=kind.as_str()>{kind.as_str()}</option> }).collect_view()}
                        </select>
                    </label>
                    <label>"Description" <input type="text" name="description" maxlength="1000"/></label>
                    <label>"Rotate API keys every (days)" <input type="number" name="rotation_days" min="1" max="3650" value="90" required/></label>
                    <button type="submit">"Register client application"</button>
                </ActionForm>
                <ActionOutcome value=create.value() success="Client application registered."/>
            </section>
        })}
    }
}

fn apps_view(ClientAppList { now, apps: list }: ClientAppList, me: Option<Principal>, actions: CredentialActions) -> AnyView {
    if list.is_empty() {
        return view! { <section class="card"><p>"No client applications registered yet."</p></section> }.into_any();
    }
    list.into_iter()
        .map(|app| {
            let can_change = me.as_ref().is_some_and(|me| me.can_change_owned_by(app.team_id));
            let app_id = app.id.0;
            view! {
                <section class="card" data-testid="client-app">
                    <h2>{app.name.clone()}</h2>
                    <p>{app.kind.as_str()}" · team "{app.team_name.clone()}" · keys rotate every "{app.rotation_days}" days · "{app.description.clone()}</p>
                    {credentials_table(&app, can_change, now, actions)}
                    {can_change.then(|| view! {
                        <ActionForm action=actions.issue>
                            <input type="hidden" name="client_app_id" value=app_id/>
                            <label>"Credential"
                                <select name="kind">
                                    <option value=CredentialKind::ApiKey.as_str()>"API key"</option>
                                    <option value=CredentialKind::Hmac.as_str()>"HMAC signing key"</option>
                                    <option value=CredentialKind::Mtls.as_str()>"mTLS certificate identity"</option>
                                </select>
                            </label>
                            <label>"Instance" <input type="text" name="instance" required maxlength="120" placeholder="orders-eu-1"/></label>
                            <label>"Certificate identity (mTLS)" <input type="text" name="identity" placeholder="spiffe://acme/orders"/></label>
                            <button type="submit">"Issue credential"</button>
                        </ActionForm>
                        <ActionForm action=actions.delete>
                            <input type="hidden" name="client_app_id" value=app_id/>
                            <button type="submit" class="danger">"Delete application"</button>
                        </ActionForm>
                    })}
                </section>
            }
        })
        .collect_view()
        .into_any()
}

fn credentials_table(app: &ClientApp, can_change: bool, now: i64, actions: CredentialActions) -> AnyView {
    if app.credentials.is_empty() {
        return view! { <p>"No credentials yet."</p> }.into_any();
    }
    let app_id = app.id.0;
    view! {
        <table data-testid="credentials">
            <thead><tr><th>"Instance"</th><th>"Kind"</th><th>"Key or identity"</th><th>"Issued"</th><th>"Expires"</th><th>"Status"</th><th></th></tr></thead>
            <tbody>
                {app.credentials.iter().map(|credential| {
                    let active = credential.is_active(now);
                    let status = if credential.revoked_at.is_some() { "revoked" } else if !active { "expired" } else if credential.expires_at.is_some() { "rotated, still valid" } else { "active" };
                    let shown = match credential.kind {
                        CredentialKind::ApiKey => credential.prefix.clone().map(|p| format!("{p}…")).unwrap_or_default(),
                        CredentialKind::Hmac => format!("key id {}", credential.prefix.clone().unwrap_or_default()),
                        CredentialKind::Mtls => credential.identity.clone().unwrap_or_default(),
                    };
                    let rotatable = active && credential.kind != CredentialKind::Mtls && credential.expires_at.is_none();
                    let (credential_id, revocable) = (credential.id.0, credential.revoked_at.is_none());
                    view! {
                        <tr>
                            <td>{credential.instance.clone()}</td>
                            <td>{credential.kind.as_str()}</td>
                            <td><code>{shown}</code></td>
                            <td>{format_time(credential.created_at)}</td>
                            <td>{format_optional_time(credential.expires_at, "—")}</td>
                            <td>{status}</td>
                            <td>
                                {(can_change && rotatable).then(|| view! {
                                    <ActionForm action=actions.rotate>
                                        <input type="hidden" name="client_app_id" value=app_id/>
                                        <input type="hidden" name="credential_id" value=credential_id/>
                                        <label>"Overlap (minutes)" <input type="number" name="overlap_minutes" min="0" max="10080" value="60"/></label>
                                        <button type="submit">"Rotate"</button>
                                    </ActionForm>
                                })}
                                {(can_change && revocable).then(|| view! {
                                    <ActionForm action=actions.revoke>
                                        <input type="hidden" name="client_app_id" value=app_id/>
                                        <input type="hidden" name="credential_id" value=credential_id/>
                                        <button type="submit" class="danger">"Revoke"</button>
                                    </ActionForm>
                                })}
                            </td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

#[component]
pub fn DataClassesPage() -> impl IntoView {
    let me = use_me();
    let create = ServerAction::<CreateDataClass>::new();
    let delete = ServerAction::<DeleteDataClass>::new();
    let classes = Resource::new(move || (create.version().get(), delete.version().get()), |_| list_data_classes());
    let can_define = me.as_ref().is_some_and(|me| matches!(me.role, Role::Admin | Role::Security));
    view! {
        <Title text="Data classes"/>
        <h1>"Data classes"</h1>
        <p>"Fields are assigned classes at import from "<code>"x-data-class"</code>", custom keywords and patterns, formats and names; API owners correct them per operation."</p>
        {move || delete.value().get().and_then(Result::err).map(|error| view! { <ErrorMessage error/> })}
        <Loaded resource=classes render=move |classes: DataClasses| classes_view(classes, can_define, delete)/>
        {can_define.then(|| view! {
            <section class="card" id="define-class">
                <h2>"Define a class"</h2>
                <ActionForm action=create>
                    <label>"Name" <input type="text" name="name" required maxlength="48" placeholder="loyalty_number"/></label>
                    <label>"Description" <input type="text" name="description" maxlength="500"/></label>
                    <label>"Keywords (field names, comma-separated)" <input type="text" name="keywords" placeholder="loyaltyNumber, memberId"/></label>
                    <label>"Patterns (regular expressions, one per line)" <textarea name="patterns" rows="3" spellcheck="false"></textarea></label>
                    <button type="submit">"Define class"</button>
                </ActionForm>
                <ActionOutcome value=create.value() success="Class defined; every API was classified again."/>
            </section>
        })}
    }
}

fn classes_view(classes: DataClasses, can_define: bool, delete: ServerAction<DeleteDataClass>) -> AnyView {
    view! {
        <section class="card">
            <h2>"Built-in"</h2>
            <p data-testid="built-in-classes">{classes.built_in.join(", ")}</p>
        </section>
        <section class="card">
            <h2>"Custom"</h2>
            {if classes.custom.is_empty() {
                view! { <p>"No custom classes yet."</p> }.into_any()
            } else {
                view! {
                    <table data-testid="custom-classes">
                        <thead><tr><th>"Name"</th><th>"Description"</th><th>"Keywords"</th><th>"Patterns"</th><th></th></tr></thead>
                        <tbody>
                            {classes.custom.into_iter().map(|class| view! {
                                <tr>
                                    <td>{class.name.clone()}</td>
                                    <td>{class.description.clone()}</td>
                                    <td>{class.keywords.join(", ")}</td>
                                    <td><code>{class.patterns.join("  ")}</code></td>
                                    <td>{can_define.then(|| view! {
                                        <ActionForm action=delete>
                                            <input type="hidden" name="name" value=class.name.clone()/>
                                            <button type="submit" class="danger">"Delete"</button>
                                        </ActionForm>
                                    })}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </section>
    }
    .into_any()
}
