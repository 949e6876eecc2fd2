// Re-embed the SQL migrations (sqlx::migrate!) whenever the folder changes.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
