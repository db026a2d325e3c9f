//! How an API is protected, on its page: a summary of each level in words, the forms
//! that set the common parts (authentication, the L3 data rule, rate limits), and the
//! JSON document that holds everything; and one operation's page with its data classes,
//! their corrections and its override.

use crate::api::clients::{DataClasses, list_client_apps, list_data_classes};
use crate::api::inventory::get_api;
use crate::api::protection::{SetAuthentication, SetClassEdit, SetContract, SetDataRule, SetEnforcement, SetOperationProtection, SetProtection, SetRateLimit};
use crate::auth::use_me;
use crate::components::{ActionOutcome, Loaded};
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;
use store::protection::{AuthMethod, AuthMode, Enforcement, SubjectLocation};
use store::{ApiDetail, ClientApp, ClientAppId, Operation, Protection};

/// A client application's name, or its id when it is gone.
fn app_name(apps: &[ClientApp], id: ClientAppId) -> String {
    apps.iter().find(|app| app.id == id).map_or_else(|| format!("client application #{id}"), |app| app.name.clone())
}

fn list_or(items: &[String], none: &str) -> String {
    if items.is_empty() { none.to_owned() } else { items.join(", ") }
}

/// Each level of a protection document in a sentence.
pub fn describe(protection: &Protection, apps: &[ClientApp]) -> Vec<(&'static str, String)> {
    let authentication = match &protection.authentication {
        None => "not declared: the document's security requirement is all there is".to_owned(),
        Some(a) if a.mode == AuthMode::Public => "public: no credentials asked".to_owned(),
        Some(a) => {
            let methods: Vec<String> = a
                .methods
                .iter()
                .map(|method| match method {
                    AuthMethod::Jwt { issuer, audiences, algorithms, required_scopes, .. } => format!(
                        "JWT from {issuer} for {} ({}{})",
                        audiences.join(", "),
                        algorithms.join(", "),
                        if required_scopes.is_empty() { String::new() } else { format!("; scopes {}", required_scopes.join(" ")) }
                    ),
                    AuthMethod::ApiKey { header } => format!("API key in {header}"),
                    AuthMethod::Mtls { allowed_identities } => format!("mTLS ({})", list_or(allowed_identities, "any registered identity")),
                    AuthMethod::Hmac { algorithm, clock_skew_seconds, .. } => format!("HMAC signature ({algorithm}, ±{clock_skew_seconds} s)"),
                })
                .collect();
            format!("required: {}", methods.join(" or "))
        }
    };
    let network = protection.network.as_ref().map_or_else(
        || "not set".to_owned(),
        |n| format!("from {}; identities {}", list_or(&n.source_networks, "anywhere"), list_or(&n.service_identities, "any")),
    );
    let requestor = protection.requestor.as_ref().map_or_else(
        || "not set".to_owned(),
        |r| {
            let mut parts = Vec::new();
            if !r.roles.is_empty() {
                parts.push(format!("roles {}", r.roles.join(" or ")));
            }
            if !r.scopes.is_empty() {
                parts.push(format!("scopes {}", r.scopes.join(" ")));
            }
            for claim in &r.claims {
                parts.push(format!("{} in {}", claim.claim, claim.values.join("|")));
            }
            if !r.client_apps.is_empty() {
                parts.push(format!("only {}", r.client_apps.iter().map(|id| app_name(apps, *id)).collect::<Vec<_>>().join(", ")));
            }
            if let Some(owner) = &r.object_owner {
                parts.push(format!("object {{{}}} must equal claim {}", owner.parameter, owner.claim));
            }
            if let Some(risk) = r.max_risk {
                parts.push(format!("risk at most {risk}"));
            }
            if r.require_device {
                parts.push("registered device".to_owned());
            }
            list_or(&parts, "an empty rule")
        },
    );
    let data = protection.data.as_ref().map_or_else(
        || "not set".to_owned(),
        |d| {
            let grants: Vec<String> =
                d.grants.iter().map(|g| format!("{} may receive {}", app_name(apps, g.client_app), g.classes.join(", "))).collect();
            format!("{}; other classes: {}", list_or(&grants, "nobody is granted any class"), d.otherwise.as_str().replace('_', " "))
        },
    );
    let consent = protection.consent.as_ref().map_or_else(
        || "not set".to_owned(),
        |c| {
            let place = match c.subject.location {
                SubjectLocation::Claim => "claim",
                SubjectLocation::Path => "path parameter",
                SubjectLocation::Header => "header",
            };
            format!("purpose {}{}; subject from {place} {}", c.purpose, if c.scopes.is_empty() { String::new() } else { format!(" ({})", c.scopes.join(" ")) }, c.subject.name)
        },
    );
    let limits = protection.rate_limits.as_ref().filter(|l| !l.is_empty()).map_or_else(
        || "none".to_owned(),
        |limits| {
            limits
                .iter()
                .map(|l| {
                    let who = l.client_app.map_or_else(|| "each caller".to_owned(), |id| app_name(apps, id));
                    format!("{} per {} s for {who}", l.requests, l.window_seconds)
                })
                .collect::<Vec<_>>()
                .join("; ")
        },
    );
    let enforcement = match protection.enforcement {
        None => "not set: enforced".to_owned(),
        Some(Enforcement::Enforce) => "enforced".to_owned(),
        Some(Enforcement::Monitor) => "monitor: agents record what they would refuse and let it through".to_owned(),
    };
    let contract = match &protection.contract {
        None => "none: requests are not checked against the OpenAPI description".to_owned(),
        Some(contract) => format!(
            "parameters and JSON bodies checked against the OpenAPI description; unknown query parameters {}; bodies up to {} KiB",
            if contract.reject_unknown_query { "refused" } else { "let through" },
            contract.max_body_bytes.unwrap_or(store::protection::DEFAULT_CONTRACT_BODY_BYTES) / 1024
        ),
    };
    vec![
        ("Enforcement", enforcement),
        ("Request contract", contract),
        ("Authentication", authentication),
        ("L1 network", network),
        ("L2 requestor", requestor),
        ("L3 data", data),
        ("L4 consent", consent),
        ("Rate limits", limits),
    ]
}

fn pretty(protection: &Protection) -> String {
    serde_json::to_string_pretty(protection).unwrap_or_default()
}

/// The API's protection in words, for everyone who reads the API.
#[component]
pub fn ProtectionSummary(protection: Protection, apps: Vec<ClientApp>) -> impl IntoView {
    view! {
        <dl class="facts" data-testid="protection">
            {describe(&protection, &apps).into_iter().map(|(level, text)| view! { <dt>{level}</dt><dd>{text}</dd> }).collect_view()}
        </dl>
    }
}

/// The actions that change an API's protection. The page reloads the API after each one
/// that succeeds; a refused one leaves the forms as the user filled them in.
#[derive(Clone, Copy)]
pub struct ProtectionActions {
    pub authentication: ServerAction<SetAuthentication>,
    pub data: ServerAction<SetDataRule>,
    pub rate_limit: ServerAction<SetRateLimit>,
    pub enforcement: ServerAction<SetEnforcement>,
    pub contract: ServerAction<SetContract>,
    pub document: ServerAction<SetProtection>,
    saved: RwSignal<usize>,
}

/// Counts the successful completions of `action` into `saved`.
fn count_successes<A>(action: ServerAction<A>, saved: RwSignal<usize>)
where
    A: leptos::server_fn::ServerFn<Output = ApiDetail, Error = crate::error::AppError> + Clone + Send + Sync + 'static,
{
    Effect::new(move |_| {
        if matches!(action.value().get(), Some(Ok(_))) {
            saved.update(|count| *count += 1);
        }
    });
}

impl ProtectionActions {
    pub fn new() -> Self {
        let actions = ProtectionActions {
            authentication: ServerAction::new(),
            data: ServerAction::new(),
            rate_limit: ServerAction::new(),
            enforcement: ServerAction::new(),
            contract: ServerAction::new(),
            document: ServerAction::new(),
            saved: RwSignal::new(0),
        };
        count_successes(actions.authentication, actions.saved);
        count_successes(actions.data, actions.saved);
        count_successes(actions.rate_limit, actions.saved);
        count_successes(actions.enforcement, actions.saved);
        count_successes(actions.contract, actions.saved);
        count_successes(actions.document, actions.saved);
        actions
    }

    /// Changes whenever one of them succeeds.
    pub fn version(&self) -> usize {
        self.saved.get()
    }
}

impl Default for ProtectionActions {
    fn default() -> Self {
        Self::new()
    }
}

fn app_options(apps: &[ClientApp]) -> AnyView {
    apps.iter().map(|app| view! { <option value=app.id.0>{app.name.clone()}</option> }).collect_view().into_any()
}

/// The forms that change an API's protection, for those who may.
#[component]
pub fn ProtectionForms(api: ApiDetail, actions: ProtectionActions, apps: Vec<ClientApp>, classes: DataClasses) -> impl IntoView {
    let api_id = api.summary.id.0;
    let mode = match &api.protection.authentication {
        None => "unset",
        Some(a) if a.mode == AuthMode::Public => "public",
        Some(_) => "required",
    };
    let mode_option = move |value: &'static str, label: &'static str| view! { <option value=value selected=mode == value>{label}</option> };
    let jwt = api.protection.authentication.iter().flat_map(|a| a.methods.iter()).find_map(|m| match m {
        AuthMethod::Jwt { issuer, audiences, jwks_url, algorithms, required_scopes, .. } => {
            Some((issuer.clone(), audiences.join(", "), jwks_url.clone().unwrap_or_default(), algorithms.join(", "), required_scopes.join(", ")))
        }
        _ => None,
    });
    let (issuer, audiences, jwks, algorithms, scopes) = jwt.unwrap_or_else(|| (String::new(), String::new(), String::new(), "RS256".into(), String::new()));
    let has_api_key = api.protection.authentication.iter().flat_map(|a| a.methods.iter()).any(|m| matches!(m, AuthMethod::ApiKey { .. }));
    let mtls = api
        .protection
        .authentication
        .iter()
        .flat_map(|a| a.methods.iter())
        .find_map(|m| match m {
            AuthMethod::Mtls { allowed_identities } => Some(allowed_identities.join(", ")),
            _ => None,
        })
        .unwrap_or_default();
    let monitoring = api.protection.enforcement == Some(Enforcement::Monitor);
    let contract = api.protection.contract.clone();
    let contract_on = contract.is_some();
    let reject_unknown = contract.as_ref().is_none_or(|c| c.reject_unknown_query);
    let max_body_kib = contract.and_then(|c| c.max_body_bytes).map_or_else(String::new, |bytes| (bytes / 1024).to_string());
    let otherwise = api.protection.data.as_ref().map_or("mask", |d| d.otherwise.as_str());
    let otherwise_option = move |value: &'static str, label: &'static str| view! { <option value=value selected=otherwise == value>{label}</option> };
    let class_names = classes.names().join(", ");
    let class_hint = class_names.clone();
    let limit_apps = app_options(&apps);
    let grant_apps = app_options(&apps);
    let data_form = if apps.is_empty() {
        view! { <p>"Register a client application first, on the " <a href="/clients">"Client applications"</a> " page."</p> }.into_any()
    } else {
        view! {
            <ActionForm action=actions.data>
                <input type="hidden" name="api_id" value=api_id/>
                <label>"Client application" <select name="client_app_id">{grant_apps}</select></label>
                <label>"Classes it may receive (comma-separated; empty removes its grant)"
                    <input type="text" name="classes" placeholder=class_names/>
                </label>
                <label>"Other classes"
                    <select name="otherwise">
                        {otherwise_option("mask", "mask")}
                        {otherwise_option("block", "block the response")}
                        {otherwise_option("log_only", "log only")}
                    </select>
                </label>
                <button type="submit">"Save data rule"</button>
            </ActionForm>
        }.into_any()
    };
    view! {
        <section class="card" id="enforcement">
            <h2>"Enforcement"</h2>
            <p>"Monitor mode lets a new rule meet live traffic first: agents record every request they would refuse, as "
               <code>"monitor"</code>", and let it through. Operations that set their own mode in their override keep it."</p>
            <ActionForm action=actions.enforcement>
                <input type="hidden" name="api_id" value=api_id/>
                <label>"Mode"
                    <select name="mode">
                        <option value="enforce" selected=!monitoring>"enforce"</option>
                        <option value="monitor" selected=monitoring>"monitor (record, let through)"</option>
                    </select>
                </label>
                <button type="submit">"Save enforcement"</button>
            </ActionForm>
            <ActionOutcome value=actions.enforcement.value() success="Enforcement saved."/>
        </section>
        <section class="card" id="contract">
            <h2>"Request contract"</h2>
            <p>"Agents check each request against the imported OpenAPI description before forwarding it: path, query and header parameters, and JSON bodies against their schemas. A request that breaks it is refused with what is wrong (400, 413 or 415). A gateway that keeps bodies from the agent refuses operations whose body has a schema."</p>
            <ActionForm action=actions.contract>
                <input type="hidden" name="api_id" value=api_id/>
                <label>"Contract"
                    <select name="enabled">
                        <option value="off" selected=!contract_on>"off"</option>
                        <option value="on" selected=contract_on>"on"</option>
                    </select>
                </label>
                <label><input type="checkbox" name="reject_unknown_query" checked=reject_unknown/>" Refuse query parameters the operation does not declare"</label>
                <label>"Largest body (KiB; empty: 1024)" <input type="text" name="max_body_kib" inputmode="numeric" value=max_body_kib/></label>
                <button type="submit">"Save request contract"</button>
            </ActionForm>
            <ActionOutcome value=actions.contract.value() success="Request contract saved."/>
        </section>
        <section class="card" id="authentication">
            <h2>"Authentication"</h2>
            <p>"Callers present any one of the methods filled in. API keys are issued to client applications on the "
               <a href="/clients">"Client applications"</a>" page."</p>
            <ActionForm action=actions.authentication>
                <input type="hidden" name="api_id" value=api_id/>
                <label>"Mode"
                    <select name="mode">
                        {mode_option("unset", "not declared")}
                        {mode_option("required", "required")}
                        {mode_option("public", "public (explicitly open)")}
                    </select>
                </label>
                <fieldset>
                    <legend>"OAuth2 / OIDC bearer JWT"</legend>
                    <label>"Issuer" <input type="text" name="jwt_issuer" value=issuer placeholder="https://login.example.com"/></label>
                    <label>"Audiences" <input type="text" name="jwt_audiences" value=audiences placeholder="orders-api"/></label>
                    <label>"JWKS URL" <input type="text" name="jwt_jwks_url" value=jwks placeholder="https://login.example.com/.well-known/jwks.json"/></label>
                    <label>"Algorithms" <input type="text" name="jwt_algorithms" value=algorithms/></label>
                    <label>"Required scopes" <input type="text" name="jwt_scopes" value=scopes/></label>
                </fieldset>
                <label class="inline"><input type="checkbox" name="api_key" value="on" checked=has_api_key/>" API keys (header x-api-key)"</label>
                <label>"mTLS client identities (subjects or SANs, comma-separated; empty: none)" <input type="text" name="mtls_identities" value=mtls/></label>
                <button type="submit">"Save authentication"</button>
            </ActionForm>
            <ActionOutcome value=actions.authentication.value() success="Authentication saved."/>
        </section>
        <section class="card" id="authorization">
            <h2>"Data (L3)"</h2>
            <p>"Which data classes each client application may receive; responses carrying other declared classes are masked, blocked or logged."</p>
            {data_form}
            <ActionOutcome value=actions.data.value() success="Data rule saved."/>
            <p class="hint">"Classes: " {class_hint}</p>
        </section>
        <section class="card" id="rate-limits">
            <h2>"Rate limits"</h2>
            <ActionForm action=actions.rate_limit>
                <input type="hidden" name="api_id" value=api_id/>
                <label>"For"
                    <select name="client_app_id">
                        <option value="0">"each caller"</option>
                        {limit_apps}
                    </select>
                </label>
                <label>"Requests (0 removes the limit)" <input type="number" name="requests" min="0" value="100" required/></label>
                <label>"Per seconds" <input type="number" name="window_seconds" min="1" max="86400" value="60" required/></label>
                <button type="submit">"Save rate limit"</button>
            </ActionForm>
            <ActionOutcome value=actions.rate_limit.value() success="Rate limit saved."/>
        </section>
        <section class="card" id="protection-document">
            <h2>"Protection document"</h2>
            <p>"Everything above and the other levels (L1 networks and identities, L2 roles, scopes, claims and object rules, L4 consent), as JSON. Empty clears all. "
               <code>"\"enforcement\": \"monitor\""</code>" in an operation's override puts just that operation in monitor mode."</p>
            <ActionForm action=actions.document>
                <input type="hidden" name="api_id" value=api_id/>
                <label>"Document" <textarea name="document" rows="14" spellcheck="false">{pretty(&api.protection)}</textarea></label>
                <button type="submit">"Save document"</button>
            </ActionForm>
            <ActionOutcome value=actions.document.value() success="Protection saved."/>
        </section>
    }
}

/// One operation: its data classes with the owner's corrections, and its override.
#[component]
pub fn OperationPage() -> impl IntoView {
    let params = use_params_map();
    let id = move |name: &str| params.read().get(name).and_then(|id| id.parse::<i64>().ok()).unwrap_or(-1);
    let class_edit = ServerAction::<SetClassEdit>::new();
    let override_action = ServerAction::<SetOperationProtection>::new();
    let api = Resource::new(
        move || (id("api_id"), class_edit.version().get(), override_action.version().get()),
        |(api_id, ..)| get_api(api_id),
    );
    let apps = Resource::new(|| (), |_| list_client_apps());
    let classes = Resource::new(|| (), |_| list_data_classes());
    let me = use_me();
    view! {
        <Title text="Operation"/>
        <Loaded resource=api render=move |api: ApiDetail| {
            let operation_id = id("operation_id");
            let Some(operation) = api.operations.iter().find(|o| o.id == operation_id).cloned() else {
                return view! { <p class="error" role="alert">"Operation not found."</p> }.into_any();
            };
            let can_change = me.as_ref().is_some_and(|me| me.can_change_owned_by(api.summary.team_id));
            let effective = Protection::effective(&api.protection, &operation.protection);
            let api_id = api.summary.id.0;
            view! {
                <p><a href=format!("/apis/{api_id}")>{api.summary.name.clone()}</a></p>
                <h1><code>{operation.method.clone()}" "{operation.path.clone()}</code></h1>
                <p>{operation.operation_id.clone().unwrap_or_default()}" "{operation.summary.clone()}</p>
                <section class="card" id="data-classes">
                    <h2>"Data classes"</h2>
                    {class_table(&operation, can_change.then_some((class_edit, api_id)))}
                    {can_change.then(|| view! {
                        <h3>"Add a class to a field"</h3>
                        <ActionForm action=class_edit>
                            <input type="hidden" name="api_id" value=api_id/>
                            <input type="hidden" name="operation_id" value=operation.id/>
                            <input type="hidden" name="change" value="add"/>
                            <label>"Class"
                                <select name="class">
                                    <Suspense>
                                        {move || Suspend::new(async move {
                                            classes.await.map(|c| c.names()).unwrap_or_default().into_iter()
                                                .map(|name| view! { <option value=name.clone()>{name.clone()}</option> }).collect_view()
                                        })}
                                    </Suspense>
                                </select>
                            </label>
                            <label>"Direction"
                                <select name="direction"><option value="response">"response"</option><option value="request">"request"</option></select>
                            </label>
                            <label>"Field" <input type="text" name="field" required placeholder="200.body.email"/></label>
                            <button type="submit">"Add class"</button>
                        </ActionForm>
                        <ActionOutcome value=class_edit.value() success="Data classes saved."/>
                    })}
                </section>
                <section class="card" id="operation-protection">
                    <h2>"Protection"</h2>
                    <p>"What applies to this operation: its own settings, else the API's."</p>
                    <Loaded resource=apps render=move |list: crate::api::clients::ClientAppList| view! { <ProtectionSummary protection=effective.clone() apps=list.apps/> }/>
                    {can_change.then(|| view! {
                        <h3>"Override"</h3>
                        <p>"Parts set here replace the API's whole part (for example a stricter L2 rule); parts left out are inherited. Empty inherits everything."</p>
                        <ActionForm action=override_action>
                            <input type="hidden" name="api_id" value=api_id/>
                            <input type="hidden" name="operation_id" value=operation.id/>
                            <label>"Override document"
                                <textarea name="document" rows="10" spellcheck="false">{pretty(&operation.protection)}</textarea>
                            </label>
                            <button type="submit">"Save override"</button>
                        </ActionForm>
                        <ActionOutcome value=override_action.value() success="Override saved."/>
                    })}
                </section>
            }.into_any()
        }/>
    }
}

/// One button that adds (or restores) or removes one field's class.
fn class_edit_button(
    action: ServerAction<SetClassEdit>,
    api_id: i64,
    operation_id: i64,
    change: &'static str,
    hit: store::DataClassHit,
    label: &'static str,
) -> impl IntoView + use<> {
    view! {
        <ActionForm action>
            <input type="hidden" name="api_id" value=api_id/>
            <input type="hidden" name="operation_id" value=operation_id/>
            <input type="hidden" name="change" value=change/>
            <input type="hidden" name="class" value=hit.class/>
            <input type="hidden" name="direction" value=hit.direction/>
            <input type="hidden" name="field" value=hit.field/>
            <button type="submit" class="link">{label}</button>
        </ActionForm>
    }
}

fn class_table(operation: &Operation, edit: Option<(ServerAction<SetClassEdit>, i64)>) -> AnyView {
    if operation.data_classes.is_empty() && operation.class_edits.removed.is_empty() {
        return view! { <p>"No data class found in this operation's schemas."</p> }.into_any();
    }
    let added = operation.class_edits.added.clone();
    let operation_id = operation.id;
    view! {
        <table data-testid="operation-classes">
            <thead><tr><th>"Class"</th><th>"Direction"</th><th>"Field"</th><th>"Source"</th><th></th></tr></thead>
            <tbody>
                {operation.data_classes.iter().map(|hit| {
                    let source = if added.contains(hit) { "added by the owner" } else { "schema" };
                    view! {
                        <tr>
                            <td>{hit.class.clone()}</td><td>{hit.direction.clone()}</td><td><code>{hit.field.clone()}</code></td><td>{source}</td>
                            <td>{edit.map(|(action, api_id)| class_edit_button(action, api_id, operation_id, "remove", hit.clone(), "Remove"))}</td>
                        </tr>
                    }
                }).collect_view()}
                {operation.class_edits.removed.iter().map(|hit| view! {
                    <tr class="removed">
                        <td><s>{hit.class.clone()}</s></td><td>{hit.direction.clone()}</td><td><code>{hit.field.clone()}</code></td><td>"removed by the owner"</td>
                        <td>{edit.map(|(action, api_id)| class_edit_button(action, api_id, operation_id, "add", hit.clone(), "Restore"))}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}
