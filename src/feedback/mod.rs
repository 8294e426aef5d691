//! Reading free-text survey comments (spec 4.6): the themes a comment
//! mentions and its sentiment. Both work on the same word sequence: the
//! text is NFC-normalised and lowercased, then split into words at Unicode
//! (UAX #29) word boundaries, so a keyword matches whole words only (`lag`
//! is not in `flagship`) and a multi-word keyword (`hỗ trợ`, `easy to use`)
//! matches the same words in a row.

mod sentiment;
mod themes;

pub use sentiment::sentiment;
pub use themes::{Taxonomy, TaxonomyError};

use std::collections::HashMap;

use datafusion::common::hash_utils::RandomState;

use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};
use unicode_segmentation::UnicodeSegmentation;

/// A word of a comment (a slice of its normalised text, see [`words`]) and
/// the clause it belongs to; punctuation such as `,` or `.` starts a new
/// clause, which bounds phrases and negation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Word<'a> {
    text: &'a str,
    clause: usize,
}

/// NFC, lowercase, and typographic apostrophes as `'` so that "don’t" and
/// "don't" are the same word. Most comments are ASCII (already NFC, no
/// typographic apostrophes) or already NFC: those skip the steps that
/// cannot change them, which took half of the time of `comment_themes`.
fn normalize(text: &str) -> String {
    if text.is_ascii() {
        return text.to_ascii_lowercase();
    }
    let lower = match is_nfc_quick(text.chars()) {
        IsNormalized::Yes => text.to_lowercase(),
        IsNormalized::No | IsNormalized::Maybe => text.nfc().collect::<String>().to_lowercase(),
    };
    const APOSTROPHES: [char; 3] = ['\u{2019}', '\u{2018}', '\u{02bc}'];
    if lower.contains(APOSTROPHES) {
        lower.replace(APOSTROPHES, "'")
    } else {
        lower
    }
}

/// The words of `normalized` (a comment after [`normalize`]), borrowed
/// from it: no allocation per word, where a string each took about a
/// fifth of the comment functions' time.
fn words(normalized: &str) -> Vec<Word<'_>> {
    let mut clause = 0;
    let mut out = Vec::new();
    for piece in normalized.split_word_bounds() {
        if piece.chars().any(char::is_alphanumeric) {
            for (i, part) in clauses_joined_in_a_word(piece).enumerate() {
                clause += usize::from(i > 0);
                out.push(Word {
                    text: without_clitic_s(part),
                    clause,
                });
            }
        } else if piece.chars().any(is_clause_break) {
            clause += 1;
        }
    }
    out
}

/// The parts of a UAX #29 word split at each `.` or `:` between two
/// letters. UAX #29 keeps `app.support` and `note:slow` one word (for
/// abbreviations and Swedish), but in a comment that is a sentence or
/// clause that ends without its space (`Great app.Support was slow`).
/// Between digits (`3.5`) the word stays whole.
fn clauses_joined_in_a_word(word: &str) -> impl Iterator<Item = &str> {
    let chars: Vec<(usize, char)> = match word.contains(['.', ':']) {
        true => word.char_indices().collect(),
        false => Vec::new(),
    };
    let mut cuts: Vec<usize> = chars
        .windows(3)
        .filter(|w| matches!(w[1].1, '.' | ':') && w[0].1.is_alphabetic() && w[2].1.is_alphabetic())
        .map(|w| w[1].0)
        .collect();
    cuts.push(word.len());
    let mut start = 0;
    cuts.into_iter().map(move |cut| {
        let part = &word[start..cut];
        start = cut + 1; // `.` and `:` are one byte
        part
    })
}

/// The word without an English `'s` (possessive, or "is"/"has"): UAX #29
/// keeps `support's` one word, which would hide the keyword `support`.
/// Only `'s` goes: `n't` makes negators (`don't`, `can't`), and `'ll`,
/// `'re`, `'ve`, `'d` stay as they are. Keywords and lexicon terms are read
/// by the same rule, so they match either way.
fn without_clitic_s(word: &str) -> &str {
    match word.strip_suffix("'s") {
        Some(stem) if !stem.is_empty() => stem,
        _ => word,
    }
}

fn is_clause_break(c: char) -> bool {
    matches!(
        c,
        '.' | ',' | ';' | ':' | '!' | '?' | '…' | '(' | ')' | '"' | '“' | '”' | '\n'
    )
}

/// The words of a keyword or phrase, or None when it has none.
fn phrase_words(phrase: &str) -> Option<Vec<String>> {
    let normalized = normalize(phrase);
    let w: Vec<String> = words(&normalized)
        .into_iter()
        .map(|w| w.text.to_string())
        .collect();
    (!w.is_empty()).then_some(w)
}

/// Phrases indexed by their first word, each with a payload; finds the
/// longest phrase that starts at a given word.
#[derive(Debug, Clone, Default, PartialEq)]
struct PhraseIndex<T> {
    /// Looked up once per word of every comment: hashed by foldhash (the
    /// engine's own hasher) rather than the standard library's SipHash.
    by_first_word: HashMap<String, Vec<(Vec<String>, T)>, RandomState>,
}

impl<T: Clone> PhraseIndex<T> {
    fn insert(&mut self, phrase: Vec<String>, payload: T) {
        let entries = self.by_first_word.entry(phrase[0].clone()).or_default();
        entries.push((phrase, payload));
        // Longest first, so the first hit at a position is the longest match.
        entries.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    }

    /// Every phrase that matches at `at` (whole words, within one clause).
    fn matches_at<'a>(
        &'a self,
        words: &'a [Word<'a>],
        at: usize,
    ) -> impl Iterator<Item = (usize, &'a T)> + 'a {
        let clause = words[at].clause;
        self.by_first_word
            .get(words[at].text)
            .into_iter()
            .flatten()
            .filter(move |(phrase, _)| {
                let end = at + phrase.len();
                end <= words.len()
                    && words[at..end]
                        .iter()
                        .zip(phrase)
                        .all(|(w, p)| w.clause == clause && w.text == p)
            })
            .map(|(phrase, payload)| (phrase.len(), payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &str) -> Vec<String> {
        words(&normalize(s))
            .into_iter()
            .map(|w| w.text.to_string())
            .collect()
    }

    #[test]
    fn words_are_nfc_lowercase_and_split_at_word_boundaries() {
        assert_eq!(
            texts("Great APP, don’t lag!"),
            ["great", "app", "don't", "lag"]
        );
        let nfd = "Hỗ trợ".nfd().collect::<String>();
        assert_ne!(nfd, "Hỗ trợ");
        assert_eq!(texts(&nfd), ["hỗ", "trợ"]);
    }

    #[test]
    fn the_shortcuts_normalise_as_the_full_steps_do() {
        let full = |t: &str| {
            t.nfc()
                .collect::<String>()
                .to_lowercase()
                .replace(['\u{2019}', '\u{2018}', '\u{02bc}'], "'")
        };
        let nfd = "Hỗ TRỢ rất Tốt".nfd().collect::<String>();
        for text in [
            "Great APP, Don't LAG!",
            "Hỗ TRỢ rất Tốt",
            nfd.as_str(),
            "DON\u{2019}T like it",
            "Ωmega \u{02bc}quoted\u{2018}",
            "e\u{301}te\u{301} ÉTÉ",
            "",
        ] {
            assert_eq!(normalize(text), full(text), "{text:?}");
        }
    }

    #[test]
    fn a_stop_or_colon_between_letters_ends_a_clause() {
        let text = normalize("Great app.Support: slow, v3.5 e.g");
        let w = words(&text);
        let got: Vec<(&str, usize)> = w.iter().map(|w| (w.text, w.clause)).collect();
        assert_eq!(
            got,
            [
                ("great", 0),
                ("app", 0),
                ("support", 1),
                ("slow", 2),
                ("v3.5", 3),
                ("e", 3),
                ("g", 4)
            ]
        );
        assert_eq!(texts("lỗi:hỗ trợ"), ["lỗi", "hỗ", "trợ"]);
    }

    #[test]
    fn an_apostrophe_s_leaves_the_word_and_other_clitics_stay() {
        assert_eq!(
            texts("Support\u{2019}s reply: it's slow, don't ask, we'll see, 's"),
            [
                "support", "reply", "it", "slow", "don't", "ask", "we'll", "see", "s"
            ]
        );
    }

    #[test]
    fn punctuation_starts_a_new_clause() {
        let text = normalize("not bad. good");
        let w = words(&text);
        assert_eq!(w[1].clause, 0);
        assert_eq!(w[2].clause, 1);
    }
}
