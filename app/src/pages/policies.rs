//! The Policies section: what publishing now would change (or what prevents it), signed
//! drafts for every agent or a canary label group, publishing with a reason, promoting a
//! canary, rolling back, pinning a label group, and the revision history.

use crate::api::inventory::list_apis;
use crate::api::policies::{
    CreateDraft, ExplorerCase, PinGroup, PromoteBundle, PublishBundle, ReleasePin, RollbackBundle, RotateBundleKey, RunPolicyCases, explain_request,
    list_bundles, list_pins, preview_policy,
};
use crate::policy_code::CaseRun;
use crate::auth::use_me;
use crate::components::{ActionOutcome, ErrorMessage, Loaded, format_time};
use crate::publishing::Preview;
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;
use policy::evaluate::Outcome;
use store::{BundlePin, BundleRecord, Role, show_labels};

/// The history's actions, one per kind of change.
#[derive(Clone, Copy)]
struct RevisionActions {
    publish: ServerAction<PublishBundle>,
    rollback: ServerAction<RollbackBundle>,
    promote: ServerAction<PromoteBundle>,
}

#[component]
pub fn PoliciesPage() -> impl IntoView {
    let me = use_me();
    let may_publish = me.as_ref().is_some_and(|me| matches!(me.role, Role::Admin | Role::Security));
    let draft = ServerAction::<CreateDraft>::new();
    let publish = ServerAction::<PublishBundle>::new();
    let rollback = ServerAction::<RollbackBundle>::new();
    let promote = ServerAction::<PromoteBundle>::new();
    let pin = ServerAction::<PinGroup>::new();
    let release = ServerAction::<ReleasePin>::new();
    let actions = RevisionActions { publish, rollback, promote };
    let changes = move || {
        (
            draft.version().get(),
            publish.version().get(),
            rollback.version().get(),
            promote.version().get(),
            pin.version().get(),
            release.version().get(),
        )
    };
    let preview = Resource::new(changes, |_| preview_policy());
    let history = Resource::new(changes, |_| list_bundles());
    let pins = Resource::new(changes, |_| list_pins());
    let render_history = move |list: Vec<BundleRecord>| history_view(list, may_publish, actions);
    let render_pins = move |list: Vec<BundlePin>| pins_view(list, may_publish, release);
    view! {
        <Title text="Policies"/>
        <h1>"Policies"</h1>
        <section class="card" id="preview">
            <h2>"Preview"</h2>
            <p>"The inventory's settings compiled as they are now, against the active revision."</p>
            <Loaded resource=preview render=preview_view/>
            {may_publish.then(|| view! {
                <ActionForm action=draft>
                    <label>"Target labels (a canary; empty: every agent)"
                        <input type="text" name="target" placeholder="env=canary, region=eu"/>
                    </label>
                    <button type="submit">"Compile a signed draft"</button>
                </ActionForm>
                <ActionOutcome value=draft.value() success="Draft compiled and signed."/>
            })}
        </section>
        <section class="card" id="revisions">
            <h2>"Revisions"</h2>
            {move || publish.value().get().and_then(Result::err).map(|error| view! { <ErrorMessage error/> })}
            {move || rollback.value().get().and_then(Result::err).map(|error| view! { <ErrorMessage error/> })}
            {move || promote.value().get().and_then(Result::err).map(|error| view! { <ErrorMessage error/> })}
            <Loaded resource=history render=render_history/>
        </section>
        <section class="card" id="pins">
            <h2>"Pins"</h2>
            <p>"A pinned label group keeps a revision's policy whatever is published later, until the pin is released."</p>
            <Loaded resource=pins render=render_pins/>
            {may_publish.then(|| view! {
                <ActionForm action=pin>
                    <label>"Label group" <input type="text" name="labels" required placeholder="region=eu"/></label>
                    <label>"Revision" <input type="number" name="revision" required min="1"/></label>
                    <label>"Reason" <input type="text" name="reason" required maxlength="1000"/></label>
                    <button type="submit">"Pin"</button>
                </ActionForm>
                <ActionOutcome value=pin.value() success="Group pinned."/>
                {move || release.value().get().and_then(Result::err).map(|error| view! { <ErrorMessage error/> })}
            })}
        </section>
        {may_publish.then(|| view! { <KeyRotation/> })}
        <DecisionExplorer/>
        <PolicyCases/>
    }
}

/// Rotating the bundle-signing key (security and admins; asks for a recent sign-in).
#[component]
fn KeyRotation() -> impl IntoView {
    let rotate = ServerAction::<RotateBundleKey>::new();
    view! {
        <section class="card" id="signing-key">
            <h2>"Signing key"</h2>
            <p>
                "Rotating makes a new bundle-signing key. Every agent group gets its current policy again, signed by \
                 the retiring key and announcing the new one, which agents then trust; the retiring key stays trusted \
                 for the overlap."
            </p>
            <ActionForm action=rotate>
                <label>"Overlap in hours" <input type="number" name="overlap_hours" required min="1" max="720" value="168"/></label>
                <label>"Reason" <input type="text" name="reason" required maxlength="1000"/></label>
                <button type="submit">"Rotate signing key"</button>
            </ActionForm>
            {move || rotate.value().get().map(|outcome| match outcome {
                Ok(key_id) => view! { <p class="success" role="status">{format!("Rotated: new bundles are signed by key {key_id}.")}</p> }.into_any(),
                Err(error) => view! { <ErrorMessage error/> }.into_any(),
            })}
        </section>
    }
}

/// The same test files `palisade policy test` runs, run here against the draft or any
/// revision.
#[component]
fn PolicyCases() -> impl IntoView {
    let run = ServerAction::<RunPolicyCases>::new();
    let example = r#"{"cases": [{"name": "anonymous reads are refused", "api": "Pets", "request": {"method": "GET", "path": "/pets/1"}, "expect": {"allow": false, "status": 401}}]}"#;
    view! {
        <section class="card" id="cases">
            <h2>"Policy tests"</h2>
            <p>"A test file (as in "<code>"tests/*.json"</code>" for "<code>"palisade policy test"</code>"): each case a request and the decision expected."</p>
            <ActionForm action=run>
                <label>"Test file" <textarea name="cases" rows="8" required placeholder=example></textarea></label>
                <label>"Against" <input type="text" name="against" value="draft"/></label>
                <button type="submit">"Run the cases"</button>
            </ActionForm>
            {move || run.value().get().map(|outcome| match outcome {
                Ok(run) => cases_view(run),
                Err(error) => view! { <ErrorMessage error/> }.into_any(),
            })}
        </section>
    }
}

fn cases_view(run: CaseRun) -> AnyView {
    let failed = run.results.iter().filter(|r| !r.passed).count();
    let passed = run.results.len() - failed;
    view! {
        <div data-testid="case-results" class=if failed == 0 { "success" } else { "error" }>
            <p><strong>{format!("{passed} passed, {failed} failed")}</strong>" against "{run.against}</p>
            <table>
                <thead><tr><th>"Case"</th><th>"Result"</th><th>"Decision"</th></tr></thead>
                <tbody>
                    {run.results.into_iter().map(|result| view! {
                        <tr>
                            <td>{result.name}</td>
                            <td>{if result.passed { "pass" } else { "FAIL" }}</td>
                            <td>{result.detail}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
    .into_any()
}

/// The case in the page's URL, so a case is shared by sharing the link.
fn case_from_query() -> Option<ExplorerCase> {
    let query = use_query_map().get_untracked();
    let field = |name: &str| query.get(name).unwrap_or_default();
    query.get("path").map(|_| ExplorerCase {
        against: field("against"),
        api_id: field("api_id"),
        method: field("method"),
        path: field("path"),
        source: field("source"),
        credential: field("credential"),
        client_app_id: field("client_app_id"),
        subject: field("subject"),
        issuer: field("issuer"),
        audiences: field("audiences"),
        scopes: field("scopes"),
        roles: field("roles"),
        claims: field("claims"),
        identity: field("identity"),
        risk: field("risk"),
        device: field("device"),
        consent: field("consent"),
    })
}

/// A form evaluated against the draft or a revision, showing the decision and the trace
/// through each level. It is a plain GET form: the URL is the shareable case.
#[component]
fn DecisionExplorer() -> impl IntoView {
    let case = case_from_query();
    let given = case.clone().unwrap_or_default();
    let decision = Resource::new(move || case.clone(), |case| async move {
        match case {
            Some(case) => explain_request(case).await.map(Some),
            None => Ok(None),
        }
    });
    let apis = Resource::new(|| (), |_| list_apis());
    let chosen_api = given.api_id.clone();
    let text = |name: &'static str, label: &'static str, value: String, placeholder: &'static str| view! {
        <label>{label} <input type="text" name=name value=value placeholder=placeholder/></label>
    };
    let credential = given.credential.clone();
    let credential_option = move |value: &'static str, label: &'static str| view! { <option value=value selected=credential == value>{label}</option> };
    let consent = given.consent.clone();
    let consent_option = move |value: &'static str, label: &'static str| view! { <option value=value selected=consent == value>{label}</option> };
    view! {
        <section class="card" id="explorer">
            <h2>"Decision explorer"</h2>
            <p>"Try a request against the draft or any revision. The address of the result is a link to this case."</p>
            <form method="get" action="/policies">
                <label>"Against" <input type="text" name="against" value=if given.against.is_empty() { "draft".to_owned() } else { given.against.clone() }/></label>
                <label>"API"
                    <select name="api_id">
                        <Suspense>
                            {move || {
                                let chosen = chosen_api.clone();
                                Suspend::new(async move {
                                    apis.await.unwrap_or_default().into_iter().map(|api| {
                                        let selected = chosen == api.id.to_string();
                                        view! { <option value=api.id.0 selected=selected>{format!("{} ({})", api.name, api.environment)}</option> }
                                    }).collect_view()
                                })
                            }}
                        </Suspense>
                    </select>
                </label>
                {text("method", "Method", if given.method.is_empty() { "GET".into() } else { given.method.clone() }, "GET")}
                {text("path", "Path", given.path.clone(), "/pets/42")}
                {text("source", "Source address", given.source.clone(), "10.0.0.7")}
                <label>"Credential"
                    <select name="credential">
                        {credential_option("none", "none")}
                        {credential_option("jwt", "JWT")}
                        {credential_option("api_key", "API key")}
                        {credential_option("mtls", "mTLS")}
                        {credential_option("hmac", "HMAC")}
                    </select>
                </label>
                {text("client_app_id", "Client application id", given.client_app_id.clone(), "")}
                {text("subject", "Subject (sub)", given.subject.clone(), "")}
                {text("issuer", "Issuer", given.issuer.clone(), "https://login.example.com")}
                {text("audiences", "Audiences", given.audiences.clone(), "")}
                {text("scopes", "Scopes", given.scopes.clone(), "")}
                {text("roles", "Roles", given.roles.clone(), "")}
                {text("claims", "Other claims (JSON)", given.claims.clone(), "{\"tier\": \"gold\"}")}
                {text("identity", "Service identity", given.identity.clone(), "spiffe://acme/orders")}
                {text("risk", "Risk (0–100)", given.risk.clone(), "")}
                <label class="inline"><input type="checkbox" name="device" value="on" checked=given.device == "on"/>" registered device"</label>
                <label>"Consent"
                    <select name="consent">
                        {consent_option("", "no record")}
                        {consent_option("granted", "granted")}
                        {consent_option("refused", "refused")}
                    </select>
                </label>
                <button type="submit">"Decide"</button>
            </form>
            <Loaded resource=decision render=decision_view/>
        </section>
    }
}

fn decision_view(decision: Option<policy::Decision>) -> AnyView {
    let Some(decision) = decision else { return ().into_any() };
    let verdict = if decision.allow { "Allowed".to_owned() } else { format!("Denied ({})", decision.status) };
    let reason = decision.reason.as_ref().map(|step| format!("{}: {}", step.code, step.detail)).unwrap_or_default();
    let obligations = &decision.obligations;
    let mut duties = Vec::new();
    if !obligations.mask.is_empty() {
        duties.push(format!("mask {}", obligations.mask.join(", ")));
    }
    if !obligations.block.is_empty() {
        duties.push(format!("block responses carrying {}", obligations.block.join(", ")));
    }
    if !obligations.log.is_empty() {
        duties.push(format!("log {}", obligations.log.join(", ")));
    }
    for limit in &obligations.rate_limits {
        duties.push(format!("count {} ({} per {} s)", limit.key, limit.requests, limit.window_seconds));
    }
    view! {
        <div data-testid="decision" class=if decision.allow { "success" } else { "error" }>
            <p><strong>{verdict}</strong>" "{reason}</p>
            {decision.matched.map(|m| view! { <p>"Matched "<code>{m.template}</code>" in "{m.api_name}</p> })}
            <table data-testid="trace">
                <thead><tr><th>"Level"</th><th>"Outcome"</th><th>"Code"</th><th>"Detail"</th></tr></thead>
                <tbody>
                    {decision.trace.into_iter().map(|step| view! {
                        <tr>
                            <td>{format!("{:?}", step.level).to_lowercase()}</td>
                            <td>{match step.outcome { Outcome::Pass => "pass", Outcome::Deny => "deny", Outcome::Skip => "no rule" }}</td>
                            <td>{step.code}</td>
                            <td>{step.detail}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
            {(!duties.is_empty()).then(|| view! { <p>"Obligations: "{duties.join("; ")}</p> })}
        </div>
    }
    .into_any()
}

fn preview_view(preview: Preview) -> AnyView {
    if !preview.diagnostics.is_empty() {
        return view! {
            <div class="error" role="alert" data-testid="diagnostics">
                <p>{preview.diagnostics.len()} " problem(s) prevent a bundle:"</p>
                <ul>{preview.diagnostics.into_iter().map(|d| view! { <li><code>{d.path}</code>": "{d.message}</li> }).collect_view()}</ul>
            </div>
        }
        .into_any();
    }
    let against = preview.active_revision.map_or_else(|| "nothing published yet".to_owned(), |r| format!("revision {r}"));
    let list = |title: &'static str, names: Vec<String>| {
        (!names.is_empty()).then(|| view! {
            <h3>{title}" ("{names.len()}")"</h3>
            <ul>{names.into_iter().map(|name| view! { <li><code>{name}</code></li> }).collect_view()}</ul>
        })
    };
    view! {
        <div data-testid="policy-diff">
            <p>{preview.apis}" APIs, "{preview.routes}" operations; against "{against}": "
               {if preview.diff.is_empty() { "no change." } else { "" }}</p>
            {list("Added", preview.diff.added)}
            {list("Removed", preview.diff.removed)}
            {list("Changed", preview.diff.changed)}
        </div>
    }
    .into_any()
}

fn pins_view(list: Vec<BundlePin>, may_publish: bool, release: ServerAction<ReleasePin>) -> AnyView {
    if list.is_empty() {
        return view! { <p>"No pins: every agent runs the newest revision published to its labels."</p> }.into_any();
    }
    view! {
        <table data-testid="pins">
            <thead><tr><th>"Group"</th><th>"Runs"</th><th>"Pinned"</th><th>"Why"</th><th></th></tr></thead>
            <tbody>
                {list.into_iter().map(|pin| {
                    let pin_id = pin.pin_id;
                    view! {
                        <tr>
                            <td>{show_labels(&pin.labels)}</td>
                            <td>{format!("revision {} (the policy of {})", pin.revision, pin.pinned_to)}</td>
                            <td>{format_time(pin.created_at)}" by "{pin.created_by.clone()}</td>
                            <td>{pin.reason.clone()}</td>
                            <td>
                                {may_publish.then(|| view! {
                                    <ActionForm action=release>
                                        <input type="hidden" name="pin_id" value=pin_id/>
                                        <label>"Reason" <input type="text" name="reason" required maxlength="1000"/></label>
                                        <button type="submit">"Release"</button>
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

/// How a revision came to be, for the history.
fn origin_note(bundle: &BundleRecord) -> String {
    match (bundle.origin.as_str(), bundle.reissue_of) {
        ("rollback", Some(of)) => format!(" (rollback to {of})"),
        ("promotion", Some(of)) => format!(" (promotes {of})"),
        ("pin", Some(of)) => format!(" (pins {of})"),
        ("key_announcement", Some(of)) => format!(" (re-signs {of} to announce a new key)"),
        ("credentials", Some(of)) => format!(" (re-issues {of} with the client credentials of now)"),
        _ => String::new(),
    }
}

fn history_view(list: Vec<BundleRecord>, may_publish: bool, actions: RevisionActions) -> AnyView {
    if list.is_empty() {
        return view! { <p>"No revisions yet."</p> }.into_any();
    }
    let RevisionActions { publish, rollback, promote } = actions;
    // The fleet's active revision; canaries and pins are newer revisions for some agents.
    let active = list.iter().find(|b| b.published_at.is_some() && b.target.is_empty()).map(|b| b.revision);
    let newest_published = list.iter().find(|b| b.published_at.is_some()).map(|b| b.revision);
    view! {
        <table data-testid="bundles">
            <thead><tr><th>"Revision"</th><th>"For"</th><th>"Made"</th><th>"Status"</th><th>"Why"</th><th>"Content"</th><th></th></tr></thead>
            <tbody>
                {list.into_iter().map(|bundle| {
                    let revision = bundle.revision;
                    let status = match (bundle.published_at, active) {
                        (Some(_), Some(a)) if a == revision => "active".to_owned(),
                        (Some(at), _) => format!("published {}", format_time(at)),
                        (None, _) if newest_published.is_some_and(|n| n > revision) => "draft (superseded)".to_owned(),
                        (None, _) => "draft".to_owned(),
                    };
                    let canary = !bundle.target.is_empty() && bundle.origin == "compiled";
                    let publishable = may_publish && bundle.published_at.is_none() && newest_published.is_none_or(|n| n < revision);
                    let restorable = may_publish && bundle.published_at.is_some() && active != Some(revision);
                    let promotable = may_publish && bundle.published_at.is_some() && canary;
                    view! {
                        <tr>
                            <td>{revision}{origin_note(&bundle)}</td>
                            <td>{show_labels(&bundle.target)}</td>
                            <td>{format_time(bundle.created_at)}" by "{bundle.created_by.clone()}</td>
                            <td>{status}</td>
                            <td>{bundle.reason.clone().unwrap_or_default()}</td>
                            <td><code>{bundle.content_hash[..12.min(bundle.content_hash.len())].to_owned()}</code>" · "{bundle.summary.to_string()}</td>
                            <td>
                                {publishable.then(|| view! {
                                    <ActionForm action=publish>
                                        <input type="hidden" name="revision" value=revision/>
                                        <label>"Reason" <input type="text" name="reason" required maxlength="1000"/></label>
                                        <button type="submit">{if canary { "Publish to the canary" } else { "Publish" }}</button>
                                    </ActionForm>
                                })}
                                {promotable.then(|| view! {
                                    <ActionForm action=promote>
                                        <input type="hidden" name="revision" value=revision/>
                                        <label>"Reason" <input type="text" name="reason" required maxlength="1000"/></label>
                                        <button type="submit">"Promote to every agent"</button>
                                    </ActionForm>
                                })}
                                {restorable.then(|| view! {
                                    <ActionForm action=rollback>
                                        <input type="hidden" name="revision" value=revision/>
                                        <label>"Reason" <input type="text" name="reason" required maxlength="1000"/></label>
                                        <button type="submit" class="danger">"Roll back to this"</button>
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
