//! The Policies section: what publishing now would change (or what prevents it), signed
//! drafts, publishing with a reason, rolling back, and the revision history.

use crate::api::policies::{CreateDraft, PublishBundle, RollbackBundle, list_bundles, preview_policy};
use crate::auth::use_me;
use crate::components::{ActionOutcome, ErrorMessage, Loaded, format_time};
use crate::publishing::Preview;
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;
use store::Role;
use store::BundleRecord;

#[component]
pub fn PoliciesPage() -> impl IntoView {
    let me = use_me();
    let may_publish = me.as_ref().is_some_and(|me| matches!(me.role, Role::Admin | Role::Security));
    let draft = ServerAction::<CreateDraft>::new();
    let publish = ServerAction::<PublishBundle>::new();
    let rollback = ServerAction::<RollbackBundle>::new();
    let changes = move || (draft.version().get(), publish.version().get(), rollback.version().get());
    let preview = Resource::new(changes, |_| preview_policy());
    let history = Resource::new(changes, |_| list_bundles());
    let render_history = move |list: Vec<BundleRecord>| history_view(list, may_publish, publish, rollback);
    view! {
        <Title text="Policies"/>
        <h1>"Policies"</h1>
        <section class="card" id="preview">
            <h2>"Preview"</h2>
            <p>"The inventory's settings compiled as they are now, against the active revision."</p>
            <Loaded resource=preview render=preview_view/>
            {may_publish.then(|| view! {
                <ActionForm action=draft>
                    <button type="submit">"Compile a signed draft"</button>
                </ActionForm>
                <ActionOutcome value=draft.value() success="Draft compiled and signed."/>
            })}
        </section>
        <section class="card" id="revisions">
            <h2>"Revisions"</h2>
            {move || publish.value().get().and_then(Result::err).map(|error| view! { <ErrorMessage error/> })}
            {move || rollback.value().get().and_then(Result::err).map(|error| view! { <ErrorMessage error/> })}
            <Loaded resource=history render=render_history/>
        </section>
    }
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

fn history_view(list: Vec<BundleRecord>, may_publish: bool, publish: ServerAction<PublishBundle>, rollback: ServerAction<RollbackBundle>) -> AnyView {
    if list.is_empty() {
        return view! { <p>"No revisions yet."</p> }.into_any();
    }
    let active = list.iter().find(|b| b.published_at.is_some()).map(|b| b.revision);
    view! {
        <table data-testid="bundles">
            <thead><tr><th>"Revision"</th><th>"Made"</th><th>"Status"</th><th>"Why"</th><th>"Content"</th><th></th></tr></thead>
            <tbody>
                {list.into_iter().map(|bundle| {
                    let revision = bundle.revision;
                    let status = match (bundle.published_at, active) {
                        (Some(_), Some(a)) if a == revision => "active".to_owned(),
                        (Some(at), _) => format!("published {}", format_time(at)),
                        (None, Some(a)) if a > revision => "draft (superseded)".to_owned(),
                        (None, _) => "draft".to_owned(),
                    };
                    let rollback_of = bundle.rollback_of.map(|r| format!(" (rollback to {r})")).unwrap_or_default();
                    let publishable = may_publish && bundle.published_at.is_none() && active.is_none_or(|a| a < revision);
                    let restorable = may_publish && bundle.published_at.is_some() && active != Some(revision);
                    view! {
                        <tr>
                            <td>{revision}{rollback_of}</td>
                            <td>{format_time(bundle.created_at)}" by "{bundle.created_by.clone()}</td>
                            <td>{status}</td>
                            <td>{bundle.reason.clone().unwrap_or_default()}</td>
                            <td><code>{bundle.content_hash[..12.min(bundle.content_hash.len())].to_owned()}</code>" · "{bundle.summary.to_string()}</td>
                            <td>
                                {publishable.then(|| view! {
                                    <ActionForm action=publish>
                                        <input type="hidden" name="revision" value=revision/>
                                        <label>"Reason" <input type="text" name="reason" required maxlength="1000"/></label>
                                        <button type="submit">"Publish"</button>
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
