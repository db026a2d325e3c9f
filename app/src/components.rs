//! Building blocks shared by the pages: the signed-in shell with its navigation, empty
//! states, refusals, error and flash messages, time formatting.

use crate::auth::use_me;
use crate::error::AppError;
use crate::flash::{Flash, take_flash};
use leptos::prelude::*;
use leptos_router::components::{A, Outlet, Redirect};

/// The signed-in frame: navigation on the left, the section on the right. Signed-out
/// visitors are sent to the sign-in page.
#[component]
pub fn Shell() -> impl IntoView {
    let Some(me) = use_me() else {
        return view! { <Redirect path="/login"/> }.into_any();
    };
    let sections = [
        ("/", "Overview"),
        ("/apis", "APIs"),
        ("/clients", "Clients"),
        ("/data-classes", "Data classes"),
        ("/agents", "Agents"),
        ("/policies", "Policies"),
        ("/consent", "Consent"),
        ("/risk", "Risk"),
        ("/audit", "Audit"),
        ("/settings", "Settings"),
    ];
    view! {
        <div class="layout">
            <nav class="sidebar" aria-label="Sections">
                <div class="brand">"Palisade"</div>
                <ul>
                    {sections
                        .into_iter()
                        .map(|(href, label)| view! { <li><A href=href exact=href == "/">{label}</A></li> })
                        .collect_view()}
                </ul>
                <div class="whoami">
                    <span class="who" data-testid="whoami">{me.display_name.clone()}</span>
                    <span class="role">{me.role.label()}</span>
                    <form method="post" action="/auth/logout">
                        <button type="submit" class="link">"Sign out"</button>
                    </form>
                </div>
            </nav>
            <main class="content">
                <Outlet/>
            </main>
        </div>
    }
    .into_any()
}

/// A section that has nothing to show yet, saying honestly what will appear there.
#[component]
pub fn EmptyState(title: &'static str, children: Children) -> impl IntoView {
    view! {
        <section class="empty-state">
            <h2>{title}</h2>
            {children()}
        </section>
    }
}

/// Renders what a server function loaded, with a loading line meanwhile and the error in
/// its place when the call failed.
#[component]
pub fn Loaded<T, V>(
    resource: Resource<Result<T, AppError>>,
    render: impl Fn(T) -> V + Clone + Send + Sync + 'static,
) -> impl IntoView
where
    T: Clone + Send + Sync + 'static,
    V: IntoView + 'static,
{
    view! {
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || {
                let render = render.clone();
                Suspend::new(async move {
                    match resource.await {
                        Ok(value) => render(value).into_any(),
                        Err(error) => view! { <ErrorMessage error/> }.into_any(),
                    }
                })
            }}
        </Suspense>
    }
}

/// The page shown when the signed-in user's role does not allow a page.
#[component]
pub fn Forbidden() -> impl IntoView {
    #[cfg(feature = "ssr")]
    crate::auth::ssr::set_page_status(403);
    view! {
        <section class="refusal" role="alert">
            <h1>"Not allowed"</h1>
            <p>"Your role does not give access to this page. If you need it, ask an administrator."</p>
        </section>
    }
}

/// An error under a form or in place of a list.
#[component]
pub fn ErrorMessage(error: AppError) -> impl IntoView {
    // A stale sign-in is fixed by signing in again, and coming back here.
    let again = matches!(error, AppError::Reauthenticate(_)).then(|| {
        let here = leptos_router::hooks::use_location().pathname.get_untracked();
        let href = format!("/login?reauth=1&next={}", crate::url::percent_encode(&here));
        view! { " " <a href=href>"Sign in again"</a> }
    });
    view! { <p class="error" role="alert">{error.to_string()}{again}</p> }
}

/// The outcome of the last submission of a form: its error, or `success` when it worked.
#[component]
pub fn ActionOutcome<T, V>(
    value: V,
    #[prop(into)] success: String,
) -> impl IntoView
where
    T: Send + Sync + Clone + 'static,
    V: Get<Value = Option<Result<T, AppError>>> + Send + Sync + 'static,
{
    move || match value.get() {
        Some(Err(error)) => view! { <ErrorMessage error/> }.into_any(),
        Some(Ok(_)) => view! { <p class="success" role="status">{success.clone()}</p> }.into_any(),
        None => ().into_any(),
    }
}

/// A message, and the secret it is about (shown once, easy to select), with the command
/// that uses it.
#[component]
pub fn FlashView(flash: Flash) -> impl IntoView {
    view! {
        <div class="flash" role="status">
            <p>{flash.message}</p>
            {flash.secret.map(|secret| view! { <code class="secret" data-testid="secret">{secret}</code> })}
            {flash.command.map(|command| view! { <pre class="command"><code data-testid="command">{command}</code></pre> })}
        </div>
    }
}

/// The outcome of a form whose success reveals a secret: the secret once, or the error.
#[component]
pub fn SecretOutcome<T, V>(value: V, to_flash: fn(T) -> Flash) -> impl IntoView
where
    T: Send + Sync + Clone + 'static,
    V: Get<Value = Option<Result<T, AppError>>> + Send + Sync + 'static,
{
    move || match value.get() {
        Some(Ok(done)) => view! { <FlashView flash=to_flash(done)/> }.into_any(),
        Some(Err(error)) => view! { <ErrorMessage error/> }.into_any(),
        None => ().into_any(),
    }
}

/// A one-time message (and secret) left by a form post made without JavaScript.
#[component]
pub fn FlashMessage() -> impl IntoView {
    let flash = Resource::new(|| (), |_| take_flash());
    view! {
        <Suspense>
            {move || Suspend::new(async move {
                match flash.await {
                    Ok(Some(flash)) => view! { <FlashView flash/> }.into_any(),
                    _ => ().into_any(),
                }
            })}
        </Suspense>
    }
}

/// `YYYY-MM-DD HH:MM UTC` for a Unix-milliseconds time.
pub fn format_time(millis: i64) -> String {
    let Ok(at) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000) else {
        return "—".to_owned();
    };
    at.format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC"))
        .unwrap_or_else(|_| "—".to_owned())
}

pub fn format_optional_time(millis: Option<i64>, none: &'static str) -> String {
    millis.map_or_else(|| none.to_owned(), format_time)
}

/// How long before `now` something happened, roughly: `12 s ago`, `3 min ago`, `2 h ago`,
/// `5 d ago` (both Unix ms; a time ahead of `now` reads as `0 s ago`).
pub fn format_ago(now: i64, then: i64) -> String {
    let seconds = now.saturating_sub(then).max(0) / 1_000;
    match seconds {
        0..60 => format!("{seconds} s ago"),
        60..3_600 => format!("{} min ago", seconds / 60),
        3_600..86_400 => format!("{} h ago", seconds / 3_600),
        _ => format!("{} d ago", seconds / 86_400),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_formatted_in_utc() {
        assert_eq!(super::format_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::format_time(1_700_000_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(super::format_time(i64::MAX), "—");
        assert_eq!(super::format_optional_time(None, "never"), "never");
    }

    #[test]
    fn elapsed_times_read_in_the_largest_whole_unit() {
        let now = 1_700_000_000_000;
        assert_eq!(super::format_ago(now, now - 12_400), "12 s ago");
        assert_eq!(super::format_ago(now, now + 5_000), "0 s ago");
        assert_eq!(super::format_ago(now, now - 59_999), "59 s ago");
        assert_eq!(super::format_ago(now, now - 60_000), "1 min ago");
        assert_eq!(super::format_ago(now, now - 2 * 3_600_000 - 1), "2 h ago");
        assert_eq!(super::format_ago(now, now - 5 * 86_400_000), "5 d ago");
        assert_eq!(super::format_ago(now, i64::MIN), format!("{} d ago", i64::MAX / 86_400_000));
    }
}
