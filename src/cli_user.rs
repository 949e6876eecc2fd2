//! `earshot user add`: makes a user in the deployment's database from the command line (the
//! way to the first superuser when the admin token is to be turned off). The password comes
//! from `EARSHOT_PASSWORD`, never from the command line (which other users can read).

use anyhow::Context;
use earshot_signaling::access::{Access, NewUser};
use earshot_signaling::store::StoreUrl;
use std::path::Path;

/// The environment variable the new user's password is read from.
pub const PASSWORD_VAR: &str = "EARSHOT_PASSWORD";

/// Adds the user to the store (`data_dir` is prepared for the embedded default) and prints
/// its id.
pub async fn add(
    data_dir: &Path,
    store_url: &StoreUrl,
    email: String,
    name: String,
    superuser: bool,
    password: Option<String>,
) -> anyhow::Result<()> {
    use std::io::Write;
    let password =
        password.with_context(|| format!("set the new user's password in {PASSWORD_VAR}"))?;
    crate::secrets::prepare_data_dir(data_dir, store_url.sqlite_file())
        .with_context(|| format!("preparing data directory {}", data_dir.display()))?;
    let store = earshot_signaling::store::open(store_url)
        .await
        .context("opening the store")?;
    let access = Access::new(store, true);
    let user = access
        .create_user(NewUser {
            email,
            name,
            password,
            superuser,
        })
        .await
        .map_err(|e| anyhow::anyhow!("{}: {}", e.code, e.message))?;
    writeln!(std::io::stdout().lock(), "{}", user.id).context("writing the user's id")?;
    Ok(())
}
