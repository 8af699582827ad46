//! The README's lists match what the code registers: the "System tables" table names every
//! system table the database has, with the description the registry gives it (the same line
//! `obj_description` and `\dv+` show), and no table the database does not have.

use std::collections::BTreeSet;

/// `(name, description)` rows of the README's "System tables" section.
fn readme_system_tables() -> BTreeSet<(String, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .split("\n## System tables\n")
        .nth(1)
        .expect("README has a System tables section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim().trim_matches('|').split('|').collect();
            let [name, description] = cells.as_slice() else {
                return None;
            };
            let name = name.trim().strip_prefix('`')?.strip_suffix('`')?;
            Some((name.to_string(), description.trim().to_string()))
        })
        .collect()
}

#[test]
fn readme_lists_every_system_table() {
    let db = weir::database().build().expect("database");
    let registered: BTreeSet<(String, String)> = db
        .system_tables()
        .list()
        .into_iter()
        .map(|t| (t.name.to_string(), t.description.to_string()))
        .collect();
    let documented = readme_system_tables();
    assert!(!registered.is_empty(), "the registry lists system tables");
    let missing: Vec<_> = registered.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&registered).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "README's System tables section is out of date.\nregistered, not in README: {missing:?}\nin README, not registered: {stale:?}"
    );
}
