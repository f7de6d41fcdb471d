//! The strategy parser never panics, and `Display` round-trips.

use placement_core::strategy::{MAX_BASE, MAX_RULES, MAX_WEIGHT, Rule, Strategy};
use proptest::prelude::*;
use proptest::strategy::Strategy as Generate;

fn arb_word() -> impl Generate<Value = String> {
    "[a-z]([a-z0-9.-]{0,7}[a-z0-9])?"
}

fn arb_strategy() -> impl Generate<Value = Strategy> {
    let rule = (0u32..100, prop::collection::btree_map(arb_word(), arb_word(), 1..4));
    (prop::option::of(0u32..10), prop::collection::vec(rule, 1..5))
        .prop_filter("a positive weight", |(_, rules)| rules.iter().any(|(w, _)| *w > 0))
        .prop_map(|(base, rules)| Strategy {
            rules: rules
                .into_iter()
                .enumerate()
                .map(|(i, (weight, sel))| Rule {
                    base: if i == 0 { base } else { None },
                    weight,
                    node_selector: sel.into_iter().collect(),
                })
                .collect(),
        })
}

proptest! {
    #[test]
    fn never_panics(s in ".{0,80}") {
        let _ = s.parse::<Strategy>();
    }

    #[test]
    fn never_panics_on_grammar_like_input(s in "[a-zN=:;, 0-9-]{0,60}") {
        if let Ok(parsed) = s.parse::<Strategy>() {
            // Whatever parses, prints to something that parses to the same value.
            prop_assert_eq!(parsed.to_string().parse::<Strategy>().unwrap(), parsed);
        }
    }

    #[test]
    fn display_round_trips(s in arb_strategy()) {
        let text = s.to_string();
        prop_assert_eq!(text.parse::<Strategy>().unwrap(), s);
    }
}

proptest! {
    /// A strategy parses exactly when it is within the limits (rules, weight, base).
    #[test]
    fn parses_exactly_within_the_limits(
        weights in prop::collection::vec(1u32..20_000, 1..20),
        base in prop::option::of(0u32..20_000),
    ) {
        let rules: Vec<String> = weights.iter().enumerate().map(|(i, w)| format!("weight={w},nodeSelector=g:r{i}")).collect();
        let text = match base { Some(b) => format!("base={b},{}", rules.join(";")), None => rules.join(";") };
        let within = weights.len() <= MAX_RULES
            && weights.iter().all(|&w| w <= MAX_WEIGHT)
            && base.is_none_or(|b| b <= MAX_BASE);
        prop_assert_eq!(text.parse::<Strategy>().is_ok(), within, "{}", text);
    }
}
