//! The Agents section: the fleet (what each agent runs against what is meant for it, its
//! health) and how recent publishes reached it, for everyone signed in; enrollment tokens
//! (the secret shown once) and revocation for security and admins.

use crate::error::AppError;
use crate::flash::Flash;
use leptos::prelude::*;
use store::{AgentHealth, EnrollmentToken, FleetAgent, Labels};

#[cfg(feature = "ssr")]
use crate::auth::ssr::{audit_context, fail, require, require_recent, require_signed_in, state, store_error};
#[cfg(feature = "ssr")]
use store::{ApiId, Principal, Role, agent_reports, agents};

/// How many of the newest published revisions the convergence table follows.
pub const CONVERGENCE_SHOWN: usize = 5;
/// An enrollment token lasts an hour unless the form says otherwise.
pub const DEFAULT_TOKEN_MINUTES: i64 = 60;
/// The longest an enrollment token may last: 7 days, as the data layer allows.
pub const MAX_TOKEN_MINUTES: i64 = 7 * 24 * 60;
/// Where the command shown with a new token has the agent keep its key and bundles.
pub const AGENT_DATA_DIR: &str = "/var/lib/palisade-agent";
/// Stands in the command for the API id when the form names no API.
pub const API_PLACEHOLDER: &str = "<API id>";

/// How many agents are in each state. Revoked agents count only as revoked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FleetCounts {
    /// Agents not revoked.
    pub total: usize,
    pub healthy: usize,
    pub degraded: usize,
    pub pending: usize,
    pub offline: usize,
    /// Running something other than the revision meant for them.
    pub drifted: usize,
    pub revoked: usize,
}

impl FleetCounts {
    pub fn of(agents: &[FleetAgent]) -> FleetCounts {
        let mut counts = FleetCounts::default();
        for agent in agents {
            match agent.health {
                AgentHealth::Revoked => {
                    counts.revoked += 1;
                    continue;
                }
                AgentHealth::Healthy => counts.healthy += 1,
                AgentHealth::Degraded => counts.degraded += 1,
                AgentHealth::Pending => counts.pending += 1,
                AgentHealth::Offline => counts.offline += 1,
            }
            counts.total += 1;
            counts.drifted += usize::from(agent.drifted());
        }
        counts
    }
}

/// How one published revision reached the agents it was meant for.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PublishConvergence {
    pub revision: i64,
    /// The labels it was published to; empty: every agent.
    pub target: Labels,
    pub published_at: i64,
    /// Agents it was meant for when published (enrolled by then, not revoked).
    pub targets: u64,
    /// Percent of those running it (or a later revision) 1 s, 5 s and 30 s after the
    /// publish, and by now.
    pub within_1s: u8,
    pub within_5s: u8,
    pub within_30s: u8,
    pub by_now: u8,
}

#[cfg(feature = "ssr")]
impl PublishConvergence {
    fn of(target: Labels, convergence: store::Convergence) -> PublishConvergence {
        PublishConvergence {
            revision: convergence.revision,
            target,
            published_at: convergence.published_at,
            targets: convergence.targets,
            within_1s: convergence.percent_within(1_000),
            within_5s: convergence.percent_within(5_000),
            within_30s: convergence.percent_within(30_000),
            by_now: convergence.percent_within(i64::MAX),
        }
    }
}

/// The fleet with the server's clock (so "seen 12 s ago" reads the same on both sides),
/// its counts, and the newest publishes' convergence, newest first.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FleetOverview {
    pub now: i64,
    pub agents: Vec<FleetAgent>,
    pub counts: FleetCounts,
    pub convergence: Vec<PublishConvergence>,
}

/// An enrollment token as listed, with the name of the agent it enrolled, once used.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListedEnrollmentToken {
    pub token: EnrollmentToken,
    pub agent_name: Option<String>,
}

/// Every enrollment token (never a secret), newest first, with the server's clock to tell
/// expired ones.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EnrollmentTokenList {
    pub now: i64,
    pub tokens: Vec<ListedEnrollmentToken>,
}

/// A token just made: its secret, shown this once, and the command that starts an agent
/// with it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewEnrollmentToken {
    pub token: EnrollmentToken,
    pub secret: String,
    pub command: String,
}

impl NewEnrollmentToken {
    /// What its creator is told, with the secret and the command.
    pub fn flash(self) -> Flash {
        let expires = crate::components::format_time(self.token.expires_at);
        Flash {
            message: format!(
                "Enrollment token created for {}; usable once, until {expires}. Copy it now: it will not be shown again.",
                store::show_labels(&self.token.labels)
            ),
            secret: Some(self.secret),
            command: Some(self.command),
        }
    }
}

/// The command that starts an agent in front of an API instance with a new token.
pub fn agent_command(origin: &str, secret: &str, api: Option<i64>) -> String {
    let api = api.map_or_else(|| API_PLACEHOLDER.to_owned(), |id| id.to_string());
    format!(
        "palisade-agent --control-plane {origin} --enroll-token {secret} --data-dir {AGENT_DATA_DIR} --api {api} \
         --listen 0.0.0.0:8080 --upstream http://127.0.0.1:9000"
    )
}

/// Security and admins manage the fleet; everyone else reads it.
#[cfg(feature = "ssr")]
fn manages_fleet(principal: &Principal) -> bool {
    matches!(principal.role, Role::Admin | Role::Security)
}

/// Anyone signed in: every agent with its health and the revision meant for it, and how
/// the newest publishes converged.
#[server(prefix = "/rpc", endpoint = "list_fleet")]
pub async fn list_fleet() -> Result<FleetOverview, AppError> {
    require_signed_in()?;
    let db = state()?.db;
    let now = store::now_millis();
    let agents = agent_reports::fleet(&db, now).await.map_err(store_error)?;
    let published: Vec<store::BundleRecord> = store::bundles::list_bundles(&db)
        .await
        .map_err(store_error)?
        .into_iter()
        .filter(|bundle| bundle.published_at.is_some())
        .take(CONVERGENCE_SHOWN)
        .collect();
    let mut convergence = Vec::with_capacity(published.len());
    for bundle in published {
        let reached = agent_reports::convergence(&db, bundle.revision).await.map_err(store_error)?;
        convergence.push(PublishConvergence::of(bundle.target, reached));
    }
    Ok(FleetOverview { now, counts: FleetCounts::of(&agents), agents, convergence })
}

/// Security and admins: every enrollment token, newest first (never the secrets).
#[server(prefix = "/rpc", endpoint = "list_enrollment_tokens")]
pub async fn list_enrollment_tokens() -> Result<EnrollmentTokenList, AppError> {
    require(manages_fleet)?;
    let db = state()?.db;
    let tokens = agents::list_enrollment_tokens(&db).await.map_err(store_error)?;
    let names: std::collections::BTreeMap<i64, String> =
        agents::list_agents(&db).await.map_err(store_error)?.into_iter().map(|agent| (agent.id, agent.name)).collect();
    let tokens = tokens
        .into_iter()
        .map(|token| ListedEnrollmentToken { agent_name: token.agent_id.and_then(|id| names.get(&id).cloned()), token })
        .collect();
    Ok(EnrollmentTokenList { now: store::now_millis(), tokens })
}

/// Security and admins, signed in recently (a token lets a machine into the fleet): makes
/// a single-use enrollment token. `labels` as `k=v, k2=v2` (empty: none); `name` optional;
/// `expires_minutes` 1 to 10080, 60 when empty; `api_id`, when given, goes into the
/// command shown with the secret.
#[server(prefix = "/rpc", endpoint = "create_enrollment_token")]
pub async fn create_enrollment_token(
    #[server(default)] labels: String,
    name: Option<String>,
    expires_minutes: Option<String>,
    api_id: Option<String>,
) -> Result<NewEnrollmentToken, AppError> {
    let principal = require_recent(manages_fleet).await?;
    let labels = store::parse_labels(&labels).map_err(|message| fail(AppError::invalid("labels", message)))?;
    let minutes = match super::non_empty(expires_minutes) {
        None => DEFAULT_TOKEN_MINUTES,
        Some(text) => match text.parse::<i64>() {
            Ok(minutes @ 1..=MAX_TOKEN_MINUTES) => minutes,
            _ => return Err(fail(AppError::invalid("expiry", format!("from 1 to {MAX_TOKEN_MINUTES} minutes (7 days)")))),
        },
    };
    let state = state()?;
    let api = match super::non_empty(api_id) {
        None => None,
        Some(text) => {
            let id: i64 = text.parse().map_err(|_| fail(AppError::invalid("api", "choose an API")))?;
            Some(store::apis::find_api(&state.db, ApiId(id)).await.map_err(store_error)?.summary.id.0)
        }
    };
    let name = super::non_empty(name);
    let (token, secret) = agents::create_enrollment_token(&state.db, &labels, name.as_deref(), minutes * 60_000, &audit_context(&principal))
        .await
        .map_err(store_error)?;
    let command = agent_command(&crate::auth::ssr::request_origin(&state), &secret, api);
    let created = NewEnrollmentToken { token, secret, command };
    crate::flash::keep_for_plain_form(created.clone().flash()).await?;
    Ok(created)
}

/// Security and admins: revokes an unused enrollment token (a used one has enrolled its
/// agent: revoke the agent instead).
#[server(prefix = "/rpc", endpoint = "revoke_enrollment_token")]
pub async fn revoke_enrollment_token(enrollment_token_id: i64) -> Result<EnrollmentToken, AppError> {
    let principal = require(manages_fleet)?;
    agents::revoke_enrollment_token(&state()?.db, enrollment_token_id, &audit_context(&principal)).await.map_err(store_error)
}

/// Security and admins, signed in recently (it stops enforcement updates for an API
/// instance): revokes an agent, with the reason kept in the audit trail. The agent is
/// refused from its next call on.
#[server(prefix = "/rpc", endpoint = "revoke_agent")]
pub async fn revoke_agent(agent_id: i64, reason: String) -> Result<store::Agent, AppError> {
    let principal = require_recent(manages_fleet).await?;
    agents::revoke_agent(&state()?.db, agent_id, &reason, &audit_context(&principal)).await.map_err(store_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::{Agent, AgentStatus};

    fn member(id: i64, health: AgentHealth, active: Option<i64>, meant: Option<i64>) -> FleetAgent {
        let status = active.map(|revision| AgentStatus { active_revision: Some(revision), ..AgentStatus::default() });
        let agent = Agent {
            id,
            name: format!("agent-{id}"),
            labels: Labels::new(),
            public_key: String::new(),
            version: "1".into(),
            enrolled_at: 0,
            last_seen_at: None,
            revoked_at: (health == AgentHealth::Revoked).then_some(1),
            status,
        };
        FleetAgent { agent, meant_revision: meant, health }
    }

    #[test]
    fn counts_leave_revoked_agents_out_of_the_total_and_drift() {
        let fleet = [
            member(1, AgentHealth::Healthy, Some(3), Some(3)),
            member(2, AgentHealth::Healthy, Some(2), Some(3)),
            member(3, AgentHealth::Offline, Some(3), Some(3)),
            member(4, AgentHealth::Pending, None, Some(3)),
            member(5, AgentHealth::Revoked, Some(1), Some(3)),
        ];
        let counts = FleetCounts::of(&fleet);
        assert_eq!(counts, FleetCounts { total: 4, healthy: 2, degraded: 0, pending: 1, offline: 1, drifted: 2, revoked: 1 });
    }

    #[test]
    fn the_command_names_the_api_or_leaves_a_placeholder() {
        let command = agent_command("https://palisade.example.com", "pae_x", Some(7));
        assert_eq!(
            command,
            "palisade-agent --control-plane https://palisade.example.com --enroll-token pae_x --data-dir /var/lib/palisade-agent \
             --api 7 --listen 0.0.0.0:8080 --upstream http://127.0.0.1:9000"
        );
        assert!(agent_command("http://h", "pae_x", None).contains("--api <API id> "));
    }
}
