//! Single sign-on providers as admins configure them (never with their secret), the
//! input that creates or changes one, its checks, and how a provider's groups become a
//! role and teams.

use crate::Role;
#[cfg(feature = "db")]
use crate::StoreError;
use serde::{Deserialize, Serialize};

#[cfg(feature = "db")]
const MAX_SLUG_CHARS: usize = 32;
#[cfg(feature = "db")]
const MAX_DISPLAY_NAME_CHARS: usize = 60;
#[cfg(feature = "db")]
const MAX_CLIENT_ID_CHARS: usize = 255;
#[cfg(feature = "db")]
const MAX_CLIENT_SECRET_CHARS: usize = 1024;
#[cfg(feature = "db")]
const MAX_CLAIM_CHARS: usize = 100;
#[cfg(feature = "db")]
const MAX_GROUP_CHARS: usize = 255;
#[cfg(feature = "db")]
const MAX_RULES: usize = 200;
#[cfg(feature = "db")]
const MAX_SCOPES: usize = 20;

/// Members of `group` get `role`. Rules are tried in order; the first match wins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRole {
    pub group: String,
    pub role: Role,
}

/// Members of `group` join the team named `team`. Every matching rule applies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupTeam {
    pub group: String,
    pub team: String,
}

/// How a provider's groups map to Palisade, stored as JSON with the provider.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMapping {
    #[serde(default)]
    pub roles: Vec<GroupRole>,
    #[serde(default)]
    pub teams: Vec<GroupTeam>,
}

/// A configured OpenID Connect provider, as the dashboard shows it: the client secret
/// stays sealed in the database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SsoProvider {
    pub id: i64,
    pub slug: String,
    pub display_name: String,
    pub issuer_url: String,
    pub client_id: String,
    /// Asked for besides `openid`.
    pub scopes: Vec<String>,
    pub groups_claim: String,
    pub mapping: GroupMapping,
    /// Whether a first sign-in of an unknown identity creates an account.
    pub create_accounts: bool,
    /// Whether a first sign-in may take over the local account with the same, verified,
    /// email address.
    pub link_by_email: bool,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What the sign-in page shows of a provider: enough for a button, nothing more.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SsoButton {
    pub slug: String,
    pub display_name: String,
}

/// An account's identity at a provider, for the account's page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkedIdentity {
    pub provider_id: i64,
    pub provider: String,
    pub subject: String,
    pub linked_at: i64,
    pub last_login_at: Option<i64>,
}

/// A provider to create (`id: None`) or change. An empty `client_secret` on a change
/// keeps the stored one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SsoProviderInput {
    pub id: Option<i64>,
    pub slug: String,
    pub display_name: String,
    pub issuer_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub scopes: String,
    pub groups_claim: String,
    pub mapping: GroupMapping,
    pub create_accounts: bool,
    pub link_by_email: bool,
    pub enabled: bool,
}

#[cfg(feature = "db")]
/// The input after its checks: trimmed, scopes split, issuer without a trailing slash
/// added or removed (OpenID Connect compares issuers exactly).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedProvider {
    pub slug: String,
    pub display_name: String,
    pub issuer_url: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub scopes: Vec<String>,
    pub groups_claim: String,
    pub mapping: GroupMapping,
}

#[cfg(feature = "db")]
impl SsoProviderInput {
    /// Checks every field; the first problem found is reported on its field.
    pub fn check(&self) -> Result<CheckedProvider, StoreError> {
        let slug = self.slug.trim().to_owned();
        let slug_ok = !slug.is_empty()
            && slug.len() <= MAX_SLUG_CHARS
            && slug.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !slug.starts_with('-');
        if !slug_ok {
            return Err(StoreError::invalid("slug", "use 1 to 32 lower-case letters, digits or dashes"));
        }
        let display_name = single_line("display name", &self.display_name, MAX_DISPLAY_NAME_CHARS)?;
        let issuer_url = check_issuer(self.issuer_url.trim())?;
        let client_id = single_line("client id", &self.client_id, MAX_CLIENT_ID_CHARS)?;
        let client_secret = match self.client_secret.trim() {
            "" if self.id.is_none() => return Err(StoreError::invalid("client secret", "is required")),
            "" => None,
            secret if secret.chars().count() > MAX_CLIENT_SECRET_CHARS => {
                return Err(StoreError::invalid("client secret", "is too long"));
            }
            secret if secret.chars().any(char::is_control) => {
                return Err(StoreError::invalid("client secret", "must not contain control characters"));
            }
            secret => Some(secret.to_owned()),
        };
        let mut scopes: Vec<String> = Vec::new();
        for scope in self.scopes.split([' ', ',', '\n', '\t']).map(str::trim).filter(|s| !s.is_empty()) {
            // RFC 6749 §3.3: printable ASCII except space, `"` and `\`.
            if !scope.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '\\') {
                return Err(StoreError::invalid("scopes", format!("{scope:?} is not a valid scope")));
            }
            if scope != "openid" && !scopes.iter().any(|s| s == scope) {
                scopes.push(scope.to_owned());
            }
        }
        if scopes.len() > MAX_SCOPES {
            return Err(StoreError::invalid("scopes", format!("at most {MAX_SCOPES} scopes")));
        }
        let groups_claim = single_line("groups claim", &self.groups_claim, MAX_CLAIM_CHARS)?;
        let mapping = check_mapping(&self.mapping)?;
        Ok(CheckedProvider {
            slug,
            display_name,
            issuer_url,
            client_id,
            client_secret,
            scopes,
            groups_claim,
            mapping,
        })
    }
}

#[cfg(feature = "db")]
fn single_line(field: &'static str, value: &str, max: usize) -> Result<String, StoreError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(StoreError::invalid(field, "is required"));
    }
    if value.chars().count() > max {
        return Err(StoreError::invalid(field, format!("is longer than {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(StoreError::invalid(field, "must not contain control characters"));
    }
    Ok(value.to_owned())
}

#[cfg(feature = "db")]
/// An issuer is an `https` URL without query or fragment (OpenID Connect Discovery §2);
/// plain `http` only on this machine, for a provider run locally.
fn check_issuer(text: &str) -> Result<String, StoreError> {
    let invalid = |message: &str| Err(StoreError::invalid("issuer url", message));
    let Ok(url) = url::Url::parse(text) else {
        return invalid("must be a URL like https://login.example.com");
    };
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return invalid("must not carry a query, fragment or credentials");
    }
    let loopback = matches!(url.host(), Some(url::Host::Domain("localhost")))
        || matches!(url.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return invalid("must use https (http only for a provider on this machine)"),
    }
    Ok(text.to_owned())
}

#[cfg(feature = "db")]
fn check_mapping(mapping: &GroupMapping) -> Result<GroupMapping, StoreError> {
    if mapping.roles.is_empty() {
        return Err(StoreError::invalid("role mapping", "map at least one group to a role, or nobody can sign in"));
    }
    if mapping.roles.len() + mapping.teams.len() > MAX_RULES {
        return Err(StoreError::invalid("role mapping", format!("at most {MAX_RULES} rules")));
    }
    let mut checked = GroupMapping::default();
    for rule in &mapping.roles {
        let group = single_line("role mapping", &rule.group, MAX_GROUP_CHARS)?;
        checked.roles.push(GroupRole { group, role: rule.role });
    }
    for rule in &mapping.teams {
        let group = single_line("team mapping", &rule.group, MAX_GROUP_CHARS)?;
        let team = single_line("team mapping", &rule.team, MAX_GROUP_CHARS)?;
        checked.teams.push(GroupTeam { group, team });
    }
    Ok(checked)
}

impl GroupMapping {
    /// The role of the first rule whose group the caller is in, and the teams of every
    /// matching team rule (deduplicated, in rule order). `None`: no role, no entry.
    pub fn resolve(&self, groups: &[String]) -> Option<(Role, Vec<String>)> {
        let member = |group: &str| groups.iter().any(|g| g == group);
        let role = self.roles.iter().find(|rule| member(&rule.group))?.role;
        let mut teams: Vec<String> = Vec::new();
        for rule in self.teams.iter().filter(|rule| member(&rule.group)) {
            if !teams.contains(&rule.team) {
                teams.push(rule.team.clone());
            }
        }
        Some((role, teams))
    }

    /// One rule per line, `group = role`, for the dashboard's text box.
    pub fn roles_text(&self) -> String {
        self.roles.iter().map(|rule| format!("{} = {}\n", rule.group, rule.role)).collect()
    }

    /// One rule per line, `group = team`.
    pub fn teams_text(&self) -> String {
        self.teams.iter().map(|rule| format!("{} = {}\n", rule.group, rule.team)).collect()
    }

}

#[cfg(feature = "db")]
impl GroupMapping {
    /// Reads the dashboard's two text boxes (`group = role`, `group = team`, one per line;
    /// blank lines and lines starting with `#` are skipped). The group is everything
    /// before the last `=`, so a group name may itself hold one.
    pub fn parse(roles: &str, teams: &str) -> Result<GroupMapping, StoreError> {
        let mut mapping = GroupMapping::default();
        for (number, line) in rule_lines(roles) {
            let (group, role) = split_rule(line).ok_or_else(|| {
                StoreError::invalid("role mapping", format!("line {number}: write `group = role`"))
            })?;
            let role = role.parse().map_err(|_| {
                StoreError::invalid("role mapping", format!("line {number}: {role:?} is not admin, security, developer or auditor"))
            })?;
            mapping.roles.push(GroupRole { group: group.to_owned(), role });
        }
        for (number, line) in rule_lines(teams) {
            let (group, team) = split_rule(line)
                .ok_or_else(|| StoreError::invalid("team mapping", format!("line {number}: write `group = team`")))?;
            mapping.teams.push(GroupTeam { group: group.to_owned(), team: team.to_owned() });
        }
        Ok(mapping)
    }
}

#[cfg(feature = "db")]
fn rule_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().map(str::trim).enumerate().map(|(i, line)| (i + 1, line)).filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
}

#[cfg(feature = "db")]
fn split_rule(line: &str) -> Option<(&str, &str)> {
    let (group, target) = line.rsplit_once('=')?;
    let (group, target) = (group.trim(), target.trim());
    (!group.is_empty() && !target.is_empty()).then_some((group, target))
}

#[cfg(feature = "db")]
#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> SsoProviderInput {
        SsoProviderInput {
            slug: "corp".into(),
            display_name: "Corp SSO".into(),
            issuer_url: "https://login.example.com/realms/corp".into(),
            client_id: "palisade".into(),
            client_secret: "s3cret".into(),
            scopes: "openid email, profile groups email".into(),
            groups_claim: "groups".into(),
            mapping: GroupMapping::parse("ciso = security\n# comment\n\nall = auditor", "payments-devs = payments").unwrap(),
            ..SsoProviderInput::default()
        }
    }

    #[test]
    fn a_valid_provider_is_trimmed_and_its_scopes_split() {
        let checked = input().check().unwrap();
        assert_eq!(checked.scopes, ["email", "profile", "groups"]);
        assert_eq!(checked.client_secret.as_deref(), Some("s3cret"));
        assert_eq!(checked.mapping.roles.len(), 2);
    }

    #[test]
    fn bad_fields_are_refused_on_their_field() {
        let field = |change: fn(&mut SsoProviderInput)| {
            let mut input = input();
            change(&mut input);
            match input.check() {
                Err(StoreError::Invalid { field, .. }) => field,
                other => panic!("expected a refusal, got {other:?}"),
            }
        };
        assert_eq!(field(|i| i.slug = "Corp SSO".into()), "slug");
        assert_eq!(field(|i| i.issuer_url = "http://login.example.com".into()), "issuer url");
        assert_eq!(field(|i| i.issuer_url = "https://login.example.com/?x=1".into()), "issuer url");
        assert_eq!(field(|i| i.issuer_url = "javascript:alert(1)".into()), "issuer url");
        assert_eq!(field(|i| i.client_secret = String::new()), "client secret");
        assert_eq!(field(|i| i.scopes = "email \"quoted\"".into()), "scopes");
        assert_eq!(field(|i| i.mapping.roles.clear()), "role mapping");
        assert_eq!(field(|i| i.display_name = "a\nb".into()), "display name");
        // A change may leave the secret as it is; a local provider may use http.
        let mut change = input();
        change.id = Some(1);
        change.client_secret = String::new();
        change.issuer_url = "http://127.0.0.1:9000/oidc".into();
        assert_eq!(change.check().unwrap().client_secret, None);
    }

    #[test]
    fn the_first_matching_role_wins_and_every_matching_team_applies() {
        let mapping = GroupMapping::parse("admins = admin\nciso = security\nall = auditor", "ciso = risk\nall = everyone\nciso = risk").unwrap();
        let groups = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(mapping.resolve(&groups(&["all", "ciso"])), Some((Role::Security, vec!["risk".into(), "everyone".into()])));
        assert_eq!(mapping.resolve(&groups(&["all"])), Some((Role::Auditor, vec!["everyone".into()])));
        assert_eq!(mapping.resolve(&groups(&["contractors"])), None);
        assert_eq!(mapping.resolve(&[]), None);
    }

    #[test]
    fn mapping_text_round_trips_and_reports_bad_lines() {
        let mapping = GroupMapping::parse("cn=admins,ou=groups = admin", "").unwrap();
        assert_eq!(mapping.roles[0].group, "cn=admins,ou=groups");
        assert_eq!(GroupMapping::parse(&mapping.roles_text(), &mapping.teams_text()).unwrap(), mapping);
        let error = GroupMapping::parse("ciso = owner", "").unwrap_err().to_string();
        assert!(error.contains("line 1"), "{error}");
        assert!(GroupMapping::parse("no equals sign", "").is_err());
        assert!(GroupMapping::parse("", "= team").is_err());
    }
}
