//! A lexicon sentiment model: VADER's published algorithm (Hutto & Gilbert, 2014) in our own
//! code, with its MIT-licensed lexicons as data files (`data/vader/`). Used to read how a
//! caller felt when the platform sends no verdict of its own. It is checked against golden
//! outputs of the reference implementation (`tests/data/vader_golden.json`), including
//! its quirks: the contrastive "but" rule works on the first equal score, and emphasis from
//! `!`/`?` is added to the sum before normalising.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::event::Sentiment;

const B_INCR: f64 = 0.293;
const B_DECR: f64 = -0.293;
const C_INCR: f64 = 0.733;
const N_SCALAR: f64 = -0.74;

const NEGATE: &[&str] = &[
    "aint",
    "arent",
    "cannot",
    "cant",
    "couldnt",
    "darent",
    "didnt",
    "doesnt",
    "ain't",
    "aren't",
    "can't",
    "couldn't",
    "daren't",
    "didn't",
    "doesn't",
    "dont",
    "hadnt",
    "hasnt",
    "havent",
    "isnt",
    "mightnt",
    "mustnt",
    "neither",
    "don't",
    "hadn't",
    "hasn't",
    "haven't",
    "isn't",
    "mightn't",
    "mustn't",
    "neednt",
    "needn't",
    "never",
    "none",
    "nope",
    "nor",
    "not",
    "nothing",
    "nowhere",
    "oughtnt",
    "shant",
    "shouldnt",
    "uhuh",
    "wasnt",
    "werent",
    "oughtn't",
    "shan't",
    "shouldn't",
    "uh-uh",
    "wasn't",
    "weren't",
    "without",
    "wont",
    "wouldnt",
    "won't",
    "wouldn't",
    "rarely",
    "seldom",
    "despite",
];

const BOOST_UP: &[&str] = &[
    "absolutely",
    "amazingly",
    "awfully",
    "completely",
    "considerable",
    "considerably",
    "decidedly",
    "deeply",
    "effing",
    "enormous",
    "enormously",
    "entirely",
    "especially",
    "exceptional",
    "exceptionally",
    "extreme",
    "extremely",
    "fabulously",
    "flipping",
    "flippin",
    "frackin",
    "fracking",
    "fricking",
    "frickin",
    "frigging",
    "friggin",
    "fully",
    "fuckin",
    "fucking",
    "fuggin",
    "fugging",
    "greatly",
    "hella",
    "highly",
    "hugely",
    "incredible",
    "incredibly",
    "intensely",
    "major",
    "majorly",
    "more",
    "most",
    "particularly",
    "purely",
    "quite",
    "really",
    "remarkably",
    "so",
    "substantially",
    "thoroughly",
    "total",
    "totally",
    "tremendous",
    "tremendously",
    "uber",
    "unbelievably",
    "unusually",
    "utter",
    "utterly",
    "very",
];

const BOOST_DOWN: &[&str] = &[
    "almost",
    "barely",
    "hardly",
    "just enough",
    "kind of",
    "kinda",
    "kindof",
    "kind-of",
    "less",
    "little",
    "marginal",
    "marginally",
    "occasional",
    "occasionally",
    "partly",
    "scarce",
    "scarcely",
    "slight",
    "slightly",
    "somewhat",
    "sort of",
    "sorta",
    "sortof",
    "sort-of",
];

const SPECIAL_CASES: [(&str, f64); 9] = [
    ("the shit", 3.0),
    ("the bomb", 3.0),
    ("bad ass", 1.5),
    ("badass", 1.5),
    ("bus stop", 0.0),
    ("yeah right", -2.0),
    ("kiss of death", -1.5),
    ("to die for", 3.0),
    ("beating heart", 3.5),
];

/// VADER's scores for a text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    pub neg: f64,
    pub neu: f64,
    pub pos: f64,
    pub compound: f64,
}

struct Lexicons {
    words: HashMap<String, f64>,
    emojis: HashMap<char, String>,
}

fn lexicons() -> &'static Lexicons {
    static LEX: OnceLock<Lexicons> = OnceLock::new();
    LEX.get_or_init(|| {
        let words = include_str!("../data/vader/vader_lexicon.tsv")
            .lines()
            .filter_map(|l| {
                let (w, m) = l.split_once('\t')?;
                Some((w.to_string(), m.trim().parse().ok()?))
            })
            .collect();
        let emojis = include_str!("../data/vader/emoji_lexicon.tsv")
            .lines()
            .filter_map(|l| {
                let (e, d) = l.split_once('\t')?;
                let mut chars = e.chars();
                let c = chars.next()?;
                chars.next().is_none().then(|| (c, d.to_string()))
            })
            .collect();
        Lexicons { words, emojis }
    })
}

fn booster(word: &str) -> Option<f64> {
    if BOOST_UP.contains(&word) {
        Some(B_INCR)
    } else if BOOST_DOWN.contains(&word) {
        Some(B_DECR)
    } else {
        None
    }
}

/// Python's `str.isupper()`: some cased characters, none lower case.
fn is_upper(s: &str) -> bool {
    let mut cased = false;
    for c in s.chars() {
        if c.is_lowercase() {
            return false;
        }
        if c.is_uppercase() {
            cased = true;
        }
    }
    cased
}

fn negated(word: &str) -> bool {
    NEGATE.contains(&word) || word.contains("n't")
}

/// Leading and trailing ASCII punctuation removed, unless that leaves two characters or
/// fewer (an emoticon such as `:)`).
fn strip_punctuation(token: &str) -> &str {
    let stripped = token.trim_matches(|c: char| c.is_ascii_punctuation());
    if stripped.chars().count() <= 2 { token } else { stripped }
}

fn scalar_inc_dec(word: &str, valence: f64, cap_diff: bool) -> f64 {
    let Some(mut scalar) = booster(&word.to_lowercase()) else { return 0.0 };
    if valence < 0.0 {
        scalar *= -1.0;
    }
    if is_upper(word) && cap_diff {
        scalar += if valence > 0.0 { C_INCR } else { -C_INCR };
    }
    scalar
}

fn special_case(s: &str) -> Option<f64> {
    SPECIAL_CASES.iter().find(|(k, _)| *k == s).map(|(_, v)| *v)
}

/// Scores a text as VADER does.
pub fn polarity_scores(text: &str) -> Scores {
    let lex = lexicons();
    // Emoji become their descriptions.
    let mut plain = String::with_capacity(text.len());
    let mut prev_space = true;
    for c in text.chars() {
        if let Some(description) = lex.emojis.get(&c) {
            if !prev_space {
                plain.push(' ');
            }
            plain.push_str(description);
            prev_space = false;
        } else {
            plain.push(c);
            prev_space = c == ' ';
        }
    }
    let text = plain.trim();
    let words: Vec<&str> = text.split_whitespace().map(strip_punctuation).collect();
    let lower: Vec<String> = words.iter().map(|w| w.to_lowercase()).collect();
    let caps = words.iter().filter(|w| is_upper(w)).count();
    let cap_diff = caps > 0 && caps < words.len();
    let in_lex = |i: usize| lex.words.contains_key(&lower[i]);

    let mut sentiments: Vec<f64> = Vec::with_capacity(words.len());
    for (i, item) in words.iter().enumerate() {
        let item_lower = &lower[i];
        if booster(item_lower).is_some() || (i + 1 < words.len() && item_lower == "kind" && lower[i + 1] == "of") {
            sentiments.push(0.0);
            continue;
        }
        let Some(&base) = lex.words.get(item_lower) else {
            sentiments.push(0.0);
            continue;
        };
        let mut valence = base;
        if item_lower == "no" && i != words.len() - 1 && in_lex(i + 1) {
            valence = 0.0;
        }
        if (i > 0 && lower[i - 1] == "no")
            || (i > 1 && lower[i - 2] == "no")
            || (i > 2 && lower[i - 3] == "no" && (lower[i - 1] == "or" || lower[i - 1] == "nor"))
        {
            valence = base * N_SCALAR;
        }
        if is_upper(item) && cap_diff {
            valence += if valence > 0.0 { C_INCR } else { -C_INCR };
        }
        for start in 0..3 {
            if i > start && !in_lex(i - (start + 1)) {
                let mut s = scalar_inc_dec(words[i - (start + 1)], valence, cap_diff);
                if start == 1 && s != 0.0 {
                    s *= 0.95;
                }
                if start == 2 && s != 0.0 {
                    s *= 0.9;
                }
                valence += s;
                valence = negation_check(valence, &lower, start, i);
                if start == 2 {
                    valence = special_idioms(valence, &lower, i);
                }
            }
        }
        // "least" negates, except in "at least" / "very least".
        if i > 1 && !in_lex(i - 1) && lower[i - 1] == "least" {
            if lower[i - 2] != "at" && lower[i - 2] != "very" {
                valence *= N_SCALAR;
            }
        } else if i > 0 && !in_lex(i - 1) && lower[i - 1] == "least" {
            valence *= N_SCALAR;
        }
        sentiments.push(valence);
    }
    but_check(&lower, &mut sentiments);
    score(&sentiments, text)
}

fn negation_check(valence: f64, lower: &[String], start: usize, i: usize) -> f64 {
    let w = |k: usize| lower[i - k].as_str();
    match start {
        0 if negated(w(1)) => valence * N_SCALAR,
        1 if w(2) == "never" && (w(1) == "so" || w(1) == "this") => valence * 1.25,
        1 if w(2) == "without" && w(1) == "doubt" => valence,
        1 if negated(w(2)) => valence * N_SCALAR,
        2 if (w(3) == "never" && (w(2) == "so" || w(2) == "this")) || (w(1) == "so" || w(1) == "this") => {
            valence * 1.25
        }
        2 if w(3) == "without" && (w(2) == "doubt" || w(1) == "doubt") => valence,
        2 if negated(w(3)) => valence * N_SCALAR,
        _ => valence,
    }
}

fn special_idioms(mut valence: f64, lower: &[String], i: usize) -> f64 {
    let w = |k: usize| lower[k].as_str();
    let onezero = format!("{} {}", w(i - 1), w(i));
    let twoonezero = format!("{} {} {}", w(i - 2), w(i - 1), w(i));
    let twoone = format!("{} {}", w(i - 2), w(i - 1));
    let threetwoone = format!("{} {} {}", w(i - 3), w(i - 2), w(i - 1));
    let threetwo = format!("{} {}", w(i - 3), w(i - 2));
    if let Some(v) = [&onezero, &twoonezero, &twoone, &threetwoone, &threetwo].iter().find_map(|s| special_case(s)) {
        valence = v;
    }
    if lower.len() - 1 > i
        && let Some(v) = special_case(&format!("{} {}", w(i), w(i + 1)))
    {
        valence = v;
    }
    if lower.len() - 1 > i + 1
        && let Some(v) = special_case(&format!("{} {} {}", w(i), w(i + 1), w(i + 2)))
    {
        valence = v;
    }
    for n_gram in [&threetwoone, &threetwo, &twoone] {
        if let Some(b) = booster(n_gram) {
            valence += b;
        }
    }
    valence
}

/// "but" halves what comes before it and strengthens what follows. As in the reference,
/// each score is located by its first equal value.
fn but_check(lower: &[String], sentiments: &mut [f64]) {
    let Some(bi) = lower.iter().position(|w| w == "but") else { return };
    for pos in 0..sentiments.len() {
        let s = sentiments[pos];
        let Some(si) = sentiments.iter().position(|x| *x == s) else { continue };
        if si < bi {
            sentiments[si] = s * 0.5;
        } else if si > bi {
            sentiments[si] = s * 1.5;
        }
    }
}

fn punctuation_emphasis(text: &str) -> f64 {
    let ep = text.matches('!').count().min(4) as f64 * 0.292;
    let qm = match text.matches('?').count() {
        n @ 2..=3 => n as f64 * 0.18,
        n if n > 3 => 0.96,
        _ => 0.0,
    };
    ep + qm
}

fn round(x: f64, places: usize) -> f64 {
    format!("{x:.places$}").parse().unwrap_or(x)
}

fn score(sentiments: &[f64], text: &str) -> Scores {
    if sentiments.is_empty() {
        return Scores { neg: 0.0, neu: 0.0, pos: 0.0, compound: 0.0 };
    }
    let mut sum: f64 = sentiments.iter().sum();
    let emphasis = punctuation_emphasis(text);
    if sum > 0.0 {
        sum += emphasis;
    } else if sum < 0.0 {
        sum -= emphasis;
    }
    let compound = (sum / (sum * sum + 15.0).sqrt()).clamp(-1.0, 1.0);
    let (mut pos, mut neg, mut neu) = (0.0, 0.0, 0.0);
    for s in sentiments {
        if *s > 0.0 {
            pos += s + 1.0;
        }
        if *s < 0.0 {
            neg += s - 1.0;
        }
        if *s == 0.0 {
            neu += 1.0;
        }
    }
    if pos > neg.abs() {
        pos += emphasis;
    } else if pos < neg.abs() {
        neg -= emphasis;
    }
    let total = pos + neg.abs() + neu;
    Scores {
        neg: round((neg / total).abs(), 3),
        neu: round((neu / total).abs(), 3),
        pos: round((pos / total).abs(), 3),
        compound: round(compound, 4),
    }
}

/// How a caller felt, from what they said: VADER's usual thresholds on the compound score.
pub fn classify(text: &str) -> Option<Sentiment> {
    if text.trim().is_empty() {
        return None;
    }
    let c = polarity_scores(text).compound;
    Some(if c >= 0.05 {
        Sentiment::Positive
    } else if c <= -0.05 {
        Sentiment::Negative
    } else {
        Sentiment::Neutral
    })
}

/// The caller's own lines from a `Role: text` transcript (`User:`, `Customer:`, `Caller:`).
pub fn caller_lines(transcript: &str) -> String {
    transcript
        .lines()
        .filter_map(|l| {
            let (role, text) = l.split_once(':')?;
            matches!(role.trim().to_ascii_lowercase().as_str(), "user" | "customer" | "caller" | "human")
                .then(|| text.trim())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_examples_score_as_published() {
        // From the reference implementation's own examples.
        let s = polarity_scores("VADER is smart, handsome, and funny.");
        assert_eq!((s.neg, s.neu, s.pos, s.compound), (0.0, 0.254, 0.746, 0.8316));
        assert_eq!(polarity_scores("VADER is smart, handsome, and funny!").compound, 0.8439);
        assert_eq!(classify("The book was kind of good."), Some(Sentiment::Positive));
        assert_eq!(classify("Nobody showed up. This is unacceptable!!!"), Some(Sentiment::Negative));
        assert_eq!(classify("   "), None);
        assert_eq!(caller_lines("AI: Hello\nUser: I hate this\nCustomer: truly"), "I hate this truly");
    }
}
