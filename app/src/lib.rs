//! Palisade's dashboard: the Leptos application (pages, components, server functions),
//! rendered on the server and hydrated in the browser.

pub mod api;
pub mod auth;
pub mod components;
pub mod error;
pub mod flash;
pub mod pages;
pub mod policy_code;
pub mod publishing;
pub mod url;
#[cfg(feature = "ssr")]
pub mod state;

use auth::Me;
use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::components::{ParentRoute, Route, Router, Routes};
use leptos_router::{SsrMode, path};
use pages::*;

/// The HTML document around the application, rendered on the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    // The middleware minted this response's CSP nonce: the hydration scripts carry it.
    #[cfg(feature = "ssr")]
    if let Some(nonce) = use_context::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<state::CspNonce>().cloned())
    {
        provide_context(leptos::nonce::Nonce::from_value(nonce.0));
    }
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The dashboard: sign-in pages, and the signed-in sections inside the navigation shell.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Resolved by the server for this request and handed to the browser at hydration.
    let me = SharedValue::new(|| {
        #[cfg(feature = "ssr")]
        {
            auth::ssr::current_principal()
        }
        #[cfg(not(feature = "ssr"))]
        {
            None
        }
    });
    provide_context(Me(me.into_inner()));
    // Effects run only in the browser, once hydrated: tests and scripts wait for this mark.
    Effect::new(|_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });

    view! {
        <Stylesheet id="leptos" href="/pkg/palisade.css"/>
        <Title formatter=|page: String| if page.is_empty() { "Palisade".to_owned() } else { format!("{page} · Palisade") }/>
        <Router>
            <Routes fallback=|| view! { <NotFoundPage/> }>
                <Route path=path!("/login") view=LoginPage ssr=SsrMode::Async/>
                <Route path=path!("/setup-password") view=SetupPasswordPage ssr=SsrMode::Async/>
                <ParentRoute path=path!("") view=components::Shell ssr=SsrMode::Async>
                    <Route path=path!("") view=OverviewPage ssr=SsrMode::Async/>
                    <Route path=path!("apis") view=ApisPage ssr=SsrMode::Async/>
                    <Route path=path!("apis/:api_id") view=ApiPage ssr=SsrMode::Async/>
                    <Route path=path!("apis/:api_id/operations/:operation_id") view=OperationPage ssr=SsrMode::Async/>
                    <Route path=path!("clients") view=ClientsPage ssr=SsrMode::Async/>
                    <Route path=path!("data-classes") view=DataClassesPage ssr=SsrMode::Async/>
                    <Route path=path!("agents") view=AgentsPage ssr=SsrMode::Async/>
                    <Route path=path!("policies") view=PoliciesPage ssr=SsrMode::Async/>
                    <Route path=path!("consent") view=ConsentPage ssr=SsrMode::Async/>
                    <Route path=path!("risk") view=RiskPage ssr=SsrMode::Async/>
                    <Route path=path!("audit") view=AuditPage ssr=SsrMode::Async/>
                    <Route path=path!("settings") view=ProfilePage ssr=SsrMode::Async/>
                    <Route path=path!("settings/tokens") view=TokensPage ssr=SsrMode::Async/>
                    <Route path=path!("settings/users") view=UsersPage ssr=SsrMode::Async/>
                    <Route path=path!("settings/users/:id") view=UserPage ssr=SsrMode::Async/>
                    <Route path=path!("settings/teams") view=TeamsPage ssr=SsrMode::Async/>
                    <Route path=path!("settings/sso") view=SsoPage ssr=SsrMode::Async/>
                </ParentRoute>
            </Routes>
        </Router>
    }
}
