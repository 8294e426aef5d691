//! Theme taxonomies: theme -> keywords, from `[feedback.themes]` or built in.

use std::collections::BTreeMap;

use super::{PhraseIndex, normalize, phrase_words, words};

/// The built-in English + Vietnamese taxonomy, used when the job file has no
/// `[feedback.themes]`. Vietnamese keywords list both tone-mark placements
/// where they are common (`hóa`/`hoá`): NFC does not unify them.
const BUILT_IN: &[(&str, &[&str])] = &[
    (
        "billing",
        &[
            "billing",
            "bill",
            "invoice",
            "invoices",
            "payment",
            "payments",
            "charge",
            "charged",
            "refund",
            "refunds",
            "subscription",
            "thanh toán",
            "hóa đơn",
            "hoá đơn",
            "hoàn tiền",
            "gia hạn",
        ],
    ),
    (
        "bugs",
        &[
            "bug",
            "bugs",
            "buggy",
            "crash",
            "crashes",
            "crashed",
            "crashing",
            "error",
            "errors",
            "broken",
            "glitch",
            "glitches",
            "lỗi",
            "sự cố",
            "hỏng",
        ],
    ),
    (
        "features",
        &[
            "feature",
            "features",
            "functionality",
            "integration",
            "integrations",
            "report",
            "reports",
            "reporting",
            "dashboard",
            "dashboards",
            "tính năng",
            "chức năng",
            "báo cáo",
            "tích hợp",
        ],
    ),
    (
        "onboarding",
        &[
            "onboarding",
            "setup",
            "set up",
            "getting started",
            "training",
            "tutorial",
            "tutorials",
            "documentation",
            "docs",
            "hướng dẫn",
            "cài đặt",
            "đào tạo",
            "làm quen",
        ],
    ),
    (
        "performance",
        &[
            "slow",
            "slowness",
            "lag",
            "laggy",
            "lagging",
            "performance",
            "speed",
            "loading",
            "load time",
            "timeout",
            "timeouts",
            "freeze",
            "freezes",
            "chậm",
            "tốc độ",
            "giật",
            "treo",
            "tải lâu",
        ],
    ),
    (
        "pricing",
        &[
            "price",
            "prices",
            "pricing",
            "expensive",
            "cheap",
            "overpriced",
            "cost",
            "costs",
            "value for money",
            "giá",
            "đắt",
            "rẻ",
            "chi phí",
        ],
    ),
    (
        "reliability",
        &[
            "downtime",
            "outage",
            "outages",
            "unavailable",
            "unreliable",
            "mất kết nối",
            "gián đoạn",
            "không ổn định",
        ],
    ),
    (
        "support",
        &[
            "support",
            "customer service",
            "help desk",
            "helpdesk",
            "agent",
            "agents",
            "response time",
            "hỗ trợ",
            "chăm sóc khách hàng",
            "nhân viên",
            "tư vấn",
        ],
    ),
    (
        "usability",
        &[
            "easy to use",
            "hard to use",
            "difficult to use",
            "user friendly",
            "user-friendly",
            "intuitive",
            "confusing",
            "interface",
            "ui",
            "ux",
            "dễ sử dụng",
            "dễ dùng",
            "khó sử dụng",
            "khó dùng",
            "giao diện",
            "rối",
        ],
    ),
];

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TaxonomyError {
    #[error("feedback.themes: theme {0:?} has no keywords")]
    NoKeywords(String),
    #[error("feedback.themes: keyword {keyword:?} of theme {theme:?} has no words")]
    EmptyKeyword { theme: String, keyword: String },
    #[error("feedback.themes: a theme name is empty")]
    EmptyTheme,
}

/// Themes and their keywords, with an index for whole-word matching.
#[derive(Debug, Clone, PartialEq)]
pub struct Taxonomy {
    /// (theme, keywords as configured), sorted by theme.
    themes: Vec<(String, Vec<String>)>,
    index: PhraseIndex<usize>,
}

impl Taxonomy {
    pub fn new(themes: &BTreeMap<String, Vec<String>>) -> Result<Self, TaxonomyError> {
        let mut index = PhraseIndex::default();
        let mut listed = Vec::with_capacity(themes.len());
        for (position, (theme, keywords)) in themes.iter().enumerate() {
            if theme.trim().is_empty() {
                return Err(TaxonomyError::EmptyTheme);
            }
            if keywords.is_empty() {
                return Err(TaxonomyError::NoKeywords(theme.clone()));
            }
            for keyword in keywords {
                let phrase = phrase_words(keyword).ok_or_else(|| TaxonomyError::EmptyKeyword {
                    theme: theme.clone(),
                    keyword: keyword.clone(),
                })?;
                index.insert(phrase, position);
            }
            listed.push((theme.clone(), keywords.clone()));
        }
        Ok(Self {
            themes: listed,
            index,
        })
    }

    pub fn built_in() -> Self {
        let themes = BUILT_IN
            .iter()
            .map(|(theme, keywords)| {
                let keywords = keywords.iter().map(|k| k.to_string()).collect();
                (theme.to_string(), keywords)
            })
            .collect();
        Self::new(&themes).expect("the built-in taxonomy is valid")
    }

    /// The configured taxonomy, or the built-in one when none is configured.
    pub fn from_config(
        themes: Option<&BTreeMap<String, Vec<String>>>,
    ) -> Result<Self, TaxonomyError> {
        // An empty `[feedback.themes]` configures no theme: the spec's
        // "with none configured" (4.6), so the built-in taxonomy.
        match themes {
            Some(themes) if !themes.is_empty() => Self::new(themes),
            _ => Ok(Self::built_in()),
        }
    }

    /// (theme, keyword) pairs, sorted by theme.
    pub fn keywords(&self) -> impl Iterator<Item = (&str, &str)> {
        self.themes
            .iter()
            .flat_map(|(t, ks)| ks.iter().map(move |k| (t.as_str(), k.as_str())))
    }

    pub fn theme_names(&self) -> impl Iterator<Item = &str> {
        self.themes.iter().map(|(t, _)| t.as_str())
    }

    /// The themes `text` mentions, sorted and without repeats.
    pub fn themes_of(&self, text: &str) -> Vec<&str> {
        let normalized = normalize(text);
        let words = words(&normalized);
        let mut found = vec![false; self.themes.len()];
        for at in 0..words.len() {
            for (_, &theme) in self.index.matches_at(&words, at) {
                found[theme] = true;
            }
        }
        found
            .iter()
            .zip(&self.themes)
            .filter(|(hit, _)| **hit)
            .map(|(_, (theme, _))| theme.as_str())
            .collect()
    }
}

impl std::hash::Hash for Taxonomy {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.themes.hash(state);
    }
}

impl Eq for Taxonomy {}

#[cfg(test)]
mod tests {
    use unicode_normalization::UnicodeNormalization;

    use super::*;

    fn taxonomy(entries: &[(&str, &[&str])]) -> Taxonomy {
        let map = entries
            .iter()
            .map(|(t, ks)| (t.to_string(), ks.iter().map(|k| k.to_string()).collect()))
            .collect();
        Taxonomy::new(&map).unwrap()
    }

    #[test]
    fn keywords_match_whole_words_only() {
        let t = taxonomy(&[("performance", &["lag"]), ("pricing", &["price"])]);
        assert!(t.themes_of("Our flagship plan").is_empty());
        assert!(t.themes_of("priceless").is_empty());
        assert_eq!(t.themes_of("Some lag when saving"), ["performance"]);
        assert_eq!(t.themes_of("lag"), ["performance"]);
        assert_eq!(t.themes_of("(lag)"), ["performance"]);
        assert_eq!(t.themes_of("Nice app.Lag on save"), ["performance"]);
        assert_eq!(t.themes_of("price:lag"), ["performance", "pricing"]);
        assert_eq!(t.themes_of("The price's fine"), ["pricing"]);
        assert_eq!(t.themes_of("The PRICE\u{2019}S fine"), ["pricing"]);
    }

    #[test]
    fn an_empty_themes_table_means_the_built_in_taxonomy() {
        let built_in: Vec<_> = Taxonomy::built_in()
            .theme_names()
            .map(str::to_string)
            .collect();
        for configured in [None, Some(&BTreeMap::new())] {
            let t = Taxonomy::from_config(configured).unwrap();
            let names: Vec<_> = t.theme_names().map(str::to_string).collect();
            assert_eq!(names, built_in);
        }
        let one = BTreeMap::from([("speed".to_string(), vec!["slow".to_string()])]);
        let names: Vec<_> = Taxonomy::from_config(Some(&one))
            .unwrap()
            .theme_names()
            .map(str::to_string)
            .collect();
        assert_eq!(names, ["speed"]);
    }

    #[test]
    fn phrases_match_consecutive_words_in_one_clause() {
        let t = taxonomy(&[("usability", &["easy to use"]), ("support", &["hỗ trợ"])]);
        assert_eq!(t.themes_of("Really EASY  to\tuse!"), ["usability"]);
        assert!(t.themes_of("easy, to use").is_empty());
        assert!(t.themes_of("easy to learn and use").is_empty());
        assert_eq!(t.themes_of("Dịch vụ hỗ trợ rất tốt"), ["support"]);
        assert!(t.themes_of("hỗ, trợ").is_empty());
    }

    #[test]
    fn vietnamese_matches_composed_and_decomposed_text_alike() {
        let t = Taxonomy::built_in();
        let composed = "Ứng dụng CHẬM và hay bị Lỗi, giá quá đắt";
        let decomposed: String = composed.nfd().collect();
        assert_ne!(composed, decomposed);
        let expected = ["bugs", "performance", "pricing"];
        assert_eq!(t.themes_of(composed), expected);
        assert_eq!(t.themes_of(&decomposed), expected);
        // Keywords given decomposed in the job file match composed text too.
        let nfd_keyword: String = "lỗi".nfd().collect();
        let configured = taxonomy(&[("bugs", &[nfd_keyword.as_str()])]);
        assert_eq!(configured.themes_of("có lỗi"), ["bugs"]);
    }

    #[test]
    fn a_comment_can_have_several_themes_each_once() {
        let t = Taxonomy::built_in();
        assert_eq!(
            t.themes_of("Support was slow, slow, slow and the invoice was wrong"),
            ["billing", "performance", "support"]
        );
        assert!(t.themes_of("Thanks!").is_empty());
    }

    #[test]
    fn bad_taxonomies_are_rejected() {
        let mut map = BTreeMap::new();
        map.insert("pricing".to_string(), vec![]);
        assert_eq!(
            Taxonomy::new(&map),
            Err(TaxonomyError::NoKeywords("pricing".into()))
        );
        map.insert("pricing".to_string(), vec!["...".into()]);
        assert!(matches!(
            Taxonomy::new(&map),
            Err(TaxonomyError::EmptyKeyword { .. })
        ));
    }
}
