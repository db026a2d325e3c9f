//! `palisade policy …`: policy as code from a repository. `validate` and `test` work on
//! the files alone (no control plane, no database); `export` and `push` talk to a control
//! plane's REST API with a personal API token, so CI can gate and ship policy changes.

use clap::Subcommand;
use policy::cases;
use policy::files::{self, PolicyDocument};
use policy::model::Diagnostic;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Check the policy files: their shape, every setting, and that they compile. Prints
    /// every problem with its file and place; exits non-zero if there is any.
    Validate {
        /// The folder with `palisade.json` and `apis/`.
        dir: PathBuf,
    },
    /// Compile the files and run the cases in `DIR/tests/*.json` (a request each, and the
    /// decision expected). Exits non-zero if any case fails.
    Test { dir: PathBuf },
    /// Write the control plane's whole policy as files into DIR (replacing `palisade.json`
    /// and `apis/`; `tests/` and other files are left alone).
    Export {
        dir: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Apply the files to the control plane in one transaction (after validating them
    /// here), and with --draft compile a signed draft bundle and print what it changes.
    Push {
        dir: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
        /// Also compile a signed draft (publishing stays a decision made with a reason).
        #[arg(long)]
        draft: bool,
    },
}

#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// The control plane's base URL, e.g. https://palisade.example.com.
    #[arg(long, env = "PALISADE_SERVER")]
    server: String,
    /// A personal API token (security or admin to push).
    #[arg(long, env = "PALISADE_TOKEN", hide_env_values = true)]
    token: String,
}

pub async fn run(command: PolicyCommand) -> Result<(), String> {
    match command {
        PolicyCommand::Validate { dir } => {
            let document = read(&dir)?;
            let compiled = compile(&document)?;
            println!(
                "{}: valid: {} APIs, {} operations, {} client applications",
                dir.display(),
                compiled.apis.len(),
                compiled.routes().count(),
                document.client_apps.len()
            );
            Ok(())
        }
        PolicyCommand::Test { dir } => test(&dir),
        PolicyCommand::Export { dir, server } => {
            let document: PolicyDocument = Remote::new(&server)?.get("/api/v1/policy").await?;
            write(&dir, &document)?;
            println!("{}: wrote the policy of {} APIs", dir.display(), document.apis.len());
            Ok(())
        }
        PolicyCommand::Push { dir, server, draft } => {
            let document = read(&dir)?;
            compile(&document)?;
            let remote = Remote::new(&server)?;
            let summary: serde_json::Value = remote.post("/api/v1/policy", &serde_json::to_value(&document).unwrap_or_default()).await?;
            println!("pushed: {}", describe(&summary));
            if draft {
                let created: serde_json::Value = remote.post("/api/v1/bundles", &serde_json::json!({})).await?;
                println!("draft revision {} compiled and signed", created["bundle"]["revision"]);
                for (what, key) in [("added", "added"), ("removed", "removed"), ("changed", "changed")] {
                    for line in created[key].as_array().into_iter().flatten() {
                        println!("  {what}: {}", line.as_str().unwrap_or_default());
                    }
                }
            }
            Ok(())
        }
    }
}

fn describe(summary: &serde_json::Value) -> String {
    let count = |key: &str| summary[key].as_array().map_or(0, Vec::len);
    format!(
        "{} APIs changed, {} operation settings changed, {} data classes created, {} redefined",
        count("apis_changed"),
        summary["operations_changed"].as_u64().unwrap_or(0),
        count("classes_created"),
        count("classes_updated")
    )
}

fn show(problems: &[Diagnostic]) -> String {
    let lines: Vec<String> = problems.iter().map(|p| format!("  {}: {}", p.path, p.message)).collect();
    format!("{} problem(s):\n{}", problems.len(), lines.join("\n"))
}

/// Reads `palisade.json` and every `apis/**/*.json` under `dir`.
fn read(dir: &Path) -> Result<PolicyDocument, String> {
    let mut texts = BTreeMap::new();
    let root = dir.join(files::ROOT_FILE);
    texts.insert(files::ROOT_FILE.to_owned(), std::fs::read_to_string(&root).map_err(|e| format!("{}: {e}", root.display()))?);
    let mut folders = vec![dir.join("apis")];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else { continue };
        for entry in entries {
            let path = entry.map_err(|e| format!("{}: {e}", folder.display()))?.path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|ext| ext == "json") {
                if texts.len() > files::MAX_FILES {
                    return Err(format!("{}: more than {} files", dir.display(), files::MAX_FILES));
                }
                let relative = path.strip_prefix(dir).unwrap_or(&path).to_string_lossy().replace('\\', "/");
                texts.insert(relative, std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?);
            }
        }
    }
    files::from_files(&texts).map_err(|problems| show(&problems))
}

fn compile(document: &PolicyDocument) -> Result<policy::CompiledPolicy, String> {
    let snapshot = files::snapshot(document).map_err(|problems| show(&problems))?;
    policy::compile(&snapshot).map_err(|problems| show(&problems))
}

/// Writes the files, replacing `palisade.json` and `apis/` as a whole (an API removed
/// from the control plane disappears from the files too).
fn write(dir: &Path, document: &PolicyDocument) -> Result<(), String> {
    let apis = dir.join("apis");
    if apis.exists() {
        std::fs::remove_dir_all(&apis).map_err(|e| format!("{}: {e}", apis.display()))?;
    }
    for (relative, text) in files::to_files(document) {
        let path = dir.join(&relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn test(dir: &Path) -> Result<(), String> {
    let document = read(dir)?;
    let compiled = compile(&document)?;
    let folder = dir.join("tests");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&folder)
        .map_err(|e| format!("{}: {e} (put case files in tests/*.json)", folder.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    let (mut passed, mut failed) = (0, 0);
    for path in paths {
        let shown = path.strip_prefix(dir).unwrap_or(&path).display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file = cases::parse(&text, &shown).map_err(|problems| show(&problems))?;
        for result in cases::run(&compiled, &file) {
            if result.passed {
                passed += 1;
                println!("ok    {shown}: {}", result.name);
            } else {
                failed += 1;
                println!("FAIL  {shown}: {}: {}", result.name, result.detail);
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 { Err(format!("{failed} case(s) failed")) } else { Ok(()) }
}

/// The control plane's REST API, with a bearer token. Redirects are not followed, so the
/// token is never sent anywhere else.
struct Remote {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Remote {
    fn new(args: &ServerArgs) -> Result<Remote, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Remote { client, base: args.server.trim_end_matches('/').to_owned(), token: args.token.clone() })
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        self.send(self.client.get(format!("{}{path}", self.base))).await
    }

    async fn post<T: serde::de::DeserializeOwned>(&self, path: &str, body: &serde_json::Value) -> Result<T, String> {
        let request = self.client.post(format!("{}{path}", self.base)).header("content-type", "application/json").body(body.to_string());
        self.send(request).await
    }

    async fn send<T: serde::de::DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T, String> {
        let response = request.bearer_auth(&self.token).send().await.map_err(|e| format!("cannot reach {}: {}", self.base, e.without_url()))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| e.without_url().to_string())?;
        if !status.is_success() {
            let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let mut message = format!("{status}: {}", body["message"].as_str().unwrap_or(&text));
            for problem in body["problems"].as_array().into_iter().flatten() {
                message.push_str(&format!("\n  {}: {}", problem["pointer"].as_str().unwrap_or_default(), problem["message"].as_str().unwrap_or_default()));
            }
            return Err(message);
        }
        serde_json::from_str(&text).map_err(|e| format!("{}: unexpected answer ({e})", self.base))
    }
}
