//! The page for any path the dashboard does not have.

use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn NotFoundPage() -> impl IntoView {
    #[cfg(feature = "ssr")]
    crate::auth::ssr::set_page_status(404);
    view! {
        <Title text="Not found"/>
        <main class="login">
            <section class="card">
                <h1>"Page not found"</h1>
                <p>"There is no page at this address."</p>
                <a href="/">"Go to the overview"</a>
            </section>
        </main>
    }
}
