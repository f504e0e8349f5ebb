"""Generates crates/domain/tests/data/vader_golden.json from Python vaderSentiment 3.3.2.

Run: target/pyenv/bin/pip install vaderSentiment==3.3.2 && target/pyenv/bin/python scripts/gen_vader_golden.py
The Rust tests read the JSON; they never call Python.
"""

import json
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

BASE = [
    "Thanks so much, the technician was great.",
    "Nobody showed up for my appointment yesterday.",
    "This is unacceptable.",
    "I'd like to book a visit for Thursday.",
    "Can you move my appointment to next week?",
    "Please cancel my booking.",
    "The service was not good at all.",
    "The service was not bad.",
    "It was kind of helpful, I guess.",
    "It was sort of okay but the price was terrible.",
    "I am very happy with the repair.",
    "I am extremely disappointed.",
    "You guys are the best!",
    "Worst experience ever.",
    "The quote seems fair.",
    "I never said it was great.",
    "Without doubt the best electrician in town.",
    "At least they called back.",
    "The least helpful call I've had.",
    "No problem at all, thank you.",
    "No, I don't want that.",
    "That is the bomb.",
    "Yeah right, like that will happen.",
    "The kiss of death for this company.",
    "The food was to die for.",
    "I'm calling because my heater broke.",
    "It's fine.",
    "Great, great, great.",
    "I hate waiting on hold.",
    "Honestly I love how quick you were.",
    "Meh.",
    "The breaker keeps tripping and I'm worried.",
    "Can someone come today? It's urgent.",
    "I'm not sure what's wrong.",
    "Your receptionist was rude and unhelpful.",
    "She was friendly but slow.",
    "He was slow but friendly.",
    "I barely noticed any improvement.",
    "Absolutely fantastic work.",
    "It's hardly worth the money.",
    "Could you send me the invoice?",
    "I want a refund.",
    "Thank you, have a nice day.",
    "I'm so angry right now.",
    "I'm not angry, just confused.",
    "That's good news.",
    "That isn't good news.",
    "Everything works perfectly now.",
    "Nothing works.",
    "I was pleasantly surprised.",
    "What a disaster.",
    "Not too bad, not too good.",
    "The appointment was fine but the follow-up was awful.",
    "Sure.",
    "Okay, see you then.",
    "I don't think so.",
    "Love it",
    "Hate it",
    "It is what it is.",
    "You saved my day.",
]

def variants(s):
    out = [s]
    out.append(s.upper())
    words = s.split()
    if len(words) > 2:
        # One word in capitals while the others are not.
        w = words[:]
        w[len(w) // 2] = w[len(w) // 2].upper()
        out.append(" ".join(w))
    out.append(s.rstrip(".!?") + "!!!")
    out.append(s.rstrip(".!?") + "??")
    return out

EMOJI = [
    "Thanks 😊", "I'm so mad 😡", "Great job 👍", "Terrible 👎 service", "Love it ❤️", "I'm crying 😢",
    "Can't stop laughing 😂", "Well done 🎉", "That's scary 😱", "Okay 🙂",
    "The technician was late 😒 but nice 😀", "💩 service", "🔥🔥🔥", "So tired 😴", "Perfect!!! 😍",
]

sentences = []
for s in BASE:
    sentences.extend(variants(s))
sentences.extend(EMOJI)
sentences.extend([":) thanks", ":( no", "This is GREAT!!!", "this is not GREAT", "I am VERY happy", "VERY bad"])

analyzer = SentimentIntensityAnalyzer()
cases = [{"text": s, **analyzer.polarity_scores(s)} for s in sentences]
with open("crates/domain/tests/data/vader_golden.json", "w", encoding="utf-8") as f:
    json.dump({"generator": "vaderSentiment 3.3.2", "cases": cases}, f, ensure_ascii=False, indent=1)
print(len(cases), "cases")
