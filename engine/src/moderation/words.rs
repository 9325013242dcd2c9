//! Blocked words: whole-word, case-insensitive matching that sees through Unicode's many ways of
//! writing the same word.
//!
//! Both the blocked entries and every message go through [`normalize`]: compatibility
//! normalisation (NFKC, so fullwidth `ｂａｄ`, ligatures and composed or decomposed accents read
//! alike), then Unicode lowercasing. Words are Unicode word segments (UAX #29), so a word is
//! whole in any script: `bad` is not found in `badge`, and an entry of several words (a phrase,
//! or ideographs, which UAX #29 splits one by one) matches the same run of words in a message.
//! Accents are kept: `pêcher` and `pécher` are different words.
//!
//! The list is compiled once per change: an Aho-Corasick automaton of every entry's first word
//! finds in one pass over the normalised message whether any entry could be there at all (the
//! common case is no), and only then is the message cut into words and each looked up in a map
//! from first word to entries. Checking a message so costs one normalisation and one linear scan,
//! whatever the number of entries; ASCII text (already in NFKC) is only lowercased.

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, AhoCorasickKind};
use unicode_normalization::UnicodeNormalization;
use unicode_segmentation::UnicodeSegmentation;

/// The form both sides of a comparison take: NFKC, then lowercase.
pub fn normalize(text: &str) -> String {
    if text.is_ascii() {
        // ASCII is its own NFKC form, and its lowercase is ASCII's.
        return text.to_ascii_lowercase();
    }
    let composed: String = text.nfkc().collect();
    composed.to_lowercase()
}

/// The normalised words of `text`, in order.
pub(crate) fn tokens(text: &str) -> Vec<String> {
    normalize(text).unicode_words().map(str::to_owned).collect()
}

/// A stream's blocked words, compiled for matching.
#[derive(Debug, Clone, Default)]
pub struct BlockedWords {
    /// First word of an entry → the words that must follow it (empty for one-word entries).
    by_first: HashMap<String, Vec<Vec<String>>>,
    /// Finds any first word as a substring: no hit, no match. `None` without entries, or if the
    /// automaton could not be built (then every message is cut into words).
    firsts: Option<AhoCorasick>,
}

impl BlockedWords {
    /// Compiles `entries` (as [`super::SettingsPatch`] checked them; entries without a word are
    /// ignored).
    pub fn new<S: AsRef<str>>(entries: &[S]) -> Self {
        let mut by_first: HashMap<String, Vec<Vec<String>>> = HashMap::new();
        for entry in entries {
            let mut words = tokens(entry.as_ref()).into_iter();
            if let Some(first) = words.next() {
                by_first.entry(first).or_default().push(words.collect());
            }
        }
        let firsts = if by_first.is_empty() {
            None
        } else {
            AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .kind(Some(AhoCorasickKind::DFA))
                .build(by_first.keys())
                .ok()
        };
        Self { by_first, firsts }
    }

    /// No entry: every message passes without being looked at.
    pub fn is_empty(&self) -> bool {
        self.by_first.is_empty()
    }

    /// Whether `text` holds a blocked entry as whole words.
    pub fn matches(&self, text: &str) -> bool {
        if self.is_empty() {
            return false;
        }
        // ASCII text is scanned as sent (the automaton ignores ASCII case), so the common
        // message that holds no entry is not even copied.
        let ascii = text.is_ascii();
        if ascii
            && self
                .firsts
                .as_ref()
                .is_some_and(|firsts| !firsts.is_match(text))
        {
            return false;
        }
        let normalized = normalize(text);
        if !ascii
            && self
                .firsts
                .as_ref()
                .is_some_and(|firsts| !firsts.is_match(&normalized))
        {
            return false;
        }
        let words: Vec<&str> = normalized.unicode_words().collect();
        words.iter().enumerate().any(|(i, word)| {
            self.by_first.get(*word).is_some_and(|rests| {
                rests.iter().any(|rest| {
                    let after = &words[i + 1..];
                    after.len() >= rest.len() && rest.iter().zip(after).all(|(a, b)| a == b)
                })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(entries: &[&str]) -> BlockedWords {
        BlockedWords::new(entries)
    }

    #[test]
    fn a_whole_word_matches_in_any_case_and_punctuation() {
        let words = blocked(&["scam"]);
        assert!(words.matches("this is a SCAM!"));
        assert!(words.matches("Scam."));
        assert!(words.matches("(scam)"));
        assert!(!words.matches("scampi for dinner"));
        assert!(!words.matches("no problem here"));
    }

    #[test]
    fn part_of_a_longer_word_is_not_a_match() {
        let words = blocked(&["ass"]);
        assert!(!words.matches("a classic class assignment"));
        assert!(words.matches("you ass"));
    }

    #[test]
    fn fullwidth_and_ligature_forms_read_as_the_plain_word() {
        let words = blocked(&["fake", "scam"]);
        assert!(words.matches("ｆａｋｅ watches"));
        assert!(words.matches("what a ＳＣＡＭ"));
        // U+FB01 is the "fi" ligature.
        assert!(blocked(&["fine"]).matches("all \u{FB01}ne"));
    }

    #[test]
    fn composed_and_decomposed_accents_match_each_other_but_other_accents_do_not() {
        let words = blocked(&["pécher"]);
        assert!(words.matches("PÉCHER"));
        assert!(words.matches("pe\u{301}cher"));
        assert!(!words.matches("pêcher"));
        assert!(!words.matches("pecher"));
    }

    #[test]
    fn words_in_cyrillic_greek_german_and_arabic_scripts_match_whole() {
        assert!(blocked(&["дурак"]).matches("ты ДУРАК!"));
        assert!(!blocked(&["дурак"]).matches("дураки"));
        assert!(blocked(&["σοφός"]).matches("ΣΟΦΌΣ άνθρωπος"));
        assert!(blocked(&["straße"]).matches("Die STRAßE ist lang"));
        assert!(blocked(&["غبي"]).matches("انت غبي جدا"));
        assert!(!blocked(&["غبي"]).matches("انت غبيون"));
    }

    #[test]
    fn ideographs_and_phrases_match_as_runs_of_words() {
        // UAX #29 splits Han ideographs one by one; an entry of two matches the same two in a
        // row, not either alone.
        let words = blocked(&["詐欺"]);
        assert!(words.matches("これは詐欺です"));
        assert!(!words.matches("詐 and 欺 apart"));
        let phrase = blocked(&["free money"]);
        assert!(phrase.matches("get FREE   money now"));
        assert!(!phrase.matches("free shipping, money back"));
    }

    #[test]
    fn any_entry_of_a_long_list_is_found_and_nothing_else() {
        let entries: Vec<String> = (0..1_000).map(|i| format!("word{i}")).collect();
        let words = BlockedWords::new(&entries);
        assert!(words.matches("so WORD999 it is"));
        assert!(words.matches("word0"));
        assert!(!words.matches("word1000 and word99x and sword5"));
    }

    #[test]
    fn an_empty_list_matches_nothing() {
        assert!(!BlockedWords::default().matches("anything at all"));
        assert!(BlockedWords::new::<&str>(&[]).is_empty());
    }
}
