//! What a workflow may import: unknown interfaces are refused at load with
//! their names, bad bytes are refused. (How denied interfaces answer is in
//! `conformance`.)

use reprise::Limits;
use reprise::engine::LoadError;

use crate::support::guest;

fn load_error(bytes: &[u8]) -> LoadError {
    let engine = reprise::Engine::new(None, Limits::default()).expect("engine");
    match engine.load(bytes) {
        Ok(_) => panic!("the bytes were accepted"),
        Err(error) => error,
    }
}

#[test]
fn unknown_imports_are_refused_with_their_names() {
    let component = wat::parse_str(
        r#"(component
            (import "acme:db/query" (instance))
            (import "acme:cache/get@1.0.0" (instance))
        )"#,
    )
    .expect("valid WAT");
    let error = load_error(&component);
    let LoadError::UnknownImports(names) = &error else {
        panic!("expected unknown imports, got {error}");
    };
    assert_eq!(names, &["acme:db/query", "acme:cache/get@1.0.0"]);
    assert!(
        error
            .to_string()
            .contains("acme:db/query, acme:cache/get@1.0.0")
    );
}

#[test]
fn core_modules_and_garbage_are_refused_clearly() {
    let core = wat::parse_str("(module)").expect("valid WAT");
    assert!(matches!(load_error(&core), LoadError::CoreModule));
    assert!(load_error(&core).to_string().contains("wasm32-wasip2"));
    assert!(matches!(load_error(b"not wasm at all"), LoadError::NotWasm));
    let mut truncated = std::fs::read(guest("hello")).expect("read");
    truncated.truncate(truncated.len() / 2);
    assert!(matches!(load_error(&truncated), LoadError::Malformed(_)));
}

#[test]
fn a_component_without_an_entry_point_is_refused() {
    let component = wat::parse_str("(component)").expect("valid WAT");
    assert!(matches!(load_error(&component), LoadError::NoEntryPoint(_)));
}
