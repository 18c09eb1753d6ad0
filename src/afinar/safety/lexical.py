"""Hand-written, high-precision lexical rules for the built-in moderation backend.

Two kinds of rule, both applied to the whole text (case-insensitive):

* **floors** — unambiguous phrasings ("I'm going to kill myself", "build a pipe bomb", a minor
  named next to sexual words) raise the named categories to at least the rule's score, whatever
  the embedding classifier said;
* **idioms** — harmless figures of speech that share words with violence ("kill the process",
  "shoot me an email", "I'm dying to see it") multiply the violence-like scores (and
  harassment, which such verbs aimed at "you" also raise) by ``IDIOM_FACTOR``, but only when no
  floor rule fired on the same text.

Rules are deliberately few: they fix the classifier's known blind spots, they are not a word
list. Keep each pattern's false-positive risk in mind; the benign sets in ``data/`` are the test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class FloorRule:
    name: str
    pattern: re.Pattern[str]
    categories: tuple[str, ...]
    score: float
    # When this pattern also matches, the rule does not fire (e.g. "sex education").
    unless: re.Pattern[str] | None = None


def _re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


_FIRST_PERSON_FUTURE = (
    r"\b(?:i(?:'| a)?m\s+(?:going\s+to|gonna|about\s+to|planning\s+to|ready\s+to)|i(?:'ll|\s+will)|"
    r"i\s+(?:want|need|plan|intend|am\s+going)\s+to|i\s+wanna|gonna|tonight\s+i(?:'ll|\s+will))"
)
_SELF_ACTS = (
    r"(?:kill|hurt|cut|hang|shoot|stab|drown|starve|poison|burn)\s+myself|end\s+(?:it\s+all|my\s+(?:own\s+)?life)|"
    r"overdose|commit\s+suicide|take\s+my\s+(?:own\s+)?life"
)

_MINOR = (
    r"(?:\bchild(?:ren)?\b|\bkids?\b|\bminors?\b|\bunderage\b|\bpre-?teens?\b|\blittle\s+(?:girl|boy)s?\b|"
    r"\bschool\s?(?:girl|boy)s?\b|\b(?:[1-9]|1[0-7])[- ]?(?:years?|yrs?)[- ]?olds?\b|"
    r"\b(?:6th|7th|8th|9th|sixth|seventh|eighth|ninth)[- ]grade(?:rs?)?\b|\bmiddle[- ]schoolers?\b|"
    r"\bhigh[- ]school\s+freshm[ae]n\b|\bloli\b|\bshota\b|\btoddlers?\b)"
)
_SEXUAL = (
    r"(?:\bsex(?:ual|ually|y|ting)?\b|\berotic\w*|\bnude\w*|\bnaked\b|\bporn\w*|\blewd\b|\bseductive\w*|"
    r"\baroused\b|\borgasm\w*|\bvirginity\b|\bmolest\w*|\bundress\w*|\bsext\w*)"
)

FLOORS: tuple[FloorRule, ...] = (
    FloorRule(
        "self-harm intent",
        _re(_FIRST_PERSON_FUTURE + r"\s+(?:\w+\s+){0,2}?(?:" + _SELF_ACTS + r")\b"),
        ("self-harm", "self-harm/intent"),
        0.9,
    ),
    FloorRule(
        "self-harm intent (short forms)",
        _re(
            r"\bkms\b|\bi\s+(?:really\s+)?want\s+to\s+die\b|\bi\s+(?:want|wish)\s+(?:to\s+be|i\s+was|i\s+were)\s+dead\b"
        ),
        ("self-harm", "self-harm/intent"),
        0.85,
    ),
    FloorRule(
        "self-harm instructions",
        _re(
            r"\b(?:how|ways?|methods?|best|easiest|quickest|fastest|painless|least\s+painful|most\s+reliable)\b"
            r"[^.?!]{0,40}\b(?:kill\s+(?:myself|yourself)|end\s+my\s+life|hang\s+myself|slit\s+my\s+wrists?|"
            r"commit\s+suicide|overdose\s+on|to\s+overdose)\b"
        ),
        ("self-harm", "self-harm/instructions"),
        0.85,
        unless=_re(r"\b(?:prevent\w*|hotline|helpline|support|recogni[sz]e|signs?\s+of|treat\w*)\b"),
    ),
    FloorRule(
        "threat against a person",
        _re(
            r"\bi(?:'ll|\s+will|'m\s+going\s+to|\s+am\s+going\s+to|'m\s+gonna|\s+am\s+gonna|\s+gonna)\s+"
            r"(?:\w+\s+)?(?:kill|murder|stab|shoot|strangle|choke|rape|behead|slit)\s+(?:you|u|him|her|them|your)\b"
        ),
        ("harassment", "harassment/threatening", "violence"),
        0.85,
    ),
    FloorRule(
        "threat (you are dead)",
        _re(r"\byou(?:'re|\s+are)\s+(?:so\s+)?(?:dead|going\s+to\s+die)\b|\bi\s+know\s+where\s+you\s+live\b"),
        ("harassment", "harassment/threatening", "violence"),
        0.75,
    ),
    FloorRule(
        "weapons of mass harm",
        _re(
            r"\b(?:make|making|build|building|assemble|construct|cook|synthesi[sz]e|produce|get|buy)\b[^.?!]{0,40}"
            r"\b(?:pipe\s?bombs?|car\s+bombs?|nail\s+bombs?|pressure[- ]cooker\s+bombs?|molotovs?|"
            r"explosive\s+devices?|ieds?|nerve\s+agents?|sarin|ricin|mustard\s+gas|napalm)\b"
        ),
        ("illicit", "illicit/violent"),
        0.9,
    ),
    FloorRule(
        "sexual content involving minors",
        _re(rf"{_MINOR}[^.?!]{{0,60}}{_SEXUAL}|{_SEXUAL}[^.?!]{{0,60}}{_MINOR}"),
        ("sexual", "sexual/minors"),
        0.9,
        unless=_re(
            r"\b(?:education|educat\w+|report\w*|abuse[ds]?|protect\w*|prevent\w*|safety|awareness|"
            r"signs\s+of|age\s+of\s+consent|puberty|talk\s+to\s+(?:my|our)\s+(?:kids?|children|son|daughter))\b"
        ),
    ),
)

# Harmless idioms that share words with violence or self-harm.
IDIOMS: re.Pattern[str] = _re(
    r"\bkill(?:s|ed|ing)?\s+(?:-\d+\s+)?(?:off\s+)?(?:the\s+|a\s+|an\s+|this\s+|that\s+|my\s+|our\s+|all\s+(?:the\s+)?|every\s+)?"
    r"(?:\w+\s+)?(?:process(?:es)?|pids?|tasks?|jobs?|threads?|containers?|pods?|sessions?|servers?|apps?|"
    r"applications?|programs?|scripts?|commands?|quer(?:y|ies)|connections?|tabs?|switch|lights?|engine|time|"
    r"weeds?|bugs?|germs?|bacteria|presentation|interview|exam|test|it)\b"
    r"|\bshoot\s+(?:me|us|him|her|them)?\s*(?:an?\s+)?(?:e-?mail|message|text|note|line|dm)\b"
    r"|\bshoot(?:ing)?\s+(?:some\s+)?(?:hoops|photos?|pictures?|videos?|a\s+film|a\s+scene|for\s+the\s+stars)\b"
    r"|\bshoot\s+for\b|\bexecut(?:e|ed|es|ing|ion)\s+(?:\w+\s+){0,2}(?:script|plan|query|command|code|order|"
    r"migration|function|program|tests?|statement)\b|\bexecution\s+plan\b"
    r"|\bdie\s+laughing|\bdied\s+laughing|\bdying\s+to\b|\bto\s+die\s+for\b|\bdead\s+tired\b|"
    r"\bcould\s+(?:murder|kill\s+for)\b|\bkill\s+for\s+an?\b|\b(?:is|are)\s+killing\s+me\b|"
    r"\bkiller\s+(?:deal|app|feature|guitarist|view|wheels|price)|\bbreak\s+a\s+leg\b|\bbombed\s+(?:the|my|that)\b|"
    r"\b(?:is|was|'s)\s+the\s+bomb\b|\bkilled\s+it\b|\bkilling\s+it\b|\bbeat\s+(?:the\s+)?(?:eggs?|egg\s+whites|butter|batter|cream)\b"
    r"|\bhit\s+the\s+(?:gym|road|sack|books)\b|\bpunch\s+in\b|\bnearly\s+died\s+of\b|\bblow\s+up\s+(?:the\s+)?balloons?\b"
)

IDIOM_CATEGORIES = (
    "harassment",
    "violence",
    "violence/graphic",
    "harassment/threatening",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
)
IDIOM_FACTOR = 0.25


def apply_rules(text: str, scores: dict[str, float]) -> list[str]:
    """Adjust ``scores`` in place; return the names of the floor rules that fired."""
    fired = []
    for rule in FLOORS:
        if rule.pattern.search(text) and not (rule.unless is not None and rule.unless.search(text)):
            fired.append(rule.name)
            for category in rule.categories:
                scores[category] = max(scores[category], rule.score)
    if not fired and IDIOMS.search(text):
        for category in IDIOM_CATEGORIES:
            scores[category] *= IDIOM_FACTOR
    return fired
