//! The OpenAPI document (runtime/openapi.json) lists every route the API
//! serves, with its methods — and nothing it does not serve.

use std::collections::BTreeSet;
use std::path::Path;

/// (path, method) pairs declared with `.route("PATH", get(..).post(..))`.
fn served_routes() -> BTreeSet<(String, String)> {
    let api = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut routes = BTreeSet::new();
    for entry in std::fs::read_dir(&api).expect("src/api") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|extension| extension != "rs") {
            continue;
        }
        let source = std::fs::read_to_string(path).expect("read");
        for piece in source.split(".route(").skip(1) {
            let declaration = piece.split(".route(").next().unwrap_or(piece);
            // A declaration ends at the next `.with_state` or at the end
            // of the function that builds the router.
            let declaration = declaration
                .split(".with_state")
                .next()
                .unwrap_or(declaration);
            let declaration = declaration.split("\n}").next().unwrap_or(declaration);
            let path = declaration
                .split('"')
                .nth(1)
                .expect("a quoted path")
                .to_string();
            for method in ["get", "post", "put", "delete"] {
                let called = [" ", "(", ".", "\n"]
                    .iter()
                    .any(|before| declaration.contains(&format!("{before}{method}(")));
                if called {
                    routes.insert((path.clone(), method.to_string()));
                }
            }
        }
    }
    routes
}

fn documented_routes() -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json"))
        .expect("runtime/openapi.json");
    let document: serde_json::Value = serde_json::from_str(&text).expect("openapi.json is JSON");
    let mut routes = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            routes.insert((path.clone(), method.clone()));
        }
    }
    routes
}

#[test]
fn every_route_is_documented_and_every_documented_route_exists() {
    let served = served_routes();
    let documented = documented_routes();
    assert!(served.len() >= 14, "the scan found the routes: {served:?}");
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from openapi.json: {undocumented:?}"
    );
    assert!(
        stale.is_empty(),
        "openapi.json documents routes that do not exist: {stale:?}"
    );
}

/// The tenant limits schema names every limit the server takes (it
/// refuses unknown fields, so a stale schema would turn valid documents
/// away from clients that validate).
#[test]
fn the_tenant_limits_schema_names_every_limit() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json"))
        .expect("runtime/openapi.json");
    let document: serde_json::Value = serde_json::from_str(&text).expect("openapi.json is JSON");
    let documented: BTreeSet<String> =
        document["components"]["schemas"]["TenantLimits"]["properties"]
            .as_object()
            .expect("a TenantLimits schema")
            .keys()
            .cloned()
            .collect();
    let limits = serde_json::to_value(reprise::tenant::TenantLimits::default()).expect("JSON");
    let taken: BTreeSet<String> = limits
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect();
    assert_eq!(documented, taken);
}
