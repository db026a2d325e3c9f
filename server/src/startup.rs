//! `palisade serve`: connect and migrate, make sure an admin exists, optionally load the
//! demo, start background upkeep, and serve until asked to stop.

use crate::config::{DataArgs, ServeArgs};
use app::state::AppState;
use leptos::config::LeptosOptions;
use std::sync::Arc;
use std::time::Duration;
use store::accounts::{self, NewAccount};
use store::passwords::Passwords;
use store::sessions::DbSessionStore;
use store::audit::AuditContext;
use store::signing::{self, KeyPurpose};
use store::{Db, Role, demo, login_throttle};
use tower_sessions::ExpiredDeletion;
use tracing_subscriber::EnvFilter;

pub async fn serve(data: DataArgs, args: ServeArgs) -> Result<(), String> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let auth = args.auth_settings()?;
    let webhook = args.audit_webhook()?;
    let master = Arc::new(data.master_key()?);
    let url = data.database_url();
    let db = Db::connect(&url).await.map_err(|e| format!("database {}: {e}", redact(&url)))?;
    tracing::info!(database = %redact(&url), backend = ?db.backend(), "database ready");
    let passwords = Passwords::new().map_err(|e| e.to_string())?;

    bootstrap_admin(&db, &passwords, &args).await?;
    configure_sso(&db, &master, &args).await?;
    // Generated on first start; refuses to start under a master key that cannot open it.
    let signer = signing::ensure_signer(&db, &master, KeyPurpose::Audit, &AuditContext::system("startup"))
        .await
        .map_err(|e| format!("audit signing key: {e}"))?;
    tracing::info!(key_id = %signer.key_id, "audit checkpoints are signed with this key");
    // Bundles pin HMAC secrets by digest; keys issued before that get theirs now.
    let filled = store::client_apps::backfill_hmac_digests(&db, &master).await.map_err(|e| format!("HMAC key digests: {e}"))?;
    if filled > 0 {
        tracing::info!(filled, "HMAC keys given the digest bundles pin them by");
    }
    if args.demo {
        let loaded = demo::load(&db, &passwords, &master).await.map_err(|e| format!("demo data: {e}"))?;
        match loaded.password {
            Some(password) => {
                println!("Demo data loaded. Every demo user's password is: {password}");
                for (email, role) in loaded.users {
                    println!("  {email} ({role})");
                }
            }
            None => println!("Demo data already present."),
        }
    }

    let leptos_options = LeptosOptions::builder()
        .output_name("palisade")
        .site_root(args.site_root.display().to_string())
        .site_pkg_dir("pkg")
        .site_addr(args.listen)
        .build();
    let state = AppState { db: db.clone(), passwords, leptos_options, auth: Arc::new(auth), master: master.clone() };
    spawn_upkeep(db.clone());
    let export_file = args.audit_export_file.clone().unwrap_or_else(|| data.data_dir.join("audit.jsonl"));
    if let Some(folder) = export_file.parent().filter(|p| !p.as_os_str().is_empty()) {
        // A failure here is reported by the exporter, which keeps retrying.
        let _ = std::fs::create_dir_all(folder);
    }
    crate::audit_checkpointer::spawn(db.clone(), master.clone(), args.checkpoint_policy());
    crate::audit_export::spawn(db.clone(), export_file.clone(), Duration::from_secs(1));
    if let Some((url, token)) = webhook {
        crate::audit_webhook::spawn(db.clone(), crate::audit_webhook::Webhook::new(url, token)?);
    }

    // Listen for stop signals before announcing readiness, so none is missed.
    let shutdown = shutdown_signal();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    println!("Palisade is listening on http://{address}");
    let app = crate::router(state);
    axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| e.to_string())?;
    // Sign and export what the intervals have not covered yet, so a clean stop leaves a
    // fully signed trail behind.
    if let Err(error) = crate::audit_checkpointer::sign_now(&db, &master).await {
        tracing::warn!(%error, "no final audit checkpoint");
    }
    if let Err(error) = crate::audit_export::export_once(&db, &export_file).await {
        tracing::warn!(%error, "final audit export failed; it resumes at the next start");
    }
    db.close().await;
    Ok(())
}

/// On first start (no accounts at all) creates the admin account.
/// Creates the provider kept in configuration, or brings it in line with it (audited as
/// the configuration's change; nothing is written when it already matches).
async fn configure_sso(db: &Db, master: &store::signing::MasterKey, args: &ServeArgs) -> Result<(), String> {
    let Some(mut input) = args.oidc.provider()? else { return Ok(()) };
    let existing = store::sso_providers::list(db).await.map_err(|e| e.to_string())?.into_iter().find(|p| p.slug == input.slug);
    if let Some(existing) = &existing {
        input.id = Some(existing.id);
        let checked = input.check().map_err(|e| e.to_string())?;
        let secret = store::sso_providers::client_secret(db, master, existing.id).await.ok();
        let same = existing.display_name == checked.display_name
            && existing.issuer_url == checked.issuer_url
            && existing.client_id == checked.client_id
            && existing.scopes == checked.scopes
            && existing.groups_claim == checked.groups_claim
            && existing.mapping == checked.mapping
            && existing.create_accounts == input.create_accounts
            && existing.link_by_email == input.link_by_email
            && existing.enabled
            && secret.as_deref() == checked.client_secret.as_deref();
        if same {
            return Ok(());
        }
    }
    let context = AuditContext::system("configuration");
    let provider = store::sso_providers::save(db, master, &input, &context).await.map_err(|e| format!("PALISADE_OIDC_*: {e}"))?;
    tracing::info!(issuer = %provider.issuer_url, slug = %provider.slug, "single sign-on provider configured");
    Ok(())
}

async fn bootstrap_admin(db: &Db, passwords: &Passwords, args: &ServeArgs) -> Result<(), String> {
    if accounts::count_accounts(db).await.map_err(|e| e.to_string())? > 0 {
        return Ok(());
    }
    let (password, generated) = match &args.admin_password {
        Some(password) => (password.clone(), false),
        None => (store::tokens::generate_secret("")[..24].to_owned(), true),
    };
    let hash = passwords.hash(&password).await.map_err(|e| format!("PALISADE_ADMIN_PASSWORD: {e}"))?;
    let new = NewAccount {
        email: args.admin_email.clone(),
        display_name: "Administrator".into(),
        role: Role::Admin,
        team_ids: Vec::new(),
        password_hash: Some(hash),
    };
    let admin = accounts::create_account(db, new, &store::audit::AuditContext::system("bootstrap")).await.map_err(|e| format!("PALISADE_ADMIN_EMAIL: {e}"))?;
    if generated {
        // Printed once, to the terminal only: it is never logged or stored in clear.
        println!("Created the admin account {} with the password: {password}", admin.email);
        println!("Change it under Settings after signing in.");
    } else {
        println!("Created the admin account {} with the password from PALISADE_ADMIN_PASSWORD.", admin.email);
    }
    Ok(())
}

/// Removes expired sessions, old login failures and spent agent nonces every few minutes.
fn spawn_upkeep(db: Db) {
    tokio::spawn(async move {
        let sessions = DbSessionStore::new(db.clone());
        let mut tick = tokio::time::interval(Duration::from_secs(300));
        loop {
            tick.tick().await;
            if let Err(error) = sessions.delete_expired().await {
                tracing::warn!(%error, "could not delete expired sessions");
            }
            if let Err(error) = login_throttle::prune(&db, store::now_millis()).await {
                tracing::warn!(%error, "could not prune login failures");
            }
            // Calls that old are refused by their time stamp, so their nonces can go.
            let before = store::now_millis() - 2 * policy::agent_api::MAX_CLOCK_SKEW_MILLIS;
            if let Err(error) = store::agent_reports::prune_nonces(&db, before).await {
                tracing::warn!(%error, "could not prune spent agent nonces");
            }
        }
    });
}

/// Registers the SIGINT and SIGTERM handlers now, and resolves when one arrives.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let interrupt = tokio::signal::ctrl_c();
    async move {
        #[cfg(unix)]
        let terminate = async {
            match terminate.as_mut() {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! { _ = interrupt => {}, _ = terminate => {} }
        tracing::info!("shutting down");
    }
}

/// A database URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(super::redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact("sqlite://data/p.db"), "sqlite://data/p.db");
    }
}
