//! Sections whose features arrive with later work. Each says plainly what will appear, and
//! shows no figures until there are real ones.

use crate::components::EmptyState;
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn ConsentPage() -> impl IntoView {
    view! {
        <Title text="Consent"/>
        <h1>"Consent"</h1>
        <EmptyState title="No consent records yet">
            <p>
                "Level-4 authorization depends on the end user's consent. This section will show the "
                "consent each subject granted, for which scopes and purposes, and its revocations; every "
                "decision that relied on consent will cite its record."
            </p>
        </EmptyState>
    }
}

#[component]
pub fn RiskPage() -> impl IntoView {
    view! {
        <Title text="Risk"/>
        <h1>"Risk"</h1>
        <EmptyState title="No decisions reported yet">
            <p>
                "Risk analytics are computed from the decision logs that agents report: denied and "
                "anomalous requests, callers with rising risk scores, shadow APIs that no registration "
                "declares. Nothing has been reported, so there is no risk to show."
            </p>
        </EmptyState>
    }
}
