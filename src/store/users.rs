//! Dashboard accounts (a name, a role, an argon2id password hash) and their sessions.
//!
//! A password is only ever kept as its argon2id PHC string, and a session only as the SHA-256 of
//! its token: the database alone lets nobody log in. Nothing here may log, print or return a
//! password, a session token or a hash to anything but the verifier.

use std::fmt;
use std::str::FromStr;

use super::db::{self, DbRow};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use chrono::{DateTime, Utc};
use sha2::Digest;

use super::{Store, StoreError, from_millis};

/// What an account may do. Each role may do everything the one before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sees every page.
    Viewer,
    /// Also retries and discards outbox items and triggers workflows.
    Operator,
    /// Also manages users.
    Admin,
}

impl Role {
    pub const ALL: &'static [Role] = &[Role::Viewer, Role::Operator, Role::Admin];

    /// The text stored in the database and accepted by `--role`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Retry or discard outbox items, trigger workflows.
    pub fn can_operate(self) -> bool {
        self >= Role::Operator
    }

    /// Add, remove and change users.
    pub fn can_admin(self) -> bool {
        self >= Role::Admin
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// A text that is no role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a role (accepted: viewer, operator, admin)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Role, UnknownRole> {
        Role::ALL
            .iter()
            .copied()
            .find(|r| r.name() == s)
            .ok_or_else(|| UnknownRole(s.to_string()))
    }
}

/// An account name: 1 to 64 characters of letters, digits and `.`, `_`, `-`, `@`, so it can be
/// shown anywhere (a page, a log line, an audit trail) without escaping surprises.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct UserName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a user name (accepted: 1 to 64 letters, digits or . _ - @, starting with a letter or digit)"
)]
pub struct BadUserName(pub String);

impl UserName {
    pub fn parse(text: &str) -> Result<UserName, BadUserName> {
        let ok = (1..=64).contains(&text.chars().count())
            && text.chars().next().is_some_and(|c| c.is_alphanumeric())
            && text
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
        if ok {
            Ok(UserName(text.to_string()))
        } else {
            Err(BadUserName(text.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl FromStr for UserName {
    type Err = BadUserName;
    fn from_str(s: &str) -> Result<UserName, BadUserName> {
        UserName::parse(s)
    }
}

/// An account as shown: never its password hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UserRow {
    pub name: UserName,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A live session: whose it is, and the CSRF token its forms must carry.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub user: UserRow,
    pub csrf: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The shortest password accepted: a dashboard on a home network is still a door to a wallet.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// A password that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadPassword {
    #[error("the password is too short ({chars} characters; at least {MIN_PASSWORD_CHARS})")]
    TooShort { chars: usize },
    #[error("the password is longer than 1024 bytes")]
    TooLong,
}

/// Checks a new password against what is accepted.
pub fn check_new_password(password: &str) -> Result<(), BadPassword> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(BadPassword::TooShort { chars });
    }
    if password.len() > 1024 {
        return Err(BadPassword::TooLong);
    }
    Ok(())
}

/// argon2id with the parameters OWASP recommends as a minimum (19 MiB, 2 passes, 1 lane): about
/// 50 ms on a Raspberry Pi 4, so a login is quick and a stolen hash slow to guess.
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("constant argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The argon2id PHC string of `password`, with a fresh random salt.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::encode_b64(&random_bytes::<16>()).expect("16 bytes make a valid salt");
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 accepts any password of at most 4 GiB")
        .to_string()
}

/// Whether `password` is the one `phc` was made from. A hash that cannot be read is no match.
pub fn verify_password(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|parsed| {
        hasher()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A hash to verify against when the user does not exist, so a login for an unknown name takes
/// as long as one with a wrong password (the name's existence is not revealed by timing).
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("satflow-no-such-user-password"))
}

/// 32 random bytes from the operating system, as 64 hex digits: session tokens and CSRF tokens.
pub fn random_token() -> String {
    hex(&random_bytes::<32>())
}

/// `N` bytes from the operating system's random source. Without one nothing here is safe, so
/// its failure (a kernel without getrandom and no /dev/urandom) is fatal.
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).expect("the operating system's random source works");
    bytes
}

/// What the database keeps of a session token.
pub fn token_hash(token: &str) -> String {
    hex(&sha2::Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn user_row(r: &DbRow) -> Result<UserRow, StoreError> {
    let name: String = r.try_get("name")?;
    let role: String = r.try_get("role")?;
    Ok(UserRow {
        name: UserName::parse(&name).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        role: role
            .parse()
            .map_err(|e: UnknownRole| StoreError::Corrupt(e.to_string()))?,
        created_at: from_millis(r.try_get("created_at")?),
        updated_at: from_millis(r.try_get("updated_at")?),
    })
}

impl Store {
    /// Adds an account. `false`: one of that name exists (nothing changed).
    pub async fn add_user(
        &self,
        name: &UserName,
        role: Role,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = db::query(
            "INSERT INTO users (name, role, password_hash, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name.as_str())
        .bind(role.name())
        .bind(password_hash)
        .bind(now.timestamp_millis())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn user(&self, name: &str) -> Result<Option<UserRow>, StoreError> {
        let r = db::query("SELECT name, role, created_at, updated_at FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        r.as_ref().map(user_row).transpose()
    }

    /// Every account, by name.
    pub async fn list_users(&self) -> Result<Vec<UserRow>, StoreError> {
        let rows = db::query("SELECT name, role, created_at, updated_at FROM users ORDER BY name")
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(user_row).collect()
    }

    /// How many accounts have `role`.
    pub async fn count_users_with_role(&self, role: Role) -> Result<i64, StoreError> {
        Ok(
            db::query_scalar("SELECT COUNT(*) FROM users WHERE role = $1")
                .bind(role.name())
                .fetch_one(self.pool())
                .await?,
        )
    }

    /// The account and its password hash, for the login check only.
    pub async fn user_for_login(
        &self,
        name: &str,
    ) -> Result<Option<(UserRow, String)>, StoreError> {
        let r = db::query(
            "SELECT name, role, created_at, updated_at, password_hash FROM users WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(self.pool())
        .await?;
        match r {
            Some(r) => Ok(Some((user_row(&r)?, r.try_get("password_hash")?))),
            None => Ok(None),
        }
    }

    /// Removes an account and ends its sessions. `false`: there was none of that name.
    pub async fn remove_user(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        db::query("DELETE FROM sessions WHERE user_name = $1")
            .bind(name)
            .execute(&mut tx)
            .await?;
        let done = db::query("DELETE FROM users WHERE name = $1")
            .bind(name)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces an account's password hash and ends its sessions (whoever knew the old
    /// password is logged out). `false`: there is no such account.
    pub async fn set_password(
        &self,
        name: &str,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done =
            db::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE name = $3")
                .bind(password_hash)
                .bind(now.timestamp_millis())
                .bind(name)
                .execute(&mut tx)
                .await?;
        db::query("DELETE FROM sessions WHERE user_name = $1")
            .bind(name)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Changes an account's role. `false`: there is no such account.
    pub async fn set_role(
        &self,
        name: &str,
        role: Role,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = db::query("UPDATE users SET role = $1, updated_at = $2 WHERE name = $3")
            .bind(role.name())
            .bind(now.timestamp_millis())
            .bind(name)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Starts a session for `user`, kept as the hash of `token` until `expires_at`.
    pub async fn create_session(
        &self,
        token: &str,
        user: &UserName,
        csrf: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        db::query(
            "INSERT INTO sessions (token_hash, user_name, csrf, created_at, last_seen_at, expires_at)
             VALUES ($1, $2, $3, $4, $4, $5)",
        )
        .bind(token_hash(token))
        .bind(user.as_str())
        .bind(csrf)
        .bind(now.timestamp_millis())
        .bind(expires_at.timestamp_millis())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The live session whose token is `token`, with its account; `None` when there is none or
    /// it has expired.
    pub async fn session(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionRow>, StoreError> {
        let r = db::query(
            "SELECT u.name, u.role, u.created_at, u.updated_at, s.csrf, s.created_at AS s_created, s.expires_at
             FROM sessions s JOIN users u ON u.name = s.user_name
             WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(token_hash(token))
        .bind(now.timestamp_millis())
        .fetch_optional(self.pool())
        .await?;
        match r {
            Some(r) => Ok(Some(SessionRow {
                user: user_row(&r)?,
                csrf: r.try_get("csrf")?,
                created_at: from_millis(r.try_get("s_created")?),
                expires_at: from_millis(r.try_get("expires_at")?),
            })),
            None => Ok(None),
        }
    }

    /// Moves a session's expiry to `expires_at` (a session in use stays alive).
    pub async fn extend_session(
        &self,
        token: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        db::query("UPDATE sessions SET last_seen_at = $1, expires_at = $2 WHERE token_hash = $3")
            .bind(now.timestamp_millis())
            .bind(expires_at.timestamp_millis())
            .bind(token_hash(token))
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Ends a session (logout).
    pub async fn delete_session(&self, token: &str) -> Result<(), StoreError> {
        db::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash(token))
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Forgets sessions that expired before `now`; how many.
    pub async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = db::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now.timestamp_millis())
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_order_their_rights() {
        assert!(!Role::Viewer.can_operate() && !Role::Viewer.can_admin());
        assert!(Role::Operator.can_operate() && !Role::Operator.can_admin());
        assert!(Role::Admin.can_operate() && Role::Admin.can_admin());
        assert_eq!("operator".parse::<Role>(), Ok(Role::Operator));
        let err = "root".parse::<Role>().unwrap_err().to_string();
        assert!(err.starts_with("`root` is not a role"), "{err}");
    }

    #[test]
    fn user_names_are_plain() {
        assert!(UserName::parse("alice").is_ok());
        assert!(UserName::parse("bob.smith@example-1").is_ok());
        for bad in ["", "-x", "a b", "<script>", &"a".repeat(65)] {
            assert!(UserName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let phc = hash_password("correct horse battery");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password(&phc, "correct horse battery"));
        assert!(!verify_password(&phc, "correct horse batterx"));
        assert!(!verify_password("not a hash", "x"));
        assert_ne!(phc, hash_password("correct horse battery"), "salted");
    }

    #[tokio::test]
    async fn users_and_sessions_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("db")).await.unwrap();
        let now = crate::clock::system_now();
        let alice = UserName::parse("alice").unwrap();
        assert!(
            store
                .add_user(&alice, Role::Operator, "h1", now)
                .await
                .unwrap()
        );
        assert!(
            !store
                .add_user(&alice, Role::Admin, "h2", now)
                .await
                .unwrap()
        );
        let row = store.user("alice").await.unwrap().unwrap();
        assert_eq!(row.role, Role::Operator);
        assert_eq!(store.list_users().await.unwrap().len(), 1);
        let (_, hash) = store.user_for_login("alice").await.unwrap().unwrap();
        assert_eq!(hash, "h1");

        let token = random_token();
        let later = now + chrono::Duration::hours(1);
        store
            .create_session(&token, &alice, "csrf1", now, later)
            .await
            .unwrap();
        let s = store.session(&token, now).await.unwrap().unwrap();
        assert_eq!((s.user.name.as_str(), s.csrf.as_str()), ("alice", "csrf1"));
        assert!(
            store.session(&token, later).await.unwrap().is_none(),
            "expired"
        );
        assert!(store.session("other", now).await.unwrap().is_none());

        // A new password ends every session.
        assert!(store.set_password("alice", "h3", now).await.unwrap());
        assert!(store.session(&token, now).await.unwrap().is_none());
        assert!(store.set_role("alice", Role::Admin, now).await.unwrap());
        assert_eq!(store.count_users_with_role(Role::Admin).await.unwrap(), 1);
        assert!(store.remove_user("alice").await.unwrap());
        assert!(!store.remove_user("alice").await.unwrap());
        assert!(store.user("alice").await.unwrap().is_none());
    }
}
