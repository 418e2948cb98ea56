use std::path::Path;

use super::*;

use super::problems as errors;

const GOOD: &str = include_str!("testdata/good.toml");

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
    let text = include_str!("testdata/every_problem.toml");
    assert_problems(
        text,
        &[
            "agent.toml:5:1: sources.shop.max_line_bytes: invalid type: string \"big\", expected usize",
            "agent.toml:8:1: sources.other.type: unknown type `journald`; expected one of: file",
            "agent.toml:13:1: processors.p.colour: unknown key; expected `timestamp_field`",
            "agent.toml:18:1: sinks.out.log_group: invalid template: unclosed `{`",
            "agent.toml:20:1: sinks.out.retention_days: must be one of",
            "agent.toml:12:11: processors.p.inputs[0]: no source or processor named `nope`",
        ],
    );
    let errs = errors(text);
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
    assert_problems(
        &text,
        &[
            "sinks.cloudwatch_logs.inputs[1]: `cloudwatch_logs` is a sink",
            "sinks.cloudwatch_logs.inputs[2]: no source or processor named `ghost`",
        ],
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
    let text = include_str!("testdata/unused_and_cycle.toml");
    assert_problems(text, &["sources.unused: unused", "form a cycle"]);
}

#[test]
fn component_names_that_would_be_paths_are_refused() {
    let text = GOOD.replace("[sinks.cloudwatch_logs]", "[sinks.\"../../etc\"]");
    assert_problems(
        &text,
        &["component name `../../etc`: use 1 to 64 ASCII letters"],
    );
}

#[test]
fn a_new_relic_endpoint_over_plain_http_is_refused_unless_allowed() {
    let sink =
        "\n[sinks.nr]\ntype = \"newrelic\"\ninputs = [\"tag\"]\nendpoint = \"http://nr.example\"\n";
    assert_problems(
        &format!("{GOOD}{sink}"),
        &["sinks.nr.endpoint: http:// would send the license key in clear"],
    );
    let allowed = format!("{GOOD}{sink}allow_insecure_http = true\n");
    assert_eq!(errors(&allowed), Vec::<String>::new());
}
