//! docs/semantic-conventions.md lists every attribute of `attributes::ALL`,
//! generated from the code. Run with `MAPWATCH_BLESS=1` to rewrite the table
//! after changing an attribute.

use mapwatch_model::attributes::{ALL, is_resource_attribute};

const BEGIN: &str = "<!-- BEGIN GENERATED: attributes (model/tests/docs.rs) -->";
const END: &str = "<!-- END GENERATED: attributes -->";

fn table() -> String {
    let mut out = String::from(
        "| attribute | in | type | present | meaning | example |\n| --- | --- | --- | --- | --- | --- |\n",
    );
    for a in ALL {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | `{}` |\n",
            a.name,
            if is_resource_attribute(a.name) {
                "resource"
            } else {
                "record"
            },
            a.ty.name(),
            a.presence.name(),
            a.brief.replace('|', "\\|"),
            a.example.replace('|', "\\|")
        ));
    }
    out
}

#[test]
fn semantic_conventions_doc_matches_the_code() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/semantic-conventions.md"
    );
    let doc = std::fs::read_to_string(path).expect("docs/semantic-conventions.md exists");
    let start = doc.find(BEGIN).expect("doc has the BEGIN marker") + BEGIN.len();
    let end = doc.find(END).expect("doc has the END marker");
    let generated = format!("\n{}", table());
    if std::env::var_os("MAPWATCH_BLESS").is_some() {
        let updated = format!("{}{}{}", &doc[..start], generated, &doc[end..]);
        std::fs::write(path, updated).expect("rewrite doc");
        return;
    }
    let stale: Vec<&str> = generated
        .lines()
        .filter(|l| !doc[start..end].contains(l))
        .collect();
    assert!(
        doc[start..end] == generated,
        "docs/semantic-conventions.md is out of date (e.g. {:?}): run MAPWATCH_BLESS=1 cargo test -p mapwatch-model --test docs",
        stale.first()
    );
}
