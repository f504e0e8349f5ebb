//! The lexicon model against golden outputs generated from Python `vaderSentiment` 3.3.2
//! (`scripts/gen_vader_golden.py`): emoji, capitals, `!!!`, negation, boosters, "but".

use callbridge_domain::sentiment::polarity_scores;
use serde_json::Value;

#[test]
fn scores_match_the_reference_implementation_on_every_golden_sentence() {
    let golden: Value = serde_json::from_str(include_str!("data/vader_golden.json")).unwrap();
    let cases = golden["cases"].as_array().unwrap();
    assert!(cases.len() >= 200);
    let mut mismatches = Vec::new();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let s = polarity_scores(text);
        let want = |k: &str| case[k].as_f64().unwrap();
        let got = (s.neg, s.neu, s.pos, s.compound);
        let expected = (want("neg"), want("neu"), want("pos"), want("compound"));
        if got != expected {
            mismatches.push(format!("{text:?}: got {got:?}, want {expected:?}"));
        }
    }
    assert!(mismatches.is_empty(), "{} of {} differ:\n{}", mismatches.len(), cases.len(), mismatches.join("\n"));
}
