//! One module per page of the dashboard.

mod agents;
mod apis;
mod audit;
mod clients;
mod login;
mod not_found;
mod overview;
mod policies;
mod protection;
mod sections;
mod settings;
mod setup_password;
mod sso;
mod teams;
mod tokens;
mod users;

pub use login::LoginPage;
pub use not_found::NotFoundPage;
pub use overview::OverviewPage;
pub use audit::AuditPage;
pub use apis::{ApiPage, ApisPage};
pub use clients::{ClientsPage, DataClassesPage};
pub use protection::OperationPage;
pub use policies::PoliciesPage;
pub use agents::AgentsPage;
pub use sections::{ConsentPage, RiskPage};
pub use settings::{ProfilePage, SettingsNav};
pub use setup_password::SetupPasswordPage;
pub use sso::SsoPage;
pub use teams::TeamsPage;
pub use tokens::TokensPage;
pub use users::{UserPage, UsersPage};
