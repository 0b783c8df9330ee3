//! `dohost new NAME`: writes a crate for one object class — the SDK dependency, the
//! release profile, the wasm target, an example object and its test on dohost-testing.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// The generated crate's files: (path in the crate, template).
const FILES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("new/Cargo.toml.tmpl")),
    (".cargo/config.toml", include_str!("new/config.toml.tmpl")),
    (".gitignore", include_str!("new/gitignore.tmpl")),
    ("src/lib.rs", include_str!("new/lib.rs.tmpl")),
    ("tests/object.rs", include_str!("new/test.rs.tmpl")),
    ("README.md", include_str!("new/README.md.tmpl")),
];

/// The checkout this dohost was built from: its `sdk` and `testing` crates are what the
/// generated crate depends on (by path) unless told otherwise.
fn built_from() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the host crate is in a folder of the checkout")
        .to_path_buf()
}

/// Writes the crate `name` into `dir` (default `./name`), which must not exist or be
/// empty; `dohost` is the checkout holding `sdk/` and `testing/`.
pub fn new(name: &str, dir: Option<&Path>, dohost: Option<&Path>) -> Result<()> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        bail!(
            "{name:?} is not a usable name: start with a letter, then letters, digits, '-' \
             or '_' (at most 64)"
        );
    }
    let dohost = dohost.map(Path::to_path_buf).unwrap_or_else(built_from);
    let dohost = dohost
        .canonicalize()
        .with_context(|| format!("{}: no such folder (--dohost-path)", dohost.display()))?;
    for part in ["sdk", "testing"] {
        if !dohost.join(part).join("Cargo.toml").exists() {
            bail!(
                "{} has no {part}/Cargo.toml: point --dohost-path at a dohost checkout",
                dohost.display()
            );
        }
    }
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() && dir.read_dir()?.next().is_some() {
        bail!("{} exists and is not empty", dir.display());
    }
    let dohost = dohost
        .to_str()
        .context("the dohost checkout's path is not UTF-8")?;
    for (path, template) in FILES {
        let text = fill(template, name, dohost);
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("a file in the crate"))?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let stem = name.replace('-', "_");
    println!(
        "created {dir} (binding {stem})\n  cd {dir}\n  cargo test-host      # its tests, on \
         the real host in-process\n  cargo build --release\n  dohost run \
         target/wasm32-wasip2/release/{stem}.wasm",
        dir = dir.display()
    );
    Ok(())
}

/// The template with the crate's names filled in: `{{crate}}` (as given), `{{stem}}` (the
/// component file's stem and so the binding: cargo writes `-` as `_`), `{{type}}` (the
/// object's type, in CamelCase) and `{{dohost}}` (the checkout).
fn fill(template: &str, name: &str, dohost: &str) -> String {
    let camel: String = name
        .split(['-', '_'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            let first = chars.next().expect("not empty").to_ascii_uppercase();
            std::iter::once(first).chain(chars).collect::<String>()
        })
        .collect();
    template
        .replace("{{crate}}", name)
        .replace("{{stem}}", &name.replace('-', "_"))
        .replace("{{type}}", &camel)
        .replace("{{dohost}}", dohost)
}

#[cfg(test)]
mod tests {
    use super::fill;

    #[test]
    fn names_fill_the_templates() {
        assert_eq!(
            fill(
                "{{crate}} {{stem}} {{type}} {{dohost}}",
                "todo-list_x",
                "/d"
            ),
            "todo-list_x todo_list_x TodoListX /d"
        );
    }
}
