//! The API inventory: the list with registration from an OpenAPI document, and one API's
//! page with its operations and re-import.

use crate::api::admin::list_teams;
use crate::api::inventory::{ImportApi, ReimportApi, SetApiLifecycle, get_api, get_api_posture, list_apis};
use crate::auth::use_me;
use crate::api::clients::{ClientAppList, list_client_apps, list_data_classes};
use crate::components::{ErrorMessage, Loaded, format_optional_time, format_time};
use crate::pages::protection::{ProtectionActions, ProtectionForms, ProtectionSummary};
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;
use store::{ApiDetail, ApiPosture, ApiSummary, Finding, Operation, Principal, SpecDiff, Team};

#[component]
pub fn ApisPage() -> impl IntoView {
    let me = use_me();
    let import = ServerAction::<ImportApi>::new();
    let apis = Resource::new(move || import.version().get(), |_| list_apis());
    let can_register = me.as_ref().is_some_and(|me| me.role != store::Role::Auditor);
    view! {
        <Title text="APIs"/>
        <h1>"APIs"</h1>
        <section class="card">
            <h2>"Inventory"</h2>
            <Loaded resource=apis render=apis_table/>
        </section>
        {can_register.then(|| view! { <RegisterApi import me=me.clone()/> })}
    }
}

/// The teams a principal may register APIs for: their own, or every team for security
/// and admins.
fn registrable(me: &Option<Principal>, all: Vec<Team>) -> Vec<Team> {
    match me {
        Some(me) => all.into_iter().filter(|team| me.can_change_owned_by(team.id)).collect(),
        None => Vec::new(),
    }
}

#[component]
fn RegisterApi(import: ServerAction<ImportApi>, me: Option<Principal>) -> impl IntoView {
    let teams = Resource::new(|| (), |_| list_teams());
    let document = NodeRef::<leptos::html::Textarea>::new();
    view! {
        <section class="card">
            <h2>"Register an API"</h2>
            <p>"Paste or choose its OpenAPI 3.0 or 3.1 document, JSON or YAML. CI can do the same with "
               <code>"POST /api/v1/apis"</code> "."</p>
            <ActionForm action=import>
                <label>"Team"
                    <select name="team_id" required>
                        <Suspense>
                            {move || {
                                let me = me.clone();
                                Suspend::new(async move {
                                    registrable(&me, teams.await.unwrap_or_default()).into_iter().map(|team| view! {
                                        <option value=team.id.0>{team.name}</option>
                                    }).collect_view()
                                })
                            }}
                        </Suspense>
                    </select>
                </label>
                <label>"Environment" <input type="text" name="environment" value="production" maxlength="32"/></label>
                <DocumentFile target=document/>
                <label>"OpenAPI document"
                    <textarea name="document" rows="12" required spellcheck="false" node_ref=document></textarea>
                </label>
                <button type="submit">"Import"</button>
            </ActionForm>
            <Progress pending=import.pending()/>
            {move || match import.value().get() {
                Some(Err(error)) => view! { <ErrorMessage error/> }.into_any(),
                Some(Ok(api)) => view! {
                    <p class="success" role="status">
                        "Registered " <a href=format!("/apis/{}", api.summary.id)>{api.summary.name.clone()}</a>
                        " with " {api.summary.operation_count} " operations."
                    </p>
                }.into_any(),
                None => ().into_any(),
            }}
        </section>
    }
}

/// A file picker that puts the chosen document's text into the form's field, so a file
/// goes through the same checks as a pasted document.
#[component]
fn DocumentFile(target: NodeRef<leptos::html::Textarea>) -> impl IntoView {
    let on_change = move |event: leptos::ev::Event| {
        #[cfg(feature = "hydrate")]
        {
            use wasm_bindgen::JsCast;
            let Some(input) = event.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok()) else { return };
            let Some(file) = input.files().and_then(|files| files.get(0)) else { return };
            leptos::task::spawn_local(async move {
                if let Ok(text) = wasm_bindgen_futures::JsFuture::from(file.text()).await
                    && let (Some(text), Some(area)) = (text.as_string(), target.get_untracked())
                {
                    area.set_value(&text);
                }
            });
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (event, target);
    };
    view! {
        <label>"Or choose a file"
            <input type="file" accept=".json,.yaml,.yml,application/json,application/yaml" on:change=on_change/>
        </label>
    }
}

/// Said while a document is being imported: a large one (GitHub's, 13 MB) takes seconds.
#[component]
fn Progress(pending: Memo<bool>) -> impl IntoView {
    move || pending.get().then(|| view! {
        <p class="progress" aria-live="polite" data-testid="import-progress">"Importing: reading, checking every reference, classifying the fields…"</p>
    })
}

fn apis_table(list: Vec<ApiSummary>) -> AnyView {
    if list.is_empty() {
        return view! {
            <p>"No APIs registered yet. Register one below, or from CI with " <code>"POST /api/v1/apis"</code> "."</p>
        }
        .into_any();
    }
    view! {
        <table data-testid="apis">
            <thead><tr><th>"API"</th><th>"Team"</th><th>"Environment"</th><th>"Version"</th><th>"Lifecycle"</th><th>"Operations"</th><th>"Data classes"</th><th>"Updated"</th></tr></thead>
            <tbody>
                {list.into_iter().map(|api| view! {
                    <tr>
                        <td><a href=format!("/apis/{}", api.id)>{api.name}</a></td>
                        <td>{api.team_name}</td>
                        <td>{api.environment}</td>
                        <td>{api.version}</td>
                        <td>{api.lifecycle.as_str()}</td>
                        <td>{api.operation_count}</td>
                        <td>{class_list(api.data_classes)}</td>
                        <td>{format_time(api.updated_at)}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

#[component]
pub fn ApiPage() -> impl IntoView {
    let params = use_params_map();
    let api_id = move || params.read().get("api_id").and_then(|id| id.parse::<i64>().ok()).unwrap_or(-1);
    let reimport = ServerAction::<ReimportApi>::new();
    let lifecycle = ServerAction::<SetApiLifecycle>::new();
    let protection = ProtectionActions::new();
    let changes = move || (api_id(), reimport.version().get(), lifecycle.version().get(), protection.version());
    let api = Resource::new(changes, |(id, ..)| get_api(id));
    let posture = Resource::new(changes, |(id, ..)| get_api_posture(id));
    let apps = Resource::new(|| (), |_| list_client_apps());
    let classes = Resource::new(|| (), |_| list_data_classes());
    let me = use_me();
    view! {
        <Title text="API"/>
        <Loaded resource=api render=move |api: ApiDetail| {
            let can_change = me.as_ref().is_some_and(|me| me.can_change_owned_by(api.summary.team_id));
            view! {
                <h1>{api.summary.name.clone()}</h1>
                <ApiFacts api=api.clone()/>
                <section class="card" id="findings">
                    <h2>"Posture"</h2>
                    <Loaded resource=posture render=findings_view/>
                </section>
                <section class="card" id="protection">
                    <h2>"Protection"</h2>
                    <Loaded resource=apps render={
                        let protection = api.protection.clone();
                        move |list: ClientAppList| view! { <ProtectionSummary protection=protection.clone() apps=list.apps/> }
                    }/>
                </section>
                <section class="card" id="operations">
                    <h2>"Operations"</h2>
                    {operations_table(api.summary.id.0, &api.protection, api.operations.clone())}
                </section>
                {can_change.then(|| {
                    let forms_api = api.clone();
                    view! {
                        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
                            {move || {
                                let api = forms_api.clone();
                                Suspend::new(async move {
                                    match (apps.await, classes.await) {
                                        (Ok(list), Ok(classes)) => view! { <ProtectionForms api actions=protection apps=list.apps classes/> }.into_any(),
                                        (Err(error), _) | (_, Err(error)) => view! { <ErrorMessage error/> }.into_any(),
                                    }
                                })
                            }}
                        </Suspense>
                        <LifecycleForm lifecycle api_id=api.summary.id.0 current=api.summary.lifecycle/>
                        <Reimport reimport api_id=api.summary.id.0/>
                    }
                })}
            }
        }/>
    }
}

#[component]
fn ApiFacts(api: ApiDetail) -> impl IntoView {
    let summary = api.summary;
    view! {
        <section class="card">
            <dl class="facts">
                <dt>"Team"</dt><dd data-testid="api-team">{summary.team_name}</dd>
                <dt>"Environment"</dt><dd>{summary.environment}</dd>
                <dt>"Version"</dt><dd>{summary.version}</dd>
                <dt>"Lifecycle"</dt><dd>{summary.lifecycle.as_str()}" "{format_optional_time(summary.sunset_at, "")}</dd>
                <dt>"Base URLs"</dt><dd>{api.base_urls.join(", ")}</dd>
                <dt>"Tags"</dt><dd>{api.tags.join(", ")}</dd>
                <dt>"Contacts"</dt><dd>{api.contacts.join(", ")}</dd>
                <dt>"OpenAPI"</dt><dd>{api.openapi_version}" · SHA-256 "<code>{api.spec_digest[..12.min(api.spec_digest.len())].to_owned()}</code></dd>
                <dt>"Registered"</dt><dd>{format_time(api.created_at)}", updated "{format_time(summary.updated_at)}</dd>
            </dl>
            <p>{api.description}</p>
        </section>
    }
}

#[component]
fn LifecycleForm(lifecycle: ServerAction<SetApiLifecycle>, api_id: i64, current: store::Lifecycle) -> impl IntoView {
    let option = move |value: store::Lifecycle, label: &'static str| {
        view! { <option value=value.as_str() selected=current == value>{label}</option> }
    };
    view! {
        <section class="card" id="lifecycle">
            <h2>"Lifecycle"</h2>
            <ActionForm action=lifecycle>
                <input type="hidden" name="api_id" value=api_id/>
                <label>"Lifecycle"
                    <select name="lifecycle">
                        {option(store::Lifecycle::Active, "active")}
                        {option(store::Lifecycle::Deprecated, "deprecated")}
                        {option(store::Lifecycle::Retired, "retired")}
                    </select>
                </label>
                <label>"Sunset date (deprecated only)" <input type="date" name="sunset"/></label>
                <button type="submit">"Save lifecycle"</button>
            </ActionForm>
            <crate::components::ActionOutcome value=lifecycle.value() success="Lifecycle saved."/>
        </section>
    }
}

#[component]
fn Reimport(reimport: ServerAction<ReimportApi>, api_id: i64) -> impl IntoView {
    let document = NodeRef::<leptos::html::Textarea>::new();
    view! {
        <section class="card">
            <h2>"Re-import the document"</h2>
            <p>"Operations are replaced by a diff, all at once; settings made here stay."</p>
            <ActionForm action=reimport>
                <input type="hidden" name="api_id" value=api_id/>
                <DocumentFile target=document/>
                <label>"OpenAPI document"
                    <textarea name="document" rows="8" required spellcheck="false" node_ref=document></textarea>
                </label>
                <button type="submit">"Re-import"</button>
            </ActionForm>
            <Progress pending=reimport.pending()/>
            {move || match reimport.value().get() {
                Some(Err(error)) => view! { <ErrorMessage error/> }.into_any(),
                Some(Ok(diff)) => diff_view(diff),
                None => ().into_any(),
            }}
        </section>
    }
}

fn diff_view(diff: SpecDiff) -> AnyView {
    if diff.is_empty() {
        return view! { <p class="success" role="status">"Re-imported: no operation changed."</p> }.into_any();
    }
    let list = |title: &'static str, names: Vec<String>| {
        (!names.is_empty()).then(|| view! {
            <h3>{title}" ("{names.len()}")"</h3>
            <ul>{names.into_iter().map(|name| view! { <li><code>{name}</code></li> }).collect_view()}</ul>
        })
    };
    view! {
        <div class="success" role="status" data-testid="diff">
            <p>"Re-imported."</p>
            {list("Added", diff.added)}
            {list("Removed", diff.removed)}
            {list("Changed", diff.changed)}
        </div>
    }
    .into_any()
}

/// How callers must authenticate, in words, from the effective security requirement.
fn security_text(security: &serde_json::Value) -> String {
    match security.as_array() {
        None => "not declared".to_owned(),
        Some(alternatives) if alternatives.is_empty() || alternatives.iter().any(|a| a.as_object().is_some_and(|o| o.is_empty())) => {
            "public".to_owned()
        }
        Some(alternatives) => alternatives
            .iter()
            .filter_map(|alternative| alternative.as_object())
            .map(|schemes| schemes.keys().cloned().collect::<Vec<_>>().join(" + "))
            .collect::<Vec<_>>()
            .join(" or "),
    }
}

fn findings_view(posture: ApiPosture) -> AnyView {
    let count = posture.findings.len();
    view! {
        <p data-testid="score">"Score " <strong>{posture.score}</strong> " / 100 · " {count} " findings (OWASP API Security Top 10, 2023)"</p>
        {(!posture.findings.is_empty()).then(|| view! {
            <table data-testid="findings">
                <thead><tr><th>"Severity"</th><th>"OWASP"</th><th>"Where"</th><th>"Finding"</th><th>"Fix"</th></tr></thead>
                <tbody>
                    {posture.findings.into_iter().map(|finding: Finding| view! {
                        <tr class=format!("severity-{}", finding.severity.as_str())>
                            <td>{finding.severity.as_str()}</td>
                            <td>{finding.owasp}</td>
                            <td>{finding.operation.unwrap_or_else(|| "the whole API".to_owned())}</td>
                            <td>{finding.title}</td>
                            <td><a href=finding.fix>"settings"</a></td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        })}
    }
    .into_any()
}

fn class_list(classes: Vec<String>) -> String {
    if classes.is_empty() { "none found".to_owned() } else { classes.join(", ") }
}

/// Each class with the fields it was found in, as a tooltip.
fn class_details(hits: &[store::DataClassHit]) -> AnyView {
    let mut classes: Vec<&str> = hits.iter().map(|hit| hit.class.as_str()).collect();
    classes.sort();
    classes.dedup();
    if classes.is_empty() {
        return "—".into_any();
    }
    classes
        .into_iter()
        .map(|class| {
            let fields: Vec<String> = hits
                .iter()
                .filter(|hit| hit.class == class)
                .map(|hit| format!("{} {}", hit.direction, hit.field))
                .collect();
            view! { <span class="data-class" title=fields.join("\n")>{class.to_owned()}</span>" " }
        })
        .collect_view()
        .into_any()
}

/// How callers of an operation authenticate: Palisade's setting when there is one, else
/// what the document says.
fn authentication_text(api: &store::Protection, operation: &Operation) -> String {
    use store::protection::AuthMode;
    match store::Protection::effective(api, &operation.protection).authentication {
        Some(a) if a.mode == AuthMode::Public => "public".to_owned(),
        Some(a) => a.methods.iter().map(|m| m.kind()).collect::<Vec<_>>().join(" or "),
        None => format!("{} (document)", security_text(&operation.security)),
    }
}

fn operations_table(api_id: i64, protection: &store::Protection, operations: Vec<Operation>) -> AnyView {
    if operations.is_empty() {
        return view! { <p>"The document declares no operations."</p> }.into_any();
    }
    view! {
        <table data-testid="operations">
            <thead><tr><th>"Method"</th><th>"Path"</th><th>"Operation"</th><th>"Summary"</th><th>"Authentication"</th><th>"Data classes"</th></tr></thead>
            <tbody>
                {operations.into_iter().map(|operation| view! {
                    <tr class:deprecated=operation.deprecated>
                        <td><code>{operation.method.clone()}</code></td>
                        <td><a href=format!("/apis/{api_id}/operations/{}", operation.id)><code>{operation.path.clone()}</code></a></td>
                        <td>{operation.operation_id.clone().unwrap_or_default()}</td>
                        <td>{operation.summary.clone()}</td>
                        <td>{authentication_text(protection, &operation)}</td>
                        <td>{class_details(&operation.data_classes)}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}
