//! Plain-text tables for the simulate report: fixed ASCII borders so the output reads the same in a
//! terminal, a CI log or a pasted issue.

use comfy_table::{ContentArrangement, Table, presets};

/// A table with a header row.
pub fn table<H: ToString>(headers: impl IntoIterator<Item = H>) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::ASCII_MARKDOWN)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(headers.into_iter().map(|h| h.to_string()).collect::<Vec<_>>());
    t
}

/// A section heading.
pub fn heading(title: &str) -> String {
    format!("\n== {title} {}\n", "=".repeat(78usize.saturating_sub(title.len() + 4)))
}
