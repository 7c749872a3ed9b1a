//! The committed JSON Schemas match the Rust types. `SEALIFT_BLESS=1` rewrites them.

use std::path::Path;

#[test]
fn committed_json_schemas_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bless = std::env::var_os("SEALIFT_BLESS").is_some();
    for (name, generated) in schemas::json_schema::all() {
        let path = dir.join(name);
        if bless {
            std::fs::write(&path, &generated).expect("write schema");
            continue;
        }
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run `just schemas` to generate it", path.display()));
        assert!(
            committed == generated,
            "{name} is stale; run `just schemas` (SEALIFT_BLESS=1 cargo test -p schemas --test it json_schemas)"
        );
    }
}
