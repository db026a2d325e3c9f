//! The Agents section: the fleet with each agent's health, last contact and the revision it
//! runs against the one meant for it (drift marked), how the newest publishes reached the
//! fleet, and for security and admins, enrollment tokens (the secret and the agent's start
//! command shown once) and revocation.

use crate::api::agents::{
    CreateEnrollmentToken, EnrollmentTokenList, FleetCounts, FleetOverview, ListedEnrollmentToken, NewEnrollmentToken, PublishConvergence,
    RevokeAgent, RevokeEnrollmentToken, DEFAULT_TOKEN_MINUTES, MAX_TOKEN_MINUTES, list_enrollment_tokens, list_fleet,
};
use crate::api::inventory::list_apis;
use crate::auth::use_me;
use crate::components::{ActionOutcome, EmptyState, ErrorMessage, FlashMessage, Loaded, SecretOutcome, format_ago, format_time};
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;
use store::{AgentHealth, FleetAgent, Role, show_labels};

#[component]
pub fn AgentsPage() -> impl IntoView {
    let manages = use_me().is_some_and(|me| matches!(me.role, Role::Admin | Role::Security));
    let revoke = ServerAction::<RevokeAgent>::new();
    let fleet = Resource::new(move || revoke.version().get(), |_| list_fleet());
    let render_fleet = move |overview: FleetOverview| fleet_view(overview, manages, revoke);
    view! {
        <Title text="Agents"/>
        <h1>"Agents"</h1>
        <p>"Enforcement agents sit in front of every API instance: they verify signed policy bundles, enforce them on every request and report back."</p>
        <ActionOutcome value=revoke.value() success="Agent revoked: the control plane refuses it from its next call on."/>
        <Loaded resource=fleet render=render_fleet/>
        {manages.then(|| view! { <Enrollment/>})}
    }
}

fn plural(count: usize, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

fn summary(counts: FleetCounts) -> String {
    let mut parts = vec![format!("{} healthy", counts.healthy), format!("{} drifted", counts.drifted), format!("{} offline", counts.offline)];
    if counts.degraded > 0 {
        parts.push(format!("{} degraded", counts.degraded));
    }
    if counts.pending > 0 {
        parts.push(format!("{} awaiting a first report", counts.pending));
    }
    let mut line = format!("{}: {}.", plural(counts.total, "agent", "agents"), parts.join(", "));
    if counts.revoked > 0 {
        line.push_str(&format!(" {} revoked.", counts.revoked));
    }
    line
}

fn fleet_view(overview: FleetOverview, manages: bool, revoke: ServerAction<RevokeAgent>) -> AnyView {
    let FleetOverview { now, agents, counts, convergence } = overview;
    let fleet = if agents.is_empty() {
        view! {
            <EmptyState title="No enforcement agents enrolled yet">
                {if manages {
                    view! { <p>"Create an enrollment token below, then start "<code>"palisade-agent"</code>" with it in front of an API instance; it appears here after its first report."</p> }.into_any()
                } else {
                    view! { <p>"Security leads and admins enroll agents: ask one for an enrollment token to put an agent in front of your API."</p> }.into_any()
                }}
            </EmptyState>
        }
        .into_any()
    } else {
        view! {
            <section class="card" id="fleet">
                <h2>"Fleet"</h2>
                <p data-testid="fleet-summary">{summary(counts)}</p>
                {fleet_table(agents, now, manages, revoke)}
            </section>
        }
        .into_any()
    };
    view! {
        {fleet}
        <section class="card" id="convergence">
            <h2>"Convergence"</h2>
            <p class="muted">"How quickly the agents each publish was meant for began running it (or a later revision)."</p>
            {convergence_table(convergence)}
        </section>
    }
    .into_any()
}

/// What the agent runs against what it is meant to run, drift marked.
fn revision_cell(member: &FleetAgent) -> AnyView {
    let active = member.agent.status.as_ref().and_then(|status| status.active_revision);
    let runs = active.map_or_else(|| "none".to_owned(), |revision| revision.to_string());
    match member.meant_revision {
        Some(meant) if member.drifted() => {
            view! { {format!("{runs} (meant: {meant}) ")}<span class="badge drift" data-testid="drift">"drift"</span> }.into_any()
        }
        Some(_) => view! { {runs} }.into_any(),
        None => view! { {format!("{runs} (nothing published for its labels)")} }.into_any(),
    }
}

fn fleet_table(agents: Vec<FleetAgent>, now: i64, manages: bool, revoke: ServerAction<RevokeAgent>) -> AnyView {
    view! {
        <table data-testid="fleet">
            <thead>
                <tr>
                    <th>"Agent"</th><th>"Labels"</th><th>"Version"</th><th>"Health"</th><th>"Last seen"</th>
                    <th>"Revision (meant)"</th><th>"Last error"</th><th>"Requests"</th>
                    {manages.then(|| view! { <th></th> })}
                </tr>
            </thead>
            <tbody>
                {agents.into_iter().map(|member| {
                    let agent = &member.agent;
                    let health = member.health;
                    let status = agent.status.clone().unwrap_or_default();
                    let counters = status.counters;
                    let requests = if agent.status.is_some() {
                        let mut text = format!("{} allowed, {} denied, {} monitored, {} errors", counters.allowed, counters.denied, counters.monitored, counters.errors);
                        if status.spooled_decisions > 0 {
                            text.push_str(&format!("; {} decisions waiting to upload", status.spooled_decisions));
                        }
                        if counters.dropped_decisions > 0 {
                            text.push_str(&format!("; {} decisions dropped (spool full)", counters.dropped_decisions));
                        }
                        text
                    } else {
                        "—".to_owned()
                    };
                    let last_seen = agent.last_seen_at.map_or_else(|| "never".to_owned(), |at| format_ago(now, at));
                    let last_seen_at = agent.last_seen_at.map(format_time).unwrap_or_default();
                    let revocable = manages && health != AgentHealth::Revoked;
                    let agent_id = agent.id;
                    view! {
                        <tr>
                            <td>{agent.name.clone()}<br/><span class="muted">{format!("enrolled {}", format_time(agent.enrolled_at))}</span></td>
                            <td>{if agent.labels.is_empty() { "none".to_owned() } else { show_labels(&agent.labels) }}</td>
                            <td>{agent.version.clone()}</td>
                            <td><span class=format!("badge {}", health.as_str())>{health.as_str()}</span></td>
                            <td title=last_seen_at>{last_seen}</td>
                            <td>{revision_cell(&member)}</td>
                            <td>{status.last_error.clone().unwrap_or_else(|| "—".to_owned())}</td>
                            <td>{requests}</td>
                            {manages.then(|| view! {
                                <td>
                                    {revocable.then(|| view! {
                                        <ActionForm action=revoke>
                                            <input type="hidden" name="agent_id" value=agent_id/>
                                            <label>"Reason" <input type="text" name="reason" required maxlength="1000"/></label>
                                            <button type="submit" class="danger">"Revoke"</button>
                                        </ActionForm>
                                    })}
                                </td>
                            })}
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

fn convergence_table(list: Vec<PublishConvergence>) -> AnyView {
    if list.is_empty() {
        return view! {
            <p>"Nothing published yet. Publish a revision in "<a href="/policies">"Policies"</a>"; how quickly agents take it up shows here."</p>
        }
        .into_any();
    }
    view! {
        <table data-testid="convergence">
            <thead>
                <tr><th>"Revision"</th><th>"For"</th><th>"Published"</th><th>"Target agents"</th><th>"Within 1 s"</th><th>"Within 5 s"</th><th>"Within 30 s"</th><th>"Now"</th></tr>
            </thead>
            <tbody>
                {list.into_iter().map(|row| {
                    // With no agent to reach, a percentage would say nothing.
                    let percent = |value: u8| if row.targets == 0 { "—".to_owned() } else { format!("{value} %") };
                    view! {
                        <tr>
                            <td>{row.revision}</td>
                            <td>{show_labels(&row.target)}</td>
                            <td>{format_time(row.published_at)}</td>
                            <td>{row.targets}</td>
                            <td>{percent(row.within_1s)}</td>
                            <td>{percent(row.within_5s)}</td>
                            <td>{percent(row.within_30s)}</td>
                            <td>{percent(row.by_now)}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

/// Enrollment tokens: the form (the secret and start command shown once) and the list.
/// Security and admins only; the page shows it to no one else.
#[component]
fn Enrollment() -> impl IntoView {
    let create = ServerAction::<CreateEnrollmentToken>::new();
    let revoke = ServerAction::<RevokeEnrollmentToken>::new();
    let tokens = Resource::new(move || (create.version().get(), revoke.version().get()), |_| list_enrollment_tokens());
    let apis = Resource::new(|| (), |_| list_apis());
    let render_tokens = move |list: EnrollmentTokenList| tokens_table(list, revoke);
    view! {
        <section class="card" id="enrollment">
            <h2>"Enrollment"</h2>
            <p>
                "An agent enrolls once, with a single-use token, and from then on signs its calls with its own key. \
                 It takes the token's labels, which decide the revisions it runs (canaries, pins)."
            </p>
            <FlashMessage/>
            <ActionForm action=create>
                <label>"Labels" <input type="text" name="labels" maxlength="1000" placeholder="env=prod, region=eu"/></label>
                <label>"Agent name (optional)" <input type="text" name="name" maxlength="64" placeholder="orders-eu-1"/></label>
                <label>"Expires after (minutes)"
                    <input type="number" name="expires_minutes" min="1" max=MAX_TOKEN_MINUTES value=DEFAULT_TOKEN_MINUTES required/>
                </label>
                <label>"API it will front (fills in the start command)"
                    <select name="api_id">
                        <option value="">"— fill in later —"</option>
                        <Suspense>
                            {move || Suspend::new(async move {
                                apis.await.unwrap_or_default().into_iter().map(|api| view! {
                                    <option value=api.id.0>{format!("{} ({}) · id {}", api.name, api.environment, api.id.0)}</option>
                                }).collect_view()
                            })}
                        </Suspense>
                    </select>
                </label>
                <button type="submit">"Create enrollment token"</button>
            </ActionForm>
            <SecretOutcome value=create.value() to_flash=NewEnrollmentToken::flash/>
            <h3>"Enrollment tokens"</h3>
            {move || revoke.value().get().and_then(Result::err).map(|error| view! { <ErrorMessage error/> })}
            <Loaded resource=tokens render=render_tokens/>
        </section>
    }
}

/// `unused`, `expired`, `revoked`, or `used → <agent>`.
fn token_status(listed: &ListedEnrollmentToken, now: i64) -> String {
    let token = &listed.token;
    match (token.revoked_at, token.used_at) {
        (Some(at), _) => format!("revoked {}", format_time(at)),
        (None, Some(at)) => {
            let agent = listed.agent_name.clone().or_else(|| token.agent_id.map(|id| format!("agent {id}"))).unwrap_or_default();
            format!("used {} → {agent}", format_time(at))
        }
        (None, None) if token.expires_at <= now => "expired".to_owned(),
        (None, None) => "unused".to_owned(),
    }
}

fn tokens_table(EnrollmentTokenList { now, tokens }: EnrollmentTokenList, revoke: ServerAction<RevokeEnrollmentToken>) -> AnyView {
    if tokens.is_empty() {
        return view! { <p>"No enrollment tokens yet. Create one above for each agent you start."</p> }.into_any();
    }
    view! {
        <table data-testid="enrollment-tokens">
            <thead><tr><th>"Labels"</th><th>"Name"</th><th>"Created"</th><th>"Expires"</th><th>"Status"</th><th></th></tr></thead>
            <tbody>
                {tokens.into_iter().map(|listed| {
                    let status = token_status(&listed, now);
                    let token = listed.token;
                    let revocable = status == "unused";
                    let token_id = token.id;
                    view! {
                        <tr>
                            <td>{show_labels(&token.labels)}</td>
                            <td>{token.name.clone().unwrap_or_else(|| "—".to_owned())}</td>
                            <td>{format_time(token.created_at)}" by "{token.created_by.clone()}</td>
                            <td>{format_time(token.expires_at)}</td>
                            <td>{status}</td>
                            <td>
                                {revocable.then(|| view! {
                                    <ActionForm action=revoke>
                                        <input type="hidden" name="enrollment_token_id" value=token_id/>
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_every_state_that_has_agents() {
        let counts = FleetCounts { total: 3, healthy: 2, degraded: 0, pending: 1, offline: 0, drifted: 1, revoked: 0 };
        assert_eq!(summary(counts), "3 agents: 2 healthy, 1 drifted, 0 offline, 1 awaiting a first report.");
        let one = FleetCounts { total: 1, healthy: 1, revoked: 2, ..FleetCounts::default() };
        assert_eq!(summary(one), "1 agent: 1 healthy, 0 drifted, 0 offline. 2 revoked.");
    }
}
