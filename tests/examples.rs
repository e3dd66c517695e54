//! The files people copy: the CI workflow, the example spec, the README's promises.

use std::path::Path;

use crate::util::REPO;

#[test]
fn the_ci_workflow_parses_and_plans_then_applies_the_saved_plan() {
    let text = std::fs::read_to_string(Path::new(REPO).join("examples/ci/realign.yml")).unwrap();
    let wf: serde_yaml::Value = serde_yaml::from_str(&text).expect("the workflow is valid YAML");
    let jobs = wf.get("jobs").expect("jobs");
    let steps = |job: &str| -> String {
        let steps = jobs
            .get(job)
            .and_then(|j| j.get("steps"))
            .and_then(|s| s.as_sequence())
            .expect("steps");
        steps
            .iter()
            .filter_map(|s| {
                s.get("run")
                    .or_else(|| s.get("with").and_then(|w| w.get("script")))
            })
            .filter_map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let plan = steps("plan");
    assert!(plan.contains("realign validate"), "{plan}");
    assert!(
        plan.contains(
            "realign plan territories --out plan.json --format markdown --detailed-exitcode"
        ),
        "{plan}"
    );
    assert!(
        plan.contains("updateComment"),
        "the plan comment is updated in place: {plan}"
    );
    let apply = steps("apply");
    assert!(
        apply.contains("realign apply plan.json --auto-approve"),
        "{apply}"
    );
    assert!(wf.get("on").and_then(|o| o.get("pull_request")).is_some());
}

#[test]
fn the_readme_quick_start_is_exactly_two_commands() {
    let readme = std::fs::read_to_string(Path::new(REPO).join("README.md")).unwrap();
    let start = readme
        .find("## Quick start")
        .expect("a Quick start section");
    let section = &readme[start..];
    let block = section.split("```").nth(1).expect("a code block");
    let commands: Vec<&str> = block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(commands, vec!["cargo run --release -- demo", "cargo test"]);
}

#[test]
fn the_readme_names_every_command() {
    use clap::CommandFactory;
    let readme = std::fs::read_to_string(Path::new(REPO).join("README.md")).unwrap();
    for sub in realign::cli::Cli::command().get_subcommands() {
        let name = sub.get_name();
        assert!(
            readme.contains(&format!("realign {name}")),
            "README does not mention `realign {name}`"
        );
    }
}

#[test]
fn the_readme_shows_the_real_east_yaml() {
    let readme = std::fs::read_to_string(Path::new(REPO).join("README.md")).unwrap();
    let real = std::fs::read_to_string(Path::new(REPO).join("territories/north-america/east.yaml"))
        .unwrap();
    let body: String = real.lines().skip(1).map(|l| format!("{l}\n")).collect();
    assert!(
        readme.contains(&body),
        "README's east.yaml example drifted from the file"
    );
}
