//! The audit view: the chain's verification status, a filtered timeline (a plain GET form,
//! so filters live in the URL and work without JavaScript), and each entry's detail.

use crate::api::audit::{AuditFields, audit_chain_status, search_audit};
use crate::url::percent_encode;
use crate::auth::use_me;
use crate::components::{Loaded, format_time};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;
use store::{AuditEntry, AuditPage, ChainStatus};

#[component]
pub fn AuditPage() -> impl IntoView {
    let query = use_query_map();
    let param = move |name: &str| query.read().get(name).filter(|v| !v.is_empty());
    let entries = Resource::new(
        move || AuditFields {
            actor: param("actor"),
            action: param("action"),
            outcome: param("outcome"),
            from: param("from"),
            to: param("to"),
            q: param("q"),
            cursor: param("cursor"),
        },
        search_audit,
    );
    let reads_all = use_me().is_some_and(|me| me.can_read_all_audit());
    let status = Resource::new(|| (), move |_| async move {
        if reads_all { audit_chain_status().await.map(Some) } else { Ok(None) }
    });
    let value = move |name: &'static str| move || param(name).unwrap_or_default();
    let outcome = param("outcome").unwrap_or_default();
    view! {
        <Title text="Audit"/>
        <h1>"Audit"</h1>
        <Loaded resource=status render=chain_banner/>
        {(!reads_all).then(|| view! {
            <p class="muted">"You see the entries made by you or about your account. Auditors and administrators see everything."</p>
        })}
        <section class="card">
            <form method="get" action="/audit" class="filters">
                <label>"Actor" <input type="text" name="actor" prop:value=value("actor") placeholder="email"/></label>
                <label>"Action" <input type="text" name="action" prop:value=value("action") placeholder="account or account.create"/></label>
                <label>"Outcome"
                    <select name="outcome">
                        <option value="" selected=outcome.is_empty()>"any"</option>
                        <option value="success" selected=outcome == "success">"success"</option>
                        <option value="failure" selected=outcome == "failure">"failure"</option>
                    </select>
                </label>
                <label>"From" <input type="date" name="from" prop:value=value("from")/></label>
                <label>"To" <input type="date" name="to" prop:value=value("to")/></label>
                <label>"Text" <input type="search" name="q" prop:value=value("q") placeholder="anything"/></label>
                <button type="submit">"Filter"</button>
            </form>
        </section>
        <section class="card">
            <p class="exports">
                "Export these entries: "
                <a href=move || export_href("csv") download>"CSV"</a>
                " · "
                <a href=move || export_href("jsonl") download>"JSON Lines"</a>
            </p>
            <Loaded resource=entries render=timeline/>
        </section>
    }
}

fn chain_banner(status: Option<ChainStatus>) -> AnyView {
    match status {
        None => ().into_any(),
        Some(ChainStatus { first_bad_seq: None, verified, .. }) => {
            let signed = match &verified.last_checkpoint {
                Some(last) => format!(
                    " {} signed checkpoints verified; the last, at {}, signs entries up to {} (key {}).",
                    verified.checkpoints,
                    format_time(last.at),
                    last.seq,
                    last.key_id
                ),
                None => " No signed checkpoint yet.".to_owned(),
            };
            view! {
                <p class="success" role="status" data-testid="chain-status">
                    "Chain intact: all " {verified.entries} " entries verified against their hashes and links."
                    <span data-testid="last-checkpoint">{signed}</span>
                </p>
            }
            .into_any()
        }
        Some(ChainStatus { first_bad_seq: Some(seq), problem, .. }) => view! {
            <p class="error" role="alert" data-testid="chain-status">
                "Chain broken at entry " {seq} ": " {problem.unwrap_or_default()} ". The trail has been altered outside Palisade."
            </p>
        }
        .into_any(),
    }
}

fn timeline(page: AuditPage) -> AnyView {
    if page.entries.is_empty() {
        return view! { <p>"No audit entries match."</p> }.into_any();
    }
    let older = page.next_cursor.map(|cursor| {
        // Keep the filters, move the cursor (built in the browser from the current URL).
        let href = move || {
            let mut pairs = filter_pairs();
            pairs.push(format!("cursor={cursor}"));
            format!("/audit?{}", pairs.join("&"))
        };
        view! { <a href=href class="older">"Older entries"</a> }
    });
    view! {
        <table data-testid="audit">
            <thead><tr><th>"#"</th><th>"When"</th><th>"Who"</th><th>"What"</th><th>"Target"</th><th>"Outcome"</th><th>"From"</th></tr></thead>
            <tbody>{page.entries.into_iter().map(entry_row).collect_view()}</tbody>
        </table>
        {older}
    }
    .into_any()
}

fn entry_row(entry: AuditEntry) -> impl IntoView {
    let details = serde_json::to_string_pretty(&entry.details).unwrap_or_default();
    view! {
        <tr class=if entry.outcome == "failure" { "failure" } else { "" }>
            <td>{entry.seq}</td>
            <td>{format_time(entry.at)}</td>
            <td>{entry.actor_label.clone()} <span class="muted">" (" {entry.actor_type.clone()} ")"</span></td>
            <td>
                <details>
                    <summary>{entry.action.clone()}</summary>
                    <dl>
                        <dt>"Request"</dt><dd>{entry.request_id.clone()}</dd>
                        <dt>"User agent"</dt><dd>{entry.user_agent.clone()}</dd>
                        {entry.reason.clone().map(|reason| view! { <dt>"Reason"</dt><dd>{reason}</dd> })}
                        <dt>"Change"</dt><dd><pre>{details}</pre></dd>
                        <dt>"Hash"</dt><dd><code>{entry.hash.clone()}</code></dd>
                    </dl>
                </details>
            </td>
            <td>{entry.target_type.clone()} " " {entry.target_id.clone()}</td>
            <td>{entry.outcome.clone()}</td>
            <td>{entry.source.clone()}</td>
        </tr>
    }
}

/// The current filters as `name=value` pairs (without the page cursor), for links.
fn filter_pairs() -> Vec<String> {
    let query = use_query_map().get();
    AuditFields::NAMES
        .iter()
        .filter_map(|name| query.get(name).filter(|v| !v.is_empty()).map(|v| format!("{name}={}", percent_encode(&v))))
        .collect()
}

/// The export link for the current filters.
fn export_href(format: &str) -> String {
    let mut pairs = vec![format!("format={format}")];
    pairs.extend(filter_pairs());
    format!("/audit/export?{}", pairs.join("&"))
}
