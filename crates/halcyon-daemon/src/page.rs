//! `GET /`: the live status page (clstat as a web page). One HTML document with its style
//! and script inlined, all embedded in the binary (`include_str!`): no CDN, no other request
//! but the event stream (`GET /v1/events/stream`) it follows, so it works offline and behind
//! nothing but the daemon. The page renders the `status` and `record` messages of the stream;
//! its only writes are the answers to an event in ERROR (`POST /v1/events/ID/ANSWER`, buttons
//! shown to an admin token only: the stream's answer says the token's role, `x-halcyon-role`)
//! and its only other reads are `explain` (`GET /v1/explain/PACKAGE`) and availability
//! (`GET /v1/availability/PACKAGE`).

use std::sync::LazyLock;

const TEMPLATE: &str = include_str!("page/index.html");
const STYLE: &str = include_str!("page/style.css");
const SCRIPT: &str = include_str!("page/app.js");

/// The page, assembled once.
pub static PAGE: LazyLock<String> = LazyLock::new(|| {
    TEMPLATE
        .replacen("/*STYLE*/", STYLE, 1)
        .replacen("/*SCRIPT*/", SCRIPT, 1)
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_inlines_its_style_and_script_and_loads_nothing_else() {
        assert!(!PAGE.contains("/*STYLE*/") && !PAGE.contains("/*SCRIPT*/"));
        assert!(PAGE.contains("api('v1/events/stream'") && PAGE.contains("Last-Event-ID"));
        for external in ["http://", "https://", "src=", "<link"] {
            assert!(!PAGE.contains(external), "the page refers to {external}");
        }
        eprintln!("status page: {} bytes", PAGE.len());
    }
}
