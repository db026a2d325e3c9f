//! The command line: `palisade serve` (the default) and `palisade admin …`.

use crate::config::{DataArgs, ServeArgs};
use clap::{Parser, Subcommand};
use std::io::BufRead;
use store::accounts::{self, NewAccount};
use store::passwords::Passwords;
use store::audit::AuditContext;
use std::path::{Path, PathBuf};
use store::signing::{self, KeyPurpose, KeySet};
use store::{Db, PublicKeyInfo, Role, TrailSummary, teams, tokens};

#[derive(Parser, Debug)]
#[command(name = "palisade", version, about = "Palisade API-security control plane")]
pub struct Cli {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the control plane: dashboard, REST API (the default command).
    Serve(ServeArgs),
    /// Administer accounts and tokens directly in the database.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Work with the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Work with policy bundles.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Policy as code: validate and test policy files, export and push them.
    #[command(subcommand)]
    Policy(crate::policy_cli::PolicyCommand),
}

#[derive(Subcommand, Debug)]
pub enum BundleCommand {
    /// Verify a signed bundle file as an agent would: shape, format version, trusted key,
    /// signature, canonical form, content hash (and, with --active-revision, that it is
    /// newer). Exits non-zero with the reason when any check fails.
    Verify {
        /// The signed bundle (`GET /api/v1/bundles/{revision}`).
        file: PathBuf,
        /// The trusted public keys, as `palisade bundle keys` prints them. Without it
        /// they are read from the database.
        #[arg(long)]
        keys: Option<PathBuf>,
        /// Refuse the bundle unless its revision is above this one.
        #[arg(long, default_value_t = 0)]
        active_revision: u64,
    },
    /// Print the bundle keys agents should trust now (JSON: the active key, and retiring
    /// keys with the end of their overlap), for `verify --keys` and agents.
    Keys,
    /// Retire the bundle-signing key and sign with a new one, without restarting agents:
    /// what each agent group runs now is re-issued, signed by the retiring key, announcing
    /// the new one. The retiring key stays trusted for the overlap.
    RotateKey {
        /// Why: kept in the revision history and the audit trail.
        #[arg(long)]
        reason: String,
        /// How long agents keep trusting the retiring key, in hours.
        #[arg(long, default_value_t = 168, value_parser = clap::value_parser!(i64).range(1..=720))]
        overlap_hours: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Verify the audit trail in the database: the hash chain and every signed checkpoint.
    /// Exits non-zero and names the first bad sequence number if any entry was edited,
    /// deleted, inserted or reordered, or the tail was cut off. With --file, verifies an
    /// exported JSON Lines file on its own.
    Verify {
        /// An export file (PALISADE_AUDIT_EXPORT_FILE) to verify instead of the database.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// The public keys to check signatures with, as `palisade audit keys` prints them.
        /// Without it they are read from the database, which proves less: whoever can
        /// rewrite the trail there could replace the keys too.
        #[arg(long)]
        keys: Option<std::path::PathBuf>,
    },
    /// Print the public keys that sign audit checkpoints (JSON), for `verify --keys`.
    Keys,
    /// Retire the audit signing key and start signing with a new one. Checkpoints signed
    /// by the old key stay verifiable. Also the way back after losing the master key.
    RotateKey,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Create a user; the password is read from the first line of standard input.
    CreateUser {
        #[arg(long)]
        email: String,
        /// admin, security, developer or auditor.
        #[arg(long)]
        role: Role,
        /// Name of a team to put the user in (created if it does not exist).
        #[arg(long)]
        team: Option<String>,
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Create a personal API token for a user and print it (it is shown only once).
    CreateToken {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// Days until the token expires; it never expires when not given.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=3650))]
        expires_days: Option<u16>,
    },
    /// List a user's API tokens (never their secrets).
    ListTokens {
        #[arg(long)]
        email: String,
    },
    /// Revoke a user's API token by name.
    RevokeToken {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
    },
    /// Remove a user's second factor (lost device, no recovery codes): the way back in for
    /// the last admin. They set up a new one at their next sign-in if their role needs it.
    ResetMfa {
        #[arg(long)]
        email: String,
    },
    /// Make a single-use enrollment token for an agent; prints it once.
    CreateEnrollmentToken {
        /// A label the enrolled agent gets (`env=prod`); repeat for more.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// The enrolled agent's name (else the one it asks for).
        #[arg(long)]
        name: Option<String>,
        /// Minutes until the token expires (1 to 10080, a week).
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(i64).range(1..=10_080))]
        expires_minutes: i64,
    },
}

pub async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        None => {
            // `palisade` alone serves with defaults, as `palisade serve` would.
            let serve = Cli::parse_from(["palisade", "serve"]);
            let Some(Command::Serve(args)) = serve.command else { unreachable!("parsed serve") };
            crate::startup::serve(cli.data, args).await
        }
        Some(Command::Serve(args)) => crate::startup::serve(cli.data, args).await,
        Some(Command::Admin(command)) => admin(cli.data, command).await,
        Some(Command::Audit(command)) => audit(cli.data, command).await,
        Some(Command::Bundle(command)) => bundle(cli.data, command).await,
        Some(Command::Policy(command)) => crate::policy_cli::run(command).await,
    }
}

async fn admin(data: DataArgs, command: AdminCommand) -> Result<(), String> {
    let db = Db::connect(&data.database_url()).await.map_err(|e| e.to_string())?;
    let result = match command {
        AdminCommand::CreateUser { email, role, team, name } => {
            let password = read_password()?;
            create_user(&db, &email, role, team.as_deref(), &name, &password).await
        }
        AdminCommand::CreateToken { email, name, expires_days } => {
            let account = accounts::find_account_by_email(&db, &email)
                .await
                .map_err(|e| format!("{email}: {e}"))?;
            let expires_at = expires_days.map(|days| store::now_millis() + i64::from(days) * 86_400_000);
            let (_, secret) = tokens::create_token(&db, account.id, &name, expires_at, &cli_context())
                .await
                .map_err(|e| e.to_string())?;
            println!("{secret}");
            Ok(())
        }
        AdminCommand::ListTokens { email } => list_tokens(&db, &email).await,
        AdminCommand::RevokeToken { email, name } => revoke_token(&db, &email, &name).await,
        AdminCommand::ResetMfa { email } => reset_mfa(&db, &email).await,
        AdminCommand::CreateEnrollmentToken { labels, name, expires_minutes } => {
            let labels = store::parse_labels(&labels.join(",")).map_err(|e| format!("--label: {e}"))?;
            let (_, secret) =
                store::agents::create_enrollment_token(&db, &labels, name.as_deref(), expires_minutes * 60_000, &cli_context())
                    .await
                    .map_err(|e| e.to_string())?;
            println!("{secret}");
            Ok(())
        }
    };
    db.close().await;
    result
}

async fn audit(data: DataArgs, command: AuditCommand) -> Result<(), String> {
    // An export file checked against given keys needs no database at all.
    if let AuditCommand::Verify { file: Some(file), keys: Some(keys) } = &command {
        let keys = read_key_file(keys)?;
        return report_verified(&format!("audit export {}", file.display()), "the given keys", crate::audit_export::verify_file(file, &keys)?);
    }
    let db = Db::connect(&data.database_url()).await.map_err(|e| e.to_string())?;
    let result = match command {
        AuditCommand::Verify { file, keys } => verify_audit(&db, file, keys).await,
        AuditCommand::Keys => {
            let keys = signing::list_public_keys(&db, KeyPurpose::Audit).await.map_err(|e| e.to_string())?;
            println!("{}", serde_json::to_string_pretty(&keys).map_err(|e| e.to_string())?);
            Ok(())
        }
        AuditCommand::RotateKey => match data.master_key() {
            Ok(master) => signing::rotate(&db, &master, KeyPurpose::Audit, 0, &cli_context())
                .await
                .map(|(signer, _)| println!("audit checkpoints are now signed with key {}", signer.key_id))
                .map_err(|e| e.to_string()),
            Err(error) => Err(error),
        },
    };
    db.close().await;
    result
}

async fn bundle(data: DataArgs, command: BundleCommand) -> Result<(), String> {
    let db = || async { Db::connect(&data.database_url()).await.map_err(|e| e.to_string()) };
    let stored_keys = || async {
        let db = db().await?;
        let keys = app::publishing::ssr::announced_keys(&db).await.map_err(|e| e.to_string());
        db.close().await;
        keys
    };
    match command {
        BundleCommand::Keys => {
            println!("{}", serde_json::to_string_pretty(&stored_keys().await?).map_err(|e| e.to_string())?);
            Ok(())
        }
        BundleCommand::RotateKey { reason, overlap_hours } => {
            let master = data.master_key()?;
            let db = db().await?;
            let rotated = app::publishing::ssr::rotate_key(&db, &master, overlap_hours * 3_600_000, &reason, &cli_context()).await;
            db.close().await;
            let (key_id, announced) = rotated.map_err(|e| e.to_string())?;
            println!("bundles are now signed with key {key_id}; the retiring key stays trusted for {overlap_hours} hours");
            for record in announced {
                println!("revision {} announces it to {}", record.revision, store::show_labels(&record.target));
            }
            Ok(())
        }
        BundleCommand::Verify { file, keys, active_revision } => {
            let (records, source) = match keys {
                Some(path) => {
                    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                    let records: Vec<policy::bundle::AnnouncedKey> =
                        serde_json::from_str(&text).map_err(|e| format!("{}: not a key list ({e})", path.display()))?;
                    (records, "the given keys")
                }
                None => (stored_keys().await?, "the keys stored in the database"),
            };
            let trusted = policy::bundle::TrustStore::from_announced(&records)?;
            let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let bundle = policy::bundle::verify(&bytes, &trusted, active_revision, store::now_millis())
                .map_err(|e| format!("{}: {e}", file.display()))?;
            let routes = bundle.policy.routes().count();
            println!(
                "{} verified with {source}: revision {}, signed by key {}, content hash {}, {routes} routes, for {}",
                file.display(),
                bundle.header.revision,
                bundle.header.key_id,
                bundle.header.content_hash,
                store::show_labels(&bundle.header.target),
            );
            Ok(())
        }
    }
}

fn read_key_file(path: &Path) -> Result<KeySet, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let records: Vec<PublicKeyInfo> =
        serde_json::from_str(&text).map_err(|e| format!("{}: not a key list ({e})", path.display()))?;
    KeySet::from_public_keys(&records).map_err(|e| format!("{}: {e}", path.display()))
}

async fn verify_audit(db: &Db, file: Option<PathBuf>, keys: Option<PathBuf>) -> Result<(), String> {
    let (keys, source) = match keys {
        Some(path) => (read_key_file(&path)?, "the given keys"),
        None => {
            let records = signing::list_public_keys(db, KeyPurpose::Audit).await.map_err(|e| e.to_string())?;
            (KeySet::from_public_keys(&records)?, "the keys stored in the database")
        }
    };
    match file {
        Some(file) => report_verified(&format!("audit export {}", file.display()), source, crate::audit_export::verify_file(&file, &keys)?),
        None => {
            let verdict = store::audit::verify_database(db, &keys).await.map_err(|e| e.to_string())?;
            report_verified("audit trail", source, verdict.map_err(|broken| broken.to_string())?)
        }
    }
}

fn report_verified(what: &str, source: &str, summary: TrailSummary) -> Result<(), String> {
    println!("{what} verified with {source}: {} entries intact, {} signed checkpoints", summary.entries, summary.checkpoints);
    match summary.last_checkpoint {
        Some(last) => println!(
            "last checkpoint: entry {} signed by key {} at {} (Unix ms); {} later entries not yet signed",
            last.seq,
            last.key_id,
            last.at,
            summary.entries - last.seq
        ),
        None if summary.entries > 0 => println!("no signed checkpoint yet: a cut-off tail could not be detected"),
        None => {}
    }
    Ok(())
}

fn read_password() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| format!("reading the password: {e}"))?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        return Err("give the password on standard input, e.g. `echo \"$PASSWORD\" | palisade admin create-user …`".into());
    }
    Ok(password)
}

async fn create_user(
    db: &Db,
    email: &str,
    role: Role,
    team: Option<&str>,
    name: &str,
    password: &str,
) -> Result<(), String> {
    let passwords = Passwords::new().map_err(|e| e.to_string())?;
    let hash = passwords.hash(password).await.map_err(|e| e.to_string())?;
    let team_ids = match team {
        None => Vec::new(),
        Some(team) => {
            let found = match teams::find_team_by_name(db, team).await {
                Ok(found) => found,
                Err(store::StoreError::NotFound(_)) => teams::create_team(db, team, &cli_context()).await.map_err(|e| e.to_string())?,
                Err(error) => return Err(error.to_string()),
            };
            vec![found.id]
        }
    };
    let new = NewAccount {
        email: email.to_owned(),
        display_name: name.to_owned(),
        role,
        team_ids,
        password_hash: Some(hash),
    };
    let account = accounts::create_account(db, new, &cli_context()).await.map_err(|e| e.to_string())?;
    println!("created {} ({}) with id {}", account.email, account.role, account.id);
    Ok(())
}

async fn list_tokens(db: &Db, email: &str) -> Result<(), String> {
    let account = accounts::find_account_by_email(db, email).await.map_err(|e| format!("{email}: {e}"))?;
    let now = store::now_millis();
    for token in tokens::list_tokens(db, account.id).await.map_err(|e| e.to_string())? {
        let state = if token.revoked_at.is_some() {
            "revoked"
        } else if token.is_active(now) {
            "active"
        } else {
            "expired"
        };
        println!("{}\t{}…\t{state}", token.name, token.prefix);
    }
    Ok(())
}

async fn revoke_token(db: &Db, email: &str, name: &str) -> Result<(), String> {
    let account = accounts::find_account_by_email(db, email).await.map_err(|e| format!("{email}: {e}"))?;
    let token = tokens::list_tokens(db, account.id)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|token| token.name == name.trim() && token.revoked_at.is_none())
        .ok_or_else(|| format!("{email} has no active token named {name:?}"))?;
    tokens::revoke_token(db, token.id, Some(account.id), &cli_context()).await.map_err(|e| e.to_string())?;
    println!("revoked {name:?} of {email}");
    Ok(())
}

async fn reset_mfa(db: &Db, email: &str) -> Result<(), String> {
    let account = accounts::find_account_by_email(db, email).await.map_err(|e| format!("{email}: {e}"))?;
    store::mfa::remove(db, account.id, &cli_context()).await.map_err(|e| format!("{email}: {e}"))?;
    println!("removed the second factor of {email}");
    Ok(())
}

/// Changes made from the command line are attributed to the operator's OS user.
fn cli_context() -> AuditContext {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    AuditContext::system(&format!("cli ({user})"))
}
