//! Domain types shared by the server and the dashboard (built for wasm too): ids, roles,
//! accounts, teams, tokens, and the principal that every permission check is asked of.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// Primary key of an `account`.
    AccountId
);
id_type!(
    /// Primary key of a `team`.
    TeamId
);
id_type!(
    /// Primary key of an `api_token`.
    ApiTokenId
);
id_type!(
    /// Primary key of an `api` in the inventory.
    ApiId
);
id_type!(
    /// Primary key of a `client_app`: a service, partner, mobile or web application
    /// that calls APIs.
    ClientAppId
);
id_type!(
    /// Primary key of a `client_credential`.
    CredentialId
);

/// What a dashboard user or API token may do. One role per account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including user administration.
    Admin,
    /// CISO and analysts: every API, policy publishing, risk.
    Security,
    /// Registers APIs and edits only those owned by their teams.
    Developer,
    /// Read-only everywhere, including the audit trail.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Security, Role::Developer, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Security => "security",
            Role::Developer => "developer",
            Role::Auditor => "auditor",
        }
    }

    /// The name shown in the dashboard.
    pub fn label(self) -> &'static str {
        match self {
            Role::Admin => "Administrator",
            Role::Security => "Security",
            Role::Developer => "Developer",
            Role::Auditor => "Auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not one of the four role names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected admin, security, developer or auditor")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| UnknownRole(text.to_owned()))
    }
}

/// A team, as other records refer to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamRef {
    pub id: TeamId,
    pub name: String,
}

/// A team with the size of its membership, for listings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Team {
    pub id: TeamId,
    pub name: String,
    pub member_count: i64,
    pub created_at: i64,
}

/// An account as administrators see it. Never carries a password hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub teams: Vec<TeamRef>,
    /// False for an invited user who has not set a password yet.
    pub has_password: bool,
    pub disabled_at: Option<i64>,
    pub created_at: i64,
}

impl Account {
    pub fn is_disabled(&self) -> bool {
        self.disabled_at.is_some()
    }
}

/// A personal API token's metadata; the secret itself is shown once at creation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: ApiTokenId,
    pub account_id: AccountId,
    pub name: String,
    pub prefix: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl ApiToken {
    pub fn is_active(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }
}

/// Who is calling: a signed-in user or the owner of an API token. Every route and server
/// function asks one of these what it may do, so the rules live in one place.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub account_id: AccountId,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub teams: Vec<TeamRef>,
}

impl Principal {
    /// Create, change, disable accounts and teams; reset passwords.
    pub fn can_administer_users(&self) -> bool {
        self.role == Role::Admin
    }

    /// See every account and team (auditors read everything).
    pub fn can_read_users(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Auditor)
    }

    /// Manage (list, revoke) API tokens that belong to someone else.
    pub fn can_manage_others_tokens(&self) -> bool {
        self.role == Role::Admin
    }

    /// Register, re-import and change what `team` owns in the inventory: security and
    /// admins anything, developers their own teams' only, auditors nothing.
    pub fn can_change_owned_by(&self, team: TeamId) -> bool {
        match self.role {
            Role::Admin | Role::Security => true,
            Role::Developer => self.is_member_of(team),
            Role::Auditor => false,
        }
    }

    /// See the whole audit trail (others see entries by or about themselves).
    pub fn can_read_all_audit(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Auditor)
    }

    /// Whether this principal belongs to the team (developers may edit only what their
    /// teams own).
    pub fn is_member_of(&self, team: TeamId) -> bool {
        self.teams.iter().any(|t| t.id == team)
    }
}

/// One audit entry. Its hash covers everything else in it, canonically encoded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: i64,
    /// Unix milliseconds.
    pub at: i64,
    /// `user`, `token`, `agent`, `system` or `anonymous`.
    pub actor_type: String,
    pub actor_id: Option<i64>,
    pub actor_label: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    /// `success` or `failure`.
    pub outcome: String,
    pub source: String,
    pub user_agent: String,
    pub request_id: String,
    pub reason: Option<String>,
    /// A before/after summary; never contains secrets.
    pub details: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

/// What to look for in the audit trail; every field narrows the search.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFilter {
    /// Part of the actor's label (an email), any case.
    pub actor: Option<String>,
    /// An exact action (`account.create`) or a family (`account`).
    pub action: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub outcome: Option<String>,
    /// Unix milliseconds, inclusive.
    pub from: Option<i64>,
    /// Unix milliseconds, exclusive.
    pub to: Option<i64>,
    /// Free text over actor, action, target, details, reason and source.
    pub text: Option<String>,
    /// Only entries older than this sequence number (the cursor of the previous page).
    pub before_seq: Option<i64>,
    pub limit: Option<i64>,
}

/// A page of audit entries, newest first, and the cursor for the next (older) page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next_cursor: Option<i64>,
}

/// A signed statement that the audit chain up to `seq` ends in `head_hash`. With the
/// signer's public key, it proves that nothing up to `seq` was rewritten or cut off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: i64,
    pub head_hash: String,
    /// Unix milliseconds.
    pub at: i64,
    pub key_id: String,
    /// Ed25519 over the checkpoint's canonical form, hex.
    pub signature: String,
}

/// The public half of a signing key, as published for verifiers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyInfo {
    pub key_id: String,
    /// What the key signs: `audit`.
    pub purpose: String,
    /// Ed25519 public key, hex.
    pub public_key: String,
    pub created_at: i64,
    /// Signatures dated after this are not accepted from this key.
    pub retired_at: Option<i64>,
}

/// What a verification of the trail established.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrailSummary {
    /// Entries whose links and hashes verified.
    pub entries: i64,
    /// Checkpoints whose signatures and head hashes verified.
    pub checkpoints: i64,
    pub last_checkpoint: Option<Checkpoint>,
}

/// The outcome of verifying the stored chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainStatus {
    /// What verified (all zero when broken).
    pub verified: TrailSummary,
    pub first_bad_seq: Option<i64>,
    pub problem: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_round_trip() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(serde_json::to_string(&role).unwrap(), format!("\"{role}\""));
        }
        assert_eq!("root".parse::<Role>(), Err(UnknownRole("root".into())));
        assert!("Admin".parse::<Role>().is_err(), "role names are case-sensitive");
    }

    #[test]
    fn only_admins_administer_users() {
        let principal = |role| Principal {
            account_id: AccountId(1),
            email: "a@example.com".into(),
            display_name: "A".into(),
            role,
            teams: vec![],
        };
        let admins: Vec<Role> =
            Role::ALL.into_iter().filter(|r| principal(*r).can_administer_users()).collect();
        assert_eq!(admins, vec![Role::Admin]);
        let readers: Vec<Role> =
            Role::ALL.into_iter().filter(|r| principal(*r).can_read_users()).collect();
        assert_eq!(readers, vec![Role::Admin, Role::Auditor]);
    }

    #[test]
    fn token_activity_follows_revocation_and_expiry() {
        let token = ApiToken {
            id: ApiTokenId(1),
            account_id: AccountId(1),
            name: "ci".into(),
            prefix: "pal_abcd".into(),
            created_at: 0,
            expires_at: Some(100),
            last_used_at: None,
            revoked_at: None,
        };
        assert!(token.is_active(99));
        assert!(!token.is_active(100));
        assert!(!ApiToken { revoked_at: Some(5), ..token.clone() }.is_active(0));
        assert!(ApiToken { expires_at: None, ..token }.is_active(i64::MAX));
    }
}

/// Where an API is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lifecycle {
    Active,
    /// Still served, with a sunset date.
    Deprecated,
    Retired,
}

impl Lifecycle {
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Active => "active",
            Lifecycle::Deprecated => "deprecated",
            Lifecycle::Retired => "retired",
        }
    }
}

impl FromStr for Lifecycle {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "active" => Ok(Lifecycle::Active),
            "deprecated" => Ok(Lifecycle::Deprecated),
            "retired" => Ok(Lifecycle::Retired),
            other => Err(format!("unknown lifecycle {other:?}: active, deprecated or retired")),
        }
    }
}

/// An API as the inventory lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiSummary {
    pub id: ApiId,
    pub name: String,
    pub team_id: TeamId,
    pub team_name: String,
    pub environment: String,
    pub version: String,
    pub lifecycle: Lifecycle,
    pub sunset_at: Option<i64>,
    pub operation_count: i64,
    pub updated_at: i64,
    /// Every data class any of its operations receives or returns, sorted.
    pub data_classes: Vec<String>,
}

/// A field of an operation that carries a data class.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataClassHit {
    /// `email`, `payment_card`, … or a custom class from `x-data-class`.
    pub class: String,
    /// `request` or `response`.
    pub direction: String,
    /// Where: `query.phone`, `body.customer.email`, `200.body.items[].iban`.
    pub field: String,
}

/// One operation of an API, as its OpenAPI document declares it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    pub id: i64,
    /// Upper case: `GET`.
    pub method: String,
    /// The path template: `/pets/{id}`.
    pub path: String,
    pub operation_id: Option<String>,
    pub summary: String,
    pub parameters: serde_json::Value,
    pub request_body: serde_json::Value,
    pub responses: serde_json::Value,
    /// The effective security requirement; `null` when the document says nothing.
    pub security: serde_json::Value,
    pub deprecated: bool,
    /// What the schemas show, with the owner's corrections applied.
    pub data_classes: Vec<DataClassHit>,
    /// The owner's corrections to the detected classes.
    pub class_edits: crate::protection::ClassEdits,
    /// This operation's override of the API's protection (empty: all inherited).
    pub protection: crate::protection::Protection,
}

/// An API with everything the inventory holds about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiDetail {
    pub summary: ApiSummary,
    pub description: String,
    pub base_urls: Vec<String>,
    pub tags: Vec<String>,
    pub contacts: Vec<String>,
    pub openapi_version: String,
    pub spec_digest: String,
    pub created_at: i64,
    /// How the API is protected, as declared in Palisade.
    pub protection: crate::protection::Protection,
    pub operations: Vec<Operation>,
}

/// What a re-import changed, by operation (`GET /pets/{id}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl SpecDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// How much a posture finding matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    High,
    Medium,
    Low,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }
}

/// A gap in an API's configuration, against the OWASP API Security Top 10 (2023).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable id of the check: `object-id-without-object-rule`.
    pub rule: String,
    /// The OWASP category: `API1:2023`.
    pub owasp: String,
    pub severity: Severity,
    /// The operation concerned (`GET /pets/{id}`); `None` for the API as a whole.
    pub operation: Option<String>,
    /// What is wrong, in a sentence that follows the operation or API name.
    pub title: String,
    /// Where it is fixed in the dashboard.
    pub fix: String,
}

/// One API's findings and score (0–100).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiPosture {
    pub api: ApiSummary,
    pub score: u8,
    pub findings: Vec<Finding>,
}

/// Every API's score and finding counts, and the estate's mean score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EstatePosture {
    /// `None` when no API is registered.
    pub score: Option<u8>,
    pub apis: Vec<ApiScore>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiScore {
    pub api: ApiSummary,
    pub score: u8,
    pub high: usize,
    pub medium: usize,
    pub low: usize,
}

/// What kind of software a client application is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientKind {
    Service,
    Partner,
    Mobile,
    Web,
}

impl ClientKind {
    pub const ALL: [ClientKind; 4] = [ClientKind::Service, ClientKind::Partner, ClientKind::Mobile, ClientKind::Web];

    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::Service => "service",
            ClientKind::Partner => "partner",
            ClientKind::Mobile => "mobile",
            ClientKind::Web => "web",
        }
    }
}

impl FromStr for ClientKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ClientKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| format!("unknown client type {text:?}: service, partner, mobile or web"))
    }
}

/// How a client credential proves who is calling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// A random key Palisade issues; only its digest is kept.
    ApiKey,
    /// A client certificate identity (subject or SAN) registered for the instance.
    Mtls,
    /// A key for HMAC request signatures, named by its key id; Palisade issues it and keeps
    /// it sealed under the master key, since agents need it to verify signatures.
    Hmac,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::ApiKey => "api_key",
            CredentialKind::Mtls => "mtls",
            CredentialKind::Hmac => "hmac",
        }
    }
}

impl FromStr for CredentialKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "api_key" => Ok(CredentialKind::ApiKey),
            "mtls" => Ok(CredentialKind::Mtls),
            "hmac" => Ok(CredentialKind::Hmac),
            other => Err(format!("unknown credential kind {other:?}: api_key, mtls or hmac")),
        }
    }
}

/// One credential of one instance of a client application. Never carries a secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub id: CredentialId,
    pub client_app_id: ClientAppId,
    pub kind: CredentialKind,
    /// Which instance of the caller holds it (`orders-7f9c`, `eu-west-1a`).
    pub instance: String,
    /// The first characters of an API key, to recognise it, or an HMAC key's id (which
    /// callers send with their signatures); `None` for mTLS.
    pub prefix: Option<String>,
    /// The certificate subject or SAN of an mTLS credential.
    pub identity: Option<String>,
    pub created_at: i64,
    /// Set when rotated: the old key keeps working until then.
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl Credential {
    pub fn is_active(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }
}

/// A client application and its credentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientApp {
    pub id: ClientAppId,
    pub name: String,
    pub team_id: TeamId,
    pub team_name: String,
    pub kind: ClientKind,
    pub description: String,
    /// API keys older than this are due for rotation (a posture finding).
    pub rotation_days: i64,
    pub created_at: i64,
    pub credentials: Vec<Credential>,
}

/// A credential just issued, with its secret (an API key or HMAC key), shown this once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCredential {
    pub credential: Credential,
    pub secret: Option<String>,
}

/// A data class an organisation defines beside the built-in ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomClass {
    /// `loyalty_number`: lower case, digits and `_`.
    pub name: String,
    pub description: String,
    /// Field names (any case, `_`/`-` ignored) that carry the class.
    pub keywords: Vec<String>,
    /// Regular expressions over values, for the agents' response inspection, and over
    /// field names at import.
    pub patterns: Vec<String>,
    pub created_at: i64,
}

/// Every built-in class, as stored and shown.
pub const BUILT_IN_CLASSES: [&str; 12] = [
    "email",
    "phone",
    "person_name",
    "postal_address",
    "date_of_birth",
    "national_id",
    "payment_card",
    "bank_account",
    "health",
    "credentials",
    "precise_location",
    "ip_address",
];

/// Agent labels (`env=canary`): a bundle's target, a pin's group, an agent's own.
pub type Labels = std::collections::BTreeMap<String, String>;

/// Whether an agent with `labels` is in the group `group` (every label of the group).
pub fn labels_match(group: &Labels, labels: &Labels) -> bool {
    group.iter().all(|(key, value)| labels.get(key) == Some(value))
}

/// Parses `k=v,k2=v2` (spaces around items allowed; empty: no labels).
pub fn parse_labels(text: &str) -> Result<Labels, String> {
    let mut labels = Labels::new();
    for item in text.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        let (key, value) = item.split_once('=').ok_or_else(|| format!("{item:?}: a label is key=value"))?;
        let (key, value) = (key.trim(), value.trim());
        check_label(key, value)?;
        if labels.insert(key.to_owned(), value.to_owned()).is_some() {
            return Err(format!("label {key:?} is given twice"));
        }
    }
    Ok(labels)
}

/// Label keys and values: 1 to 63 of letters, digits, `.`, `_`, `-`, `/`.
pub fn check_label(key: &str, value: &str) -> Result<(), String> {
    for (what, text) in [("key", key), ("value", value)] {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/');
        if text.is_empty() || text.len() > 63 || !text.chars().all(allowed) {
            return Err(format!("label {what} {text:?}: 1 to 63 letters, digits, '.', '_', '-' or '/'"));
        }
    }
    Ok(())
}

/// `k=v, k2=v2`, or `every agent` for none.
pub fn show_labels(labels: &Labels) -> String {
    if labels.is_empty() {
        return "every agent".to_owned();
    }
    labels.iter().map(|(key, value)| format!("{key}={value}")).collect::<Vec<_>>().join(", ")
}

/// A label group held on a revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundlePin {
    pub pin_id: i64,
    pub labels: Labels,
    /// The re-issue the group's agents take.
    pub revision: i64,
    /// The revision whose policy it carries.
    pub pinned_to: i64,
    pub created_at: i64,
    pub created_by: String,
    pub reason: String,
}

/// A revision without its signed bytes, for listings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleRecord {
    pub revision: i64,
    pub created_at: i64,
    pub created_by: String,
    pub content_hash: String,
    pub signing_key_id: String,
    /// Agent labels it is meant for; empty: every agent.
    pub target: Labels,
    /// `compiled`, or how it re-issues `reissue_of`: `rollback`, `promotion`, `pin`,
    /// `key_announcement`, `credentials`.
    pub origin: String,
    pub reissue_of: Option<i64>,
    /// `{"apis": n, "routes": n}`.
    pub summary: serde_json::Value,
    pub published_at: Option<i64>,
    pub published_by: Option<String>,
    pub reason: Option<String>,
}

// Enforcement agents.

/// An enrollment token as listed (never the secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentToken {
    pub id: i64,
    pub labels: Labels,
    pub name: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// The agent it enrolled, once used.
    pub agent_id: Option<i64>,
}

/// An enrolled agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub id: i64,
    pub name: String,
    pub labels: Labels,
    /// Its Ed25519 public key (hex): every call after enrollment is signed with the key.
    pub public_key: String,
    pub version: String,
    pub enrolled_at: i64,
    pub last_seen_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// What its last heartbeat said, once it has sent one.
    pub status: Option<AgentStatus>,
}

/// An agent's last heartbeat, as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub active_revision: Option<i64>,
    pub bundle_hash: Option<String>,
    pub last_error: Option<String>,
    pub uptime_seconds: i64,
    pub counters: AgentCounters,
    pub spooled_decisions: i64,
    /// When the control plane received it.
    pub reported_at: i64,
}

/// Request counters since the agent started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentCounters {
    pub allowed: u64,
    pub denied: u64,
    pub monitored: u64,
    pub errors: u64,
    /// Decision records the agent dropped, oldest first, because its spool reached its
    /// size cap while uploads could not go through.
    #[serde(default)]
    pub dropped_decisions: u64,
}


/// Silence after which an agent counts as offline: three missed heartbeats.
pub const AGENT_OFFLINE_AFTER_MILLIS: i64 = 30_000;

/// How an agent is doing, as the fleet view shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentHealth {
    /// Reporting, with no error.
    Healthy,
    /// Reporting an error (a refused bundle, an unreachable upstream).
    Degraded,
    /// Enrolled, no heartbeat yet.
    Pending,
    /// No heartbeat for [`AGENT_OFFLINE_AFTER_MILLIS`].
    Offline,
    Revoked,
}

impl AgentHealth {
    pub fn of(agent: &Agent, now: i64) -> AgentHealth {
        match &agent.status {
            _ if agent.revoked_at.is_some() => AgentHealth::Revoked,
            None => AgentHealth::Pending,
            Some(_) if agent.last_seen_at.is_none_or(|seen| now - seen > AGENT_OFFLINE_AFTER_MILLIS) => AgentHealth::Offline,
            Some(status) if status.last_error.is_some() => AgentHealth::Degraded,
            Some(_) => AgentHealth::Healthy,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AgentHealth::Healthy => "healthy",
            AgentHealth::Degraded => "degraded",
            AgentHealth::Pending => "pending",
            AgentHealth::Offline => "offline",
            AgentHealth::Revoked => "revoked",
        }
    }
}

/// An agent in the fleet view: what it runs against what it is meant to run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetAgent {
    pub agent: Agent,
    /// The revision meant for its labels now, if any is published.
    pub meant_revision: Option<i64>,
    pub health: AgentHealth,
}

impl FleetAgent {
    /// Whether it runs something other than what is meant for it (a revoked agent is not
    /// counted: it gets nothing any more).
    pub fn drifted(&self) -> bool {
        self.agent.revoked_at.is_none()
            && self.meant_revision.is_some()
            && self.agent.status.as_ref().and_then(|status| status.active_revision) != self.meant_revision
    }
}

/// How a published revision spread through the agents it was meant for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Convergence {
    pub revision: i64,
    pub published_at: i64,
    /// Agents (enrolled before the publish, not revoked) whose labels it targets.
    pub targets: u64,
    /// Milliseconds after the publish at which each target agent first ran it (or a later
    /// revision), earliest first.
    pub reached_after: Vec<i64>,
}

impl Convergence {
    /// Percent of target agents that ran it within `millis` of the publish.
    pub fn percent_within(&self, millis: i64) -> u8 {
        if self.targets == 0 {
            return 100;
        }
        let reached = self.reached_after.iter().filter(|after| **after <= millis).count() as u64;
        (reached * 100 / self.targets).min(100) as u8
    }
}
