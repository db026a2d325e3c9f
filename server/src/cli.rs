//! The command line: `palisade serve` (the default) and `palisade admin …`.

use crate::config::{DataArgs, ServeArgs};
use clap::{Parser, Subcommand};
use std::io::BufRead;
use store::accounts::{self, NewAccount};
use store::passwords::Passwords;
use store::audit::AuditContext;
use store::{Db, Role, teams, tokens};

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
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Verify the audit hash chain in the database: exits non-zero and names the first
    /// bad sequence number if any entry was edited, deleted, inserted or reordered, or the
    /// tail was cut off. With --file, verifies an exported JSON Lines file on its own.
    Verify {
        /// An export file (PALISADE_AUDIT_EXPORT_FILE) to verify instead of the database.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
    },
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
        Some(Command::Audit(AuditCommand::Verify { file: None })) => verify_audit(cli.data).await,
        Some(Command::Audit(AuditCommand::Verify { file: Some(file) })) => {
            let count = crate::audit_export::verify_file(&file)?;
            println!("audit export verified: {count} entries, intact");
            Ok(())
        }
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
    };
    db.close().await;
    result
}

async fn verify_audit(data: DataArgs) -> Result<(), String> {
    let db = Db::connect(&data.database_url()).await.map_err(|e| e.to_string())?;
    let verdict = store::audit::verify_database(&db).await.map_err(|e| e.to_string());
    db.close().await;
    match verdict? {
        Ok(count) => {
            println!("audit chain verified: {count} entries, intact");
            Ok(())
        }
        Err(broken) => Err(broken.to_string()),
    }
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

/// Changes made from the command line are attributed to the operator's OS user.
fn cli_context() -> AuditContext {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    AuditContext::system(&format!("cli ({user})"))
}
