//! Run-time configuration from flags and `PALISADE_*` environment variables.

use app::state::AuthSettings;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use store::checkpoints::CheckpointPolicy;
use store::signing::MasterKey;

/// Where the data lives; shared by every subcommand.
#[derive(Args, Clone, Debug)]
pub struct DataArgs {
    /// Folder for the SQLite database and other local state.
    #[arg(long, env = "PALISADE_DATA_DIR", default_value = "data", global = true)]
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://USER@HOST:PORT/DB`. Defaults to SQLite in the data dir.
    #[arg(long, env = "PALISADE_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// File holding the master key that seals signing keys at rest (default: master.key in
    /// the data dir, created with mode 0600 on first start). `PALISADE_MASTER_KEY` (64 hex
    /// characters) takes precedence; replicas on one PostgreSQL must share the same key.
    #[arg(long, env = "PALISADE_MASTER_KEY_FILE", global = true)]
    pub master_key_file: Option<PathBuf>,
}

impl DataArgs {
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("palisade.db").display()))
    }

    /// The master key: from `PALISADE_MASTER_KEY` (an environment variable only, so it never
    /// shows in a process list), else from the key file, created when missing.
    pub fn master_key(&self) -> Result<MasterKey, String> {
        if let Ok(text) = std::env::var("PALISADE_MASTER_KEY")
            && !text.is_empty()
        {
            return MasterKey::parse(&text).map_err(|e| format!("PALISADE_MASTER_KEY: {e}"));
        }
        let path = self.master_key_file.clone().unwrap_or_else(|| self.data_dir.join("master.key"));
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder).map_err(|e| format!("{}: {e}", folder.display()))?;
        }
        MasterKey::load_or_create(&path)
    }
}

/// `palisade serve` options.
#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "PALISADE_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// Load the demo organisation (teams and a user of every role).
    #[arg(long)]
    pub demo: bool,
    /// Folder with the built dashboard assets (`pkg/`), as cargo-leptos writes it.
    #[arg(long, env = "PALISADE_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,
    /// The origin users reach Palisade at, when behind a proxy (https://palisade.example.com).
    #[arg(long, env = "PALISADE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Email of the admin account created on first start.
    #[arg(long, env = "PALISADE_ADMIN_EMAIL", default_value = "admin@localhost")]
    pub admin_email: String,
    /// Password of that admin account; generated and printed once when not given.
    #[arg(long, env = "PALISADE_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// The JSON Lines file the audit trail is copied to, out of band (default: audit.jsonl
    /// in the data dir).
    #[arg(long, env = "PALISADE_AUDIT_EXPORT_FILE")]
    pub audit_export_file: Option<PathBuf>,
    /// Sign an audit checkpoint after this many new entries…
    #[arg(long, env = "PALISADE_AUDIT_CHECKPOINT_ENTRIES", default_value_t = 1000, value_parser = clap::value_parser!(i64).range(1..=1_000_000))]
    pub audit_checkpoint_entries: i64,
    /// …or this many seconds after the last one, if anything was added since.
    #[arg(long, env = "PALISADE_AUDIT_CHECKPOINT_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub audit_checkpoint_seconds: u64,
    /// An HTTP(S) endpoint that also receives the audit trail, as JSON Lines POSTs
    /// (bearer token from `PALISADE_AUDIT_WEBHOOK_TOKEN` when set).
    #[arg(long, env = "PALISADE_AUDIT_WEBHOOK_URL")]
    pub audit_webhook_url: Option<String>,
    /// Minutes of inactivity after which a dashboard session ends.
    #[arg(long, env = "PALISADE_SESSION_IDLE_MINUTES", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=1440))]
    pub session_idle_minutes: u64,
    /// Hours after sign-in at which a dashboard session ends, active or not.
    #[arg(long, env = "PALISADE_SESSION_ABSOLUTE_HOURS", default_value_t = 12, value_parser = clap::value_parser!(u64).range(1..=720))]
    pub session_absolute_hours: u64,
    /// Roles that must set up a second factor before doing anything else (comma-separated,
    /// or `none`).
    #[arg(long, env = "PALISADE_MFA_REQUIRED_ROLES", default_value = "admin,security")]
    pub mfa_required_roles: String,
    #[command(flatten)]
    pub oidc: OidcArgs,
}

/// A single sign-on provider kept in configuration rather than in the dashboard: created
/// or brought in line at every start (its client secret comes from
/// `PALISADE_OIDC_CLIENT_SECRET`, an environment variable only).
#[derive(Args, Clone, Debug)]
pub struct OidcArgs {
    /// The provider's issuer URL; setting it turns the configured provider on.
    #[arg(long, env = "PALISADE_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    #[arg(long, env = "PALISADE_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,
    /// Groups to roles, `group=role` separated by commas; the first match wins.
    #[arg(long, env = "PALISADE_OIDC_ROLE_MAPPING")]
    pub oidc_role_mapping: Option<String>,
    /// The sign-in button's label.
    #[arg(long, env = "PALISADE_OIDC_NAME", default_value = "Single sign-on")]
    pub oidc_name: String,
    /// Scopes besides openid.
    #[arg(long, env = "PALISADE_OIDC_SCOPES", default_value = "email profile")]
    pub oidc_scopes: String,
    #[arg(long, env = "PALISADE_OIDC_GROUPS_CLAIM", default_value = "groups")]
    pub oidc_groups_claim: String,
    /// Create an account at a first sign-in.
    #[arg(long, env = "PALISADE_OIDC_CREATE_ACCOUNTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub oidc_create_accounts: bool,
    /// Link a first sign-in to the local account with the same verified email.
    #[arg(long, env = "PALISADE_OIDC_LINK_BY_EMAIL", default_value_t = false, action = clap::ArgAction::Set)]
    pub oidc_link_by_email: bool,
}

/// The name in the configured provider's URLs (`/auth/oidc/sso`).
pub const CONFIGURED_PROVIDER_SLUG: &str = "sso";

impl OidcArgs {
    /// The configured provider, checked; `None` when no issuer is set.
    pub fn provider(&self) -> Result<Option<store::sso::SsoProviderInput>, String> {
        let Some(issuer) = self.oidc_issuer.clone().filter(|issuer| !issuer.is_empty()) else { return Ok(None) };
        let missing = |name: &str| format!("PALISADE_OIDC_ISSUER is set, so {name} must be too");
        let client_id = self.oidc_client_id.clone().ok_or_else(|| missing("PALISADE_OIDC_CLIENT_ID"))?;
        let client_secret = std::env::var("PALISADE_OIDC_CLIENT_SECRET").ok().filter(|s| !s.is_empty())
            .ok_or_else(|| missing("PALISADE_OIDC_CLIENT_SECRET"))?;
        let roles = self.oidc_role_mapping.clone().ok_or_else(|| missing("PALISADE_OIDC_ROLE_MAPPING"))?;
        let mapping = store::sso::GroupMapping::parse(&roles.replace(',', "\n"), "")
            .map_err(|e| format!("PALISADE_OIDC_ROLE_MAPPING: {e}"))?;
        let input = store::sso::SsoProviderInput {
            id: None,
            slug: CONFIGURED_PROVIDER_SLUG.to_owned(),
            display_name: self.oidc_name.clone(),
            issuer_url: issuer,
            client_id,
            client_secret,
            scopes: self.oidc_scopes.clone(),
            groups_claim: self.oidc_groups_claim.clone(),
            mapping,
            create_accounts: self.oidc_create_accounts,
            link_by_email: self.oidc_link_by_email,
            enabled: true,
        };
        input.check().map_err(|e| format!("PALISADE_OIDC_*: {e}"))?;
        Ok(Some(input))
    }
}

impl ServeArgs {
    pub fn checkpoint_policy(&self) -> CheckpointPolicy {
        CheckpointPolicy {
            every_entries: self.audit_checkpoint_entries,
            every_millis: self.audit_checkpoint_seconds as i64 * 1000,
        }
    }

    /// The webhook sink's URL, checked, and its token from the environment.
    pub fn audit_webhook(&self) -> Result<Option<(String, Option<String>)>, String> {
        let Some(url) = self.audit_webhook_url.clone().filter(|url| !url.is_empty()) else { return Ok(None) };
        if origin_of(&url).is_none() {
            return Err(format!("PALISADE_AUDIT_WEBHOOK_URL {url:?} must be an http:// or https:// URL without credentials"));
        }
        let token = std::env::var("PALISADE_AUDIT_WEBHOOK_TOKEN").ok().filter(|token| !token.is_empty());
        Ok(Some((url, token)))
    }

    pub fn auth_settings(&self) -> Result<AuthSettings, String> {
        let public_origin = match &self.public_url {
            None => None,
            Some(url) => Some(origin_of(url).ok_or_else(|| {
                format!("PALISADE_PUBLIC_URL {url:?} must look like https://host[:port]")
            })?),
        };
        let mfa_required_roles = self
            .mfa_required_roles
            .split(',')
            .map(str::trim)
            .filter(|role| !role.is_empty() && *role != "none")
            .map(|role| role.parse().map_err(|_| format!("PALISADE_MFA_REQUIRED_ROLES: {role:?} is not admin, security, developer, auditor or none")))
            .collect::<Result<Vec<store::Role>, String>>()?;
        Ok(AuthSettings {
            idle_timeout: Duration::from_secs(self.session_idle_minutes * 60),
            absolute_timeout: Duration::from_secs(self.session_absolute_hours * 3600),
            public_origin,
            mfa_required_roles,
            ..AuthSettings::default()
        })
    }
}

/// `scheme://host[:port]` of a URL, without path; `None` if it is not http(s).
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split('/').next()?;
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    Some(format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::origin_of;

    #[test]
    fn origins_are_scheme_and_authority() {
        assert_eq!(origin_of("https://p.example.com/x/y").as_deref(), Some("https://p.example.com"));
        assert_eq!(origin_of("http://127.0.0.1:3000").as_deref(), Some("http://127.0.0.1:3000"));
        assert_eq!(origin_of("ftp://x"), None);
        assert_eq!(origin_of("https://"), None);
        assert_eq!(origin_of("https://user@host"), None);
        assert_eq!(origin_of("nonsense"), None);
    }
}
