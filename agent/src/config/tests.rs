use std::path::Path;

use super::*;

use super::problems as errors;

const GOOD: &str = r#"
data_dir = "/tmp/vigil"

[sources.shop]
type = "file"
include = ["/var/log/shop/*/*.log"]
path_fields = '^/var/log/shop/(?P<module>[^/]+)/'

[processors.parse]
type = "json_parse"
inputs = ["shop"]

[processors.tag]
type = "enrich"
inputs = ["parse"]
attributes = { env = "prod" }

[sinks.cloudwatch_logs]
type = "cloudwatch_logs"
inputs = ["tag"]
log_group = "/shop/{env}/{module}"
log_stream = "{instance_id|host}"
"#;

#[test]
fn a_good_config_loads() {
    let c = parse(Path::new("agent.toml"), GOOD).unwrap();
    assert_eq!(c.sources.len(), 1);
    assert_eq!(c.processors["tag"].inputs, ["parse"]);
    assert!(c.redaction.cards, "card redaction is on by default");
}

#[test]
fn a_missing_key_is_named_with_its_line() {
    let text = GOOD.replace("log_group = \"/shop/{env}/{module}\"\n", "");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    // Reported at the table that lacks it: `[sinks.cloudwatch_logs]` is line 18.
    assert!(
        errs[0].starts_with("agent.toml:18:")
            && errs[0].ends_with("sinks.cloudwatch_logs.log_group: missing"),
        "{errs:?}"
    );
}

#[test]
fn every_problem_is_reported_at_its_key() {
    let text = r#"
[sources.shop]
type = "file"
include = ["relative/*.log"]
max_line_bytes = "big"

[sources.other]
type = "journald"

[processors.p]
type = "json_parse"
inputs = ["nope"]
colour = "blue"

[sinks.out]
type = "cloudwatch_logs"
inputs = ["p", "shop"]
log_group = "/a/{unclosed"
log_stream = "s"
retention_days = 8
"#;
    let errs = errors(text);
    let has = |needle: &str| errs.iter().any(|e| e.contains(needle));
    assert!(
        has(
            "agent.toml:5:1: sources.shop.max_line_bytes: invalid type: string \"big\", expected usize"
        ),
        "{errs:#?}"
    );
    assert!(
        has("agent.toml:8:1: sources.other.type: unknown type `journald`; expected one of: file"),
        "{errs:#?}"
    );
    assert!(
        has("agent.toml:13:1: processors.p.colour: unknown key; expected `timestamp_field`"),
        "{errs:#?}"
    );
    assert!(
        has("agent.toml:18:1: sinks.out.log_group: invalid template: unclosed `{`"),
        "{errs:#?}"
    );
    assert!(
        has("agent.toml:20:1: sinks.out.retention_days: must be one of"),
        "{errs:#?}"
    );
    assert!(
        has("agent.toml:12:11: processors.p.inputs[0]: no source or processor named `nope`"),
        "{errs:#?}"
    );
    assert!(
        errs.iter().all(|e| !e.contains('\n')),
        "one line per problem: {errs:#?}"
    );
}

#[test]
fn graph_errors_name_the_input() {
    let text = GOOD.replace(
        "inputs = [\"tag\"]",
        "inputs = [\"tag\", \"cloudwatch_logs\", \"ghost\"]",
    );
    let errs = errors(&text);
    assert!(
        errs.iter()
            .any(|e| e.contains("sinks.cloudwatch_logs.inputs[1]: `cloudwatch_logs` is a sink")),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e
                .contains("sinks.cloudwatch_logs.inputs[2]: no source or processor named `ghost`")),
        "{errs:#?}"
    );
}

#[test]
fn invalid_toml_gives_line_and_column() {
    let errs = errors("[sources.a]\ntype = \"file\"\ninclude = [\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("agent.toml:"), "{errs:?}");
    assert!(errs[0].contains("invalid TOML"), "{errs:?}");
}

#[test]
fn unused_sources_and_cycles_are_reported() {
    let text = r#"
[sources.a]
type = "file"
include = ["/x/*.log"]

[sources.unused]
type = "file"
include = ["/y/*.log"]

[processors.p1]
type = "json_parse"
inputs = ["a", "p2"]

[processors.p2]
type = "json_parse"
inputs = ["p1"]

[sinks.out]
type = "console"
inputs = ["p2"]
"#;
    let errs = errors(text);
    assert!(
        errs.iter().any(|e| e.contains("sources.unused: unused")),
        "{errs:#?}"
    );
    assert!(errs.iter().any(|e| e.contains("form a cycle")), "{errs:#?}");
}

#[test]
fn component_names_that_would_be_paths_are_refused() {
    let text = GOOD.replace("[sinks.cloudwatch_logs]", "[sinks.\"../../etc\"]");
    let errs = errors(&text);
    assert!(
        errs.iter()
            .any(|e| e.contains("component name `../../etc`: use 1 to 64 ASCII letters")),
        "{errs:?}"
    );
}

#[test]
fn a_new_relic_endpoint_over_plain_http_is_refused_unless_allowed() {
    let sink =
        "\n[sinks.nr]\ntype = \"newrelic\"\ninputs = [\"tag\"]\nendpoint = \"http://nr.example\"\n";
    let errs = errors(&format!("{GOOD}{sink}"));
    assert!(
        errs.iter()
            .any(|e| e.contains("sinks.nr.endpoint: http:// would send the license key in clear")),
        "{errs:?}"
    );
    let allowed = format!("{GOOD}{sink}allow_insecure_http = true\n");
    assert_eq!(errors(&allowed), Vec::<String>::new());
}
