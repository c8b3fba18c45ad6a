//! The installed packages of a Debian tree, read from `var/lib/dpkg/status`
//! (the same data `dpkg-query -W` prints).

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Installed {
    pub name: String,
    pub version: String,
    pub arch: String,
}

/// Parses a dpkg status file: every stanza whose `Status` ends in
/// `installed`, sorted by name.
pub fn parse_status(text: &str) -> Vec<Installed> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let (mut name, mut version, mut arch, mut installed) = (None, None, None, false);
        for line in stanza.lines() {
            if line.starts_with([' ', '\t']) {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key {
                "Package" => name = Some(value),
                "Version" => version = Some(value),
                "Architecture" => arch = Some(value),
                "Status" => installed = value.ends_with(" installed"),
                _ => {}
            }
        }
        if let (true, Some(n), Some(v), Some(a)) = (installed, name, version, arch) {
            out.push(Installed {
                name: n.to_string(),
                version: v.to_string(),
                arch: a.to_string(),
            });
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_only() {
        let text = "Package: less\nStatus: install ok installed\nVersion: 590-2.1\nArchitecture: amd64\nDescription: pager\n continued\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\nArchitecture: all\n\nPackage: base-files\nStatus: install ok installed\nArchitecture: amd64\nVersion: 12.4\n";
        let v = parse_status(text);
        assert_eq!(
            v,
            [
                Installed {
                    name: "base-files".into(),
                    version: "12.4".into(),
                    arch: "amd64".into()
                },
                Installed {
                    name: "less".into(),
                    version: "590-2.1".into(),
                    arch: "amd64".into()
                },
            ]
        );
    }
}
