//! Lexicon sentiment in [-1, 1] for English and Vietnamese comments.
//!
//! Each lexicon term (a word or phrase, longest match first) has a valence
//! in [-1, 1]. A term is negated when a negator ("not", "never", "không",
//! "chưa", ...) is one of the two words before it in the same clause; a
//! negated term counts three quarters of its valence the other way, the
//! damping VADER uses, so "not bad" is mildly positive. The sentiment of a
//! comment is the mean valence of its terms, 0 when it has none.

use std::sync::LazyLock;

use super::{PhraseIndex, normalize, phrase_words, words};

const NEGATION_FACTOR: f64 = -0.75;
/// How many words before a term a negator may stand.
const NEGATION_REACH: usize = 2;

const NEGATORS: &[&str] = &[
    "not",
    "no",
    "never",
    "without",
    "hardly",
    "cannot",
    "can't",
    "cant",
    "don't",
    "dont",
    "doesn't",
    "doesnt",
    "didn't",
    "didnt",
    "isn't",
    "isnt",
    "aren't",
    "wasn't",
    "weren't",
    "won't",
    "wouldn't",
    "couldn't",
    "shouldn't",
    "haven't",
    "hasn't",
    "không",
    "chẳng",
    "chả",
    "chưa",
    "đừng",
    "ko",
    "k",
];

const LEXICON: &[(&str, f64)] = &[
    // English, positive
    ("good", 0.75),
    ("great", 1.0),
    ("excellent", 1.0),
    ("amazing", 1.0),
    ("awesome", 1.0),
    ("fantastic", 1.0),
    ("wonderful", 1.0),
    ("perfect", 1.0),
    ("love", 1.0),
    ("loved", 1.0),
    ("best", 1.0),
    ("better", 0.5),
    ("nice", 0.75),
    ("helpful", 0.75),
    ("useful", 0.75),
    ("easy", 0.75),
    ("easy to use", 0.75),
    ("intuitive", 0.75),
    ("fast", 0.75),
    ("quick", 0.75),
    ("smooth", 0.75),
    ("friendly", 0.75),
    ("responsive", 0.75),
    ("reliable", 0.75),
    ("stable", 0.5),
    ("happy", 0.75),
    ("satisfied", 0.75),
    ("pleased", 0.75),
    ("recommend", 0.75),
    ("impressive", 0.75),
    ("efficient", 0.75),
    ("valuable", 0.75),
    ("worth", 0.5),
    ("thanks", 0.5),
    ("thank you", 0.5),
    // English, negative
    ("bad", -0.75),
    ("poor", -0.75),
    ("terrible", -1.0),
    ("awful", -1.0),
    ("horrible", -1.0),
    ("worst", -1.0),
    ("hate", -1.0),
    ("useless", -1.0),
    ("slow", -0.75),
    ("expensive", -0.5),
    ("overpriced", -0.75),
    ("bug", -0.5),
    ("bugs", -0.5),
    ("buggy", -0.75),
    ("crash", -0.75),
    ("crashes", -0.75),
    ("crashing", -0.75),
    ("broken", -0.75),
    ("confusing", -0.5),
    ("complicated", -0.5),
    ("difficult", -0.5),
    ("hard to use", -0.75),
    ("frustrating", -0.75),
    ("frustrated", -0.75),
    ("annoying", -0.75),
    ("disappointed", -0.75),
    ("disappointing", -0.75),
    ("unhappy", -0.75),
    ("unreliable", -0.75),
    ("unresponsive", -0.75),
    ("rude", -0.75),
    ("problem", -0.5),
    ("problems", -0.5),
    ("issue", -0.5),
    ("issues", -0.5),
    ("error", -0.5),
    ("errors", -0.5),
    ("fail", -0.75),
    ("fails", -0.75),
    ("failed", -0.75),
    ("lag", -0.5),
    ("laggy", -0.75),
    // Vietnamese, positive
    ("tốt", 0.75),
    ("tuyệt", 1.0),
    ("tuyệt vời", 1.0),
    ("xuất sắc", 1.0),
    ("hoàn hảo", 1.0),
    ("hài lòng", 0.75),
    ("thích", 0.75),
    ("yêu thích", 1.0),
    ("nhanh", 0.75),
    ("dễ", 0.5),
    ("dễ sử dụng", 0.75),
    ("dễ dùng", 0.75),
    ("hữu ích", 0.75),
    ("hợp lý", 0.5),
    ("thân thiện", 0.75),
    ("chuyên nghiệp", 0.75),
    ("nhiệt tình", 0.75),
    ("tiện lợi", 0.75),
    ("ổn định", 0.5),
    ("ổn", 0.25),
    ("đáng tiền", 0.75),
    ("cảm ơn", 0.5),
    // Vietnamese, negative
    ("tệ", -1.0),
    ("kém", -0.75),
    ("xấu", -0.75),
    ("chậm", -0.75),
    ("lỗi", -0.5),
    ("đắt", -0.5),
    ("khó", -0.5),
    ("khó sử dụng", -0.75),
    ("khó dùng", -0.75),
    ("thất vọng", -0.75),
    ("phức tạp", -0.5),
    ("bực", -0.75),
    ("bực mình", -0.75),
    ("lâu", -0.5),
    ("hỏng", -0.75),
    ("sự cố", -0.5),
    ("rắc rối", -0.5),
    ("vấn đề", -0.5),
];

enum Term {
    Negator,
    Valence(f64),
}

static TERMS: LazyLock<PhraseIndex<f64>> = LazyLock::new(|| {
    let mut index = PhraseIndex::default();
    for (term, valence) in LEXICON {
        index.insert(
            phrase_words(term).expect("lexicon terms have words"),
            *valence,
        );
    }
    index
});

static NEGATOR_WORDS: LazyLock<PhraseIndex<()>> = LazyLock::new(|| {
    let mut index = PhraseIndex::default();
    for negator in NEGATORS {
        index.insert(phrase_words(negator).expect("negators have words"), ());
    }
    index
});

/// The sentiment of `text` in [-1, 1]; 0 when no lexicon term occurs.
pub fn sentiment(text: &str) -> f64 {
    let normalized = normalize(text);
    let words = words(&normalized);
    // (position, term) in order; a phrase's words are consumed by it.
    let mut terms: Vec<(usize, usize, Term)> = Vec::new();
    let mut at = 0;
    while at < words.len() {
        if let Some((len, &valence)) = TERMS.matches_at(&words, at).next() {
            terms.push((at, words[at].clause, Term::Valence(valence)));
            at += len;
        } else if let Some((len, _)) = NEGATOR_WORDS.matches_at(&words, at).next() {
            terms.push((at, words[at].clause, Term::Negator));
            at += len;
        } else {
            at += 1;
        }
    }
    let mut total = 0.0;
    let mut count = 0;
    for (i, (position, clause, term)) in terms.iter().enumerate() {
        let Term::Valence(valence) = term else {
            continue;
        };
        let negated = terms[..i].iter().rev().any(|(p, c, t)| {
            matches!(t, Term::Negator) && c == clause && position - p <= NEGATION_REACH
        });
        total += if negated {
            valence * NEGATION_FACTOR
        } else {
            *valence
        };
        count += 1;
    }
    if count == 0 {
        0.0
    } else {
        total / count as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clear_sentences_get_the_expected_sign() {
        assert!(sentiment("Great support team, very fast response") > 0.5);
        assert!(sentiment("The app is slow and keeps crashing") < -0.5);
        assert!(sentiment("Dịch vụ hỗ trợ rất tốt, phản hồi nhanh") > 0.5);
        assert!(sentiment("Ứng dụng chậm và hay bị lỗi") < -0.5);
    }

    #[test]
    fn negation_flips_and_damps_the_sign() {
        assert_eq!(sentiment("good"), 0.75);
        assert_eq!(sentiment("not good"), 0.75 * NEGATION_FACTOR);
        assert_eq!(sentiment("Not very good"), 0.75 * NEGATION_FACTOR);
        assert_eq!(sentiment("not bad at all"), -0.75 * NEGATION_FACTOR);
        assert_eq!(
            sentiment("Don’t like the new look, it isn't good"),
            0.75 * NEGATION_FACTOR
        );
        assert_eq!(sentiment("tốt"), 0.75);
        assert_eq!(sentiment("Hỗ trợ không tốt"), 0.75 * NEGATION_FACTOR);
        assert_eq!(sentiment("không hài lòng"), 0.75 * NEGATION_FACTOR);
        assert_eq!(sentiment("chưa tốt lắm"), 0.75 * NEGATION_FACTOR);
        assert_eq!(sentiment("không có lỗi"), -0.5 * NEGATION_FACTOR);
    }

    #[test]
    fn negation_stops_at_the_clause_and_after_two_words() {
        // "not" is three words before "problem": it negates "solve", not it.
        assert_eq!(sentiment("did not solve my problem"), -0.5);
        assert_eq!(sentiment("not now, good"), 0.75);
    }

    #[test]
    fn the_sentiment_is_the_mean_valence_of_the_terms() {
        // "tốt" is negated, "lâu" (-0.5) is not: the comma ends the negation.
        let s = sentiment("Hỗ trợ không tốt, phải chờ rất lâu");
        assert_eq!(s, (0.75 * NEGATION_FACTOR - 0.5) / 2.0);
        assert_eq!(sentiment("No comment"), 0.0);
        assert_eq!(sentiment(""), 0.0);
        for text in [
            "great great great",
            "terrible, awful, worst",
            "not not good",
        ] {
            assert!((-1.0..=1.0).contains(&sentiment(text)), "{text}");
        }
    }
}
