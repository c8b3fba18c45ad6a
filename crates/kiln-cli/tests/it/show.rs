use crate::support::{examples, kiln, run};

fn show(image: &str, format: &str) -> String {
    let r = run(kiln()
        .args(["show", "--arch", "amd64", "--format", format, image])
        .arg("-C")
        .arg(examples()));
    assert_eq!(r.code, 0, "kiln show {image} failed:\n{}", r.stderr);
    assert_eq!(r.stderr, "", "no warnings expected for {image}");
    r.stdout
}

#[test]
fn plans_of_the_examples_as_toml() {
    for image in ["ve/minimal", "ve/server", "distro/live"] {
        let text = show(image, "toml");
        // The readable form is valid TOML.
        let parsed: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{image}: not TOML: {e}\n{text}"));
        assert_eq!(parsed.get("image").and_then(|v| v.as_str()), Some(image));
        insta::assert_snapshot!(format!("show_toml_{}", image.replace('/', "_")), text);
    }
}

#[test]
fn plans_of_the_examples_as_json() {
    for image in ["ve/minimal", "ve/server", "distro/live"] {
        let text = show(image, "json");
        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(v["schema"], 1);
        assert_eq!(v["image"], image);
        insta::assert_snapshot!(format!("show_json_{}", image.replace('/', "_")), text);
    }
}

#[test]
fn server_plan_composes_as_documented() {
    let v: serde_json::Value = serde_json::from_str(&show("ve/server", "json")).expect("JSON");
    let names = |key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .expect("array")
            .iter()
            .map(|p| p["name"].as_str().expect("name").to_string())
            .collect()
    };
    // Features: the parent's first, `requires` before the feature, each once.
    assert_eq!(names("features"), ["cleanup", "net", "ssh"]);
    assert_eq!(v["features"][1]["variants"], serde_json::json!(["dhcp"]));
    let pkgs = names("packages");
    assert!(pkgs.contains(&"openssh-server".to_string()));
    assert!(pkgs.contains(&"cpuid".to_string()), "amd64-only package kept on amd64");
    assert!(!pkgs.contains(&"nano".to_string()), "removed by ve/server");
    assert_eq!(names("removed"), ["nano"]);
    // The tagged expression selects two lists and not the desktop one.
    let tagged: Vec<&str> = v["lists"]
        .as_array()
        .expect("lists")
        .iter()
        .filter(|l| l["tagged"] == true)
        .map(|l| l["name"].as_str().expect("name"))
        .collect();
    assert_eq!(tagged, ["server+monitoring", "server+network"]);
    assert_eq!(v["nvr"], "ve-server-1.0-1.kiln1");
    // Every scalar carries provenance.
    assert_eq!(v["version"]["origin"]["file"], "kiln.toml");
    assert!(v["version"]["origin"]["line"].as_u64().is_some_and(|l| l > 0));
}

#[test]
fn arch_filters_follow_arch() {
    let r = run(kiln()
        .args(["show", "--arch", "arm64", "--format", "json", "ve/server"])
        .arg("-C")
        .arg(examples()));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON");
    let excluded: Vec<&str> = v["arch_excluded"]
        .as_array()
        .expect("array")
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert_eq!(excluded, ["cpuid"]);
    assert!(
        v["outputs"][0]["file"]
            .as_str()
            .is_some_and(|f| f.ends_with(".arm64.squashfs"))
    );
}

#[test]
fn defines_and_builder_config_take_precedence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let builder = dir.path().join("builder.toml");
    std::fs::write(
        &builder,
        "[builder]\nname = \"b1\"\n[macros]\nvendor = \"ACME\"\ndist = \".b\"\n",
    )
    .expect("write");
    let r = run(kiln()
        .args([
            "show",
            "--arch",
            "amd64",
            "--format",
            "json",
            "ve/server",
            "--define",
            "dist=.cli",
        ])
        .arg("--builder-config")
        .arg(&builder)
        .arg("-C")
        .arg(examples()));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON");
    let mac = |n: &str| {
        v["macros"]
            .as_array()
            .expect("macros")
            .iter()
            .find(|m| m["name"] == n)
            .cloned()
            .expect("macro present")
    };
    assert_eq!(mac("dist")["value"], ".cli");
    assert_eq!(mac("dist")["layer"], "cli");
    assert_eq!(mac("dist")["overrode"][0]["layer"], "builder");
    assert_eq!(mac("vendor")["value"], "ACME");
    assert_eq!(mac("vendor")["layer"], "builder");
    assert_eq!(v["release"]["value"], "1.cli");
    assert_eq!(v["nvr"], "ve-server-1.0-1.cli");
}

#[test]
fn unknown_image_is_an_error_with_a_hint() {
    let r = run(kiln().args(["show", "ve/sever"]).arg("-C").arg(examples()));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("unknown image `ve/sever`"), "{}", r.stderr);
    assert!(r.stderr.contains("did you mean `ve/server`?"), "{}", r.stderr);
    assert_eq!(r.stdout, "");
}

#[test]
fn bad_define_is_a_usage_error() {
    let r = run(kiln()
        .args(["show", "ve/server", "--define", "no value"])
        .arg("-C")
        .arg(examples()));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("expected NAME=VALUE"), "{}", r.stderr);
}
