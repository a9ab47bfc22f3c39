"""Write reviews.csv: 2,000 short made-up film reviews, labelled positive or negative, where word order matters.

Run from the repository root: python datasets/text/make_reviews.py (seeded: the same file every time).
Each review has one or two verdicts, a sentiment word that may be negated ("not good" is
negative, "not bad" positive, "never boring" positive), among neutral filler words; a review
with two verdicts says "but" between them, and the verdict after "but" decides. A model that
reads the words as a bag cannot tell "good but not great" from "not good but great"; one that
reads them in order can.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

POSITIVE = ["good", "great", "wonderful", "moving", "funny", "clever", "gripping", "beautiful"]
NEGATIVE = ["bad", "dull", "boring", "awful", "silly", "clumsy", "tedious", "weak"]
NEGATIONS = ["not", "never", "hardly"]
SUBJECTS = ["the film", "the plot", "the acting", "the ending", "the music", "the script", "it", "the cast"]
FILLER = ["was", "is", "felt", "seemed", "really", "quite", "at times", "overall", "to me", "somehow"]
ROWS = 2000


def verdict(rng: random.Random) -> tuple[str, bool]:
    """A clause and whether it is positive: a sentiment word, negated half of the time."""
    positive = rng.random() < 0.5
    word = rng.choice(POSITIVE if positive else NEGATIVE)
    negated = rng.random() < 0.5
    words = [rng.choice(SUBJECTS), *rng.sample(FILLER, rng.randint(1, 2))]
    words += [rng.choice(NEGATIONS), word] if negated else [word]
    return " ".join(words), positive != negated


def main() -> None:
    rng = random.Random(0)
    path = Path(__file__).with_name("reviews.csv")
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["id", "review", "sentiment"])
        for i in range(ROWS):
            text, positive = verdict(rng)
            if rng.random() < 0.5:  # a second verdict after "but" decides
                second, positive = verdict(rng)
                text = f"{text} but {second}"
            out.writerow([i, text[0].upper() + text[1:] + rng.choice([".", "!", "..."]), "positive" if positive else "negative"])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
