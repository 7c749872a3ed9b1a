//! JSON Schemas generated from the Rust types, committed under `schemas/`.

use schemars::JsonSchema;

/// (file name, generated schema) for every document type of the format.
pub fn all() -> Vec<(&'static str, String)> {
    fn render<T: JsonSchema>() -> String {
        let schema = schemars::schema_for!(T);
        let mut s = serde_json::to_string_pretty(&schema).unwrap_or_else(|_| unreachable!("schema serializes"));
        s.push('\n');
        s
    }
    vec![
        ("spec.schema.json", render::<crate::spec::BuildSpec>()),
        ("manifest.schema.json", render::<crate::manifest::Manifest>()),
        ("variables.schema.json", render::<crate::release::Variables>()),
        ("migrations.schema.json", render::<crate::release::Migrations>()),
    ]
}
