"""Deterministic reduction of a free-form answer to a Thud label (docs/metrics.md, "The parser").

Rules, each there because the public release of "When Vision Speaks for Sound" got it wrong:
- an answer that cannot be reduced is ``undetermined``: never mapped to ``synced``;
- no letter is ever read from the first capital of the text ("AUDIO is early" is not option A); an option letter
  counts only when the whole answer is that letter (``B``, ``(B)``, ``B.``) or it is introduced explicitly
  (``Answer: B``, ``option B``), and only when the caller passes the options it showed;
- a cue preceded in its clause by a negation ("not in sync", "no delay") does not count for its label;
- a hedge between two labels ("maybe synced, or slightly delayed") is ``undetermined``; a hedge on one label
  ("the audio seems delayed") is that label; a plain refusal ("I can't tell") is ``undetermined``.
- narration counts: a clause that speaks of a sound places it late ("a bit after the impact"), early ("before he
  lands") or at the event ("a thud as the man hits the ground": synced); a sound the answer says is heard with no
  problem raised reads as synced;
- offsets in digits or words ("800 ms", "two-second delay", "half a second", "one and a half seconds").

Measured on the hand-labelled answers of ``tests/fixtures/thud_answers.jsonl`` (see the test of its accuracy).

Precedence when several labels are asserted: silent > mismatched > delayed/early > synced (a missing or foreign
sound makes timing moot; a stated shift overrides a vague "mostly in sync"). ``delayed`` and ``early`` together
are contradictory and give ``undetermined``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

_NEG = re.compile(r"\b(not|no|never|neither|nor|without|isn't|aren't|wasn't|doesn't|don't|didn't|hardly|barely)\b"
                  r"|n't\b")
# Cues per label. Patterns that carry their own negation ("does not match", "no sound") are listed as they are.
_CUES: dict[str, list[str]] = {
    "silent": [
        r"\bno (audible |discernible |actual )?(sound|audio|noise)s?\b(?! (delay|lag|offset|shift))",
        r"\bno (audio|sound) (track|at all)\b", r"\bsilent\b", r"\bmuted?\b",
        r"\b(complete|total|only|just|pure|dead) silence\b", r"\bsilence (throughout|only)\b",
        r"\b(can ?not|can't|cannot|do not|don't|couldn't) hear (any|anything)\b", r"\bhear nothing\b",
        r"\bnothing (can be |is )?(heard|audible)\b", r"\b(sound|audio) is (absent|missing)\b",
        r"\bwithout (any )?(sound|audio)\b", r"\b(sound|audio) (is|was) not present\b", r"\binaudible\b",
        r"\b(can ?not|can't|cannot|do not|don't|couldn't) (detect|perceive) (any|a) (sound|audio|noise)",
        r"\b(audio|sound|track) (contains|has) nothing\b", r"\b(audio|sound): (none|absent|missing)\b",
        r"\bno (audio|sound) is\b", r"\b(can ?not|can't|cannot|couldn't) hear a thing\b",
        r"\bmissing (its |the )?(audio|sound)\b", r"\b(audio|sound)( track)? is empty\b",
    ],
    "mismatched": [
        r"\b(does not|doesn't|do not|don't|did not|didn't) (match|correspond|fit|belong)",
        r"\bnot (match|matching|consistent|correspond)", r"\bmis-?match(ed|es|ing)?\b", r"\bunrelated\b",
        r"\binconsistent\b", r"\bincongruent\b", r"\bwrong sound\b",
        r"\b(sound|audio) (of|from) (a |an )?(different|another|other)\b",
        r"\b(different|another|other) (sound|object|event|source|clip|video)\b(?! (is|was) (heard|in sync))",
        r"\bbelongs? to (a |an )?(different|another|other)\b", r"\bdubbed\b", r"\bnot from (this|the same)\b",
        r"\b(sound|audio|noise) is wrong\b", r"\bnot the (sound|noise) of\b", r"\bnothing to do with\b",
        r"\bnot the (right|correct|expected) (sound|noise|audio)\b", r"\bincorrect sound\b",
    ],
    "delayed": [
        r"\b(audio|sound|noise|thud|clang|impact sound)('s| is| was| comes| arrives| seems| appears)?"
        r"( \w+){0,3} (delayed|late|lagging|behind|after)\b",
        r"\bdelay(ed)?\b", r"\blags?\b", r"\blagging\b", r"\b(too|slightly|a bit|very) late\b", r"\blate\b",
        r"\bbehind the (video|picture|visual|image|action|event)", r"\bafter the (visual|visible|impact|hit|"
        r"collision|event|action|object|video|picture|moment)",
        r"\bheard (only )?after\b", r"\b(occurs?|comes?|arrives?|happens?|plays?|starts?|sounds?)( \w+){0,2} after "
        r"the\b", r"\blater than\b", r"\btrails?\b", r"\btrailing\b",
        r"\b(audio|sound) follows\b", r"\b(video|picture|image|visuals?) (comes|is) first\b",
    ],
    "early": [
        r"\bearly\b", r"\bearlier than\b", r"\bahead( of)?\b", r"\bbefore the (visual|visible|impact|hit|"
        r"collision|event|action|object|video|picture|moment|ball|box|can|bottle)", r"\bprecedes?\b",
        r"\bpreceding\b", r"\b(audio|sound)( is)? lead(s|ing)\b",
        r"\b(audio|sound) (comes|is heard|plays|arrives) first\b", r"\bleading the (video|picture|visuals?|image)\b",
        r"\btoo soon\b", r"\bpremature(ly)?\b",
        r"\bheard (just )?before\b", r"\b(occurs?|comes?|arrives?|happens?|plays?|starts?)( \w+){0,2} before the\b",
        r"\banticipates?\b", r"\bprior to\b", r"\blead in the (audio|sound)\b",
    ],
    "synced": [
        r"\bin sync\b", r"\bsynchroni[sz]ed\b", r"\bsynced\b", r"\bin synch?\b", r"\baligned\b",
        r"\bwell[- ]timed\b", r"\bcoincides?\b", r"\bat the same (time|moment|instant)\b", r"\bsimultaneous(ly)?\b",
        r"\bexactly when\b", r"\bright when\b", r"\bon time\b", r"\bperfect(ly)? timed?\b",
        r"\b(match|matches|line|lines) up\b", r"\btimed (correctly|right|properly|well)\b",
        r"\btiming (is|looks|seems) (right|correct|fine|good)\b",
    ],
    # "The sound matches what I see" says the source fits, not when it is heard: it reads as synced only when the
    # answer says nothing about timing, and it never conflicts with a stated shift.
    "consistent": [r"\bmatches\b", r"\bmatching\b", r"\bmatch(es)? (the|what)\b", r"\bconsistent\b",
                   r"\bcorresponds?\b", r"\bfits\b"],
}
# Cues that deny a label: checked before the generic negation rule because they are not "not X" in form.
_DENY: dict[str, list[str]] = {
    "synced": [r"\bout of sync\b", r"\bun-?synchroni[sz]ed\b", r"\bdesynchroni[sz]ed\b", r"\basynchronous\b",
               r"\bmisaligned\b", r"\bde-?synced\b", r"\boff[- ]sync\b", r"\bnot in sync\b"],
    "silent": [r"\b(sound|audio) is (present|there|audible)\b",
               r"\b(there is|there's|i hear|i can hear) (a |an )?(sound|audio|noise|thud|clang|knock|clink)"],
}
_SUBJ_VERB = r"(is |are |seems |seem |appears |appear |comes |come |runs |run )?(to be )?"
_VIDEO_LAGS = re.compile(r"\b(the )?(video|picture|image|visuals?)( stream| track)? " + _SUBJ_VERB +
                         r"(lags?|lagging|delayed|late|behind)( behind)?( the (audio|sound))?")
_VIDEO_LEADS = re.compile(r"\b(the )?(video|picture|image|visuals?)( stream| track)? " + _SUBJ_VERB +
                          r"(ahead|early|leads?|precedes)( of)?( the (audio|sound))?")
# "Neither early nor late" asserts sync; word by word it would only deny two labels.
_NEITHER = re.compile(r"\bneither (early|late|delayed|ahead|behind) nor (early|late|delayed|ahead|behind)\b")
# Narration (what omni models say most often): a sound the answer says is heard, and where it places it. In a
# clause that speaks of a sound, "after"/"later" places it late, "before"/"prior to" early, and "as"/"when"/"at the
# moment" at the event. A heard sound with no timing problem raised answers the question as in sync: the question
# asks for a delay, a silence or a mismatch, and the answer reports none (still: a hedge or a refusal wins).
_SOUNDS = (r"(thuds?|thumps?|crash(es)?|bangs?|clangs?|clanks?|splash(es)?|cracks?|smacks?|crunch(es)?|clatters?|"
           r"shatter(ing)?|booms?|pops?|knocks?|clinks?|thwacks?|slams?|whacks?|squeaks?|screech(es)?|sounds?|"
           r"noises?|audio|soundtrack|whistles?|impact sound)")
_HEARD = re.compile(r"\b(i|you|we|one) (can |could )?(clearly )?hear\b|\b(is|are|was|be) (clearly )?(audible|heard)\b"
                    r"|\brings? out\b|\bthere('s| is) an? (\w+ ){0,2}" + _SOUNDS + r"\b")
_SOUND_WORD = re.compile(r"\b(hear|hears|heard|audible)\b|\b" + _SOUNDS + r"\b")
_TIMING: dict[str, str] = {
    "delayed": r"\b(after|later)\b",
    "early": r"\b(before|prior to|earlier)\b",
    "synced": r"\b(as|when|while|the instant|the moment|at the moment|at that (very )?moment|just as|right as)\b",
}
_NO_DELAY = re.compile(r"\b(no|without( any)?|zero) (noticeable |perceptible |apparent |visible |audible |audio |sound "
                       r"|significant |discernible )*(delay|lag|offset|latency)s?\b")
_REFUSAL = re.compile(
    r"\b(not sure|unsure|can ?not (tell|determine|say|judge)|can't (tell|determine|say|judge)|unable to "
    r"(tell|determine|say|judge)|hard to (tell|say|judge)|difficult to (tell|say|judge|determine)|unclear|"
    r"impossible to (tell|say|determine)|no way to (tell|know)|i don't know|do not know)\b")
_HEDGE_OR = re.compile(r"\b(or|either|maybe|perhaps|possibly|might|could|whether)\b")
_NUM = (r"(\d+(?:\.\d+)?|\.\d+|one and a half|two and a half|half a|a half|one|two|three|four|five|six|seven|"
        r"eight|nine|ten|a couple of|a fraction of a|a)")
_WORDS = {"half a": 0.5, "a half": 0.5, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
          "eight": 8, "nine": 9, "ten": 10, "a couple of": 2.0, "one and a half": 1.5, "two and a half": 2.5, "a": 1}
_OFFSET = re.compile(r"(?<![\w.])" + _NUM + r"(?:\s*(?:-|to|–)\s*" + _NUM + r")?(?:\s*-\s*|\s*)(?:s\b|sec\b|secs\b|"
                     r"seconds?\b|ms\b|milliseconds?\b)")
_LETTER = re.compile(r"^\s*(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)\s*(?:is|:)?\s*\(?([A-Z])\)?(?:[.:)\s]|$)"
                     r"|^\s*\(?([A-Z])\)?\s*[.:)]?\s*$|^\s*\(([A-Z])\)", re.IGNORECASE)
_LETTER_STRICT = re.compile(r"^\s*\(?([A-Z])\)?\s*[.:)]?\s*$|^\s*\(([A-Z])\)")


@dataclass(frozen=True)
class Parsed:
    """The parser's reading of an answer: a label and, when stated, an offset in seconds (magnitude)."""

    label: str
    offset: float | None = None


def _value(tok: str) -> float | None:
    tok = tok.strip().lower()
    if tok in _WORDS:
        return float(_WORDS[tok])
    if tok == "a fraction of a":
        return None
    try:
        return float(tok)
    except ValueError:
        return None


_HEDGE_NUM = r"(?:about |approximately |roughly |around |nearly |almost |some |maybe |~ ?)?"
# A duration tied to the shift ("delayed by 2 s", "1.5 seconds late") wins over other times in the answer ("seen at
# 2.5 s but heard at 4.6 s" states event times, not the offset).
_OFFSET_CUED = [re.compile(r"\bby " + _HEDGE_NUM + r"(?=" + _OFFSET.pattern + r")"),
                re.compile(r"(?=" + _OFFSET.pattern + r"\s*(?:too )?(?:late|early|after|before|behind|ahead|of "
                           r"(?:delay|lag|offset)))")]


def parse_offset(text: str) -> float | None:
    """The duration the text gives for the shift, in seconds (a range "1-2 s" gives its midpoint): one introduced
    by "by" or followed by late/early/after/before when there is one, else the first duration; None if none."""
    low = text.lower()
    m = None
    for cue in _OFFSET_CUED:
        c = cue.search(low)
        if c:
            m = _OFFSET.match(low, c.end())
            break
    m = m or _OFFSET.search(low)
    if not m:
        return None
    a, b = _value(m.group(1)), _value(m.group(2)) if m.group(2) else None
    if a is None:
        return None
    val = a if b is None else (a + b) / 2
    unit = m.group(0).rstrip().lower()
    if unit.endswith("ms") or "milli" in unit:
        val /= 1000.0
    return val


def _clauses(text: str) -> list[str]:
    # Negation scope ends at clause boundaries: "it is not silent, the audio is delayed" has two clauses.
    return [c for c in re.split(r"(?<!\d)\.|\.(?!\d)|[;!?\n]|,\s*(?:but|and|so|though|although|while|yet)\b|\bbut\b"
                                r"|\bhowever\b"
                                r"|\bthough\b|\balthough\b", text) if c.strip()]


def _negated(clause: str, start: int) -> bool:
    # The four words before a cue, within its phrase: "there is no audio, just silence" does not negate "silence".
    window = re.split(r"[,:;\-–]", clause[max(0, start - 40):start])[-1]
    return bool(_NEG.search(" ".join(window.split()[-4:])))


def _asserted(text: str) -> tuple[set[str], set[str]]:
    """Labels the answer asserts and labels it explicitly denies."""
    said: set[str] = set()
    denied: set[str] = set()
    for clause in _clauses(text):
        for label, pats in _DENY.items():
            # "No audible sound is present" does not deny silence: a denial that is itself negated is no denial.
            if any(not _negated(clause, m.start()) for p in pats for m in re.finditer(p, clause)):
                denied.add(label)
        for label, pats in _CUES.items():
            own = label in ("silent", "mismatched")  # their cues carry the negation ("no sound", "not match")
            pos, neg = [], []
            for p in pats:
                for m in re.finditer(p, clause):
                    if _negated(clause, m.start()) or (not own and _NEG.search(m.group(0))):
                        neg.append(m.span())
                    else:
                        pos.append(m.span())
            if neg:
                denied.add(label)
            # "not delayed" matches several cue patterns; any match inside a negated span is the same denial.
            if any(all(e <= a or s >= b for a, b in neg) for s, e in pos):
                said.add(label)
        said |= _narrated(clause)
    return said, denied


def _narrated(clause: str) -> set[str]:
    """Labels a narrating clause implies (see ``_HEARD``): where it places a sound it speaks of, or ``synced`` for a
    sound it says is heard without placing it."""
    if not _SOUND_WORD.search(clause):
        return set()
    placed = {label for label, pat in _TIMING.items()
              if any(not _negated(clause, m.start()) for m in re.finditer(pat, clause))}
    if placed:
        return placed
    heard = [m for m in _HEARD.finditer(clause) if not _negated(clause, m.start())]
    return {"synced"} if heard else set()


def parse_answer(text: str, options: Mapping[str, str] | Sequence[str] | None = None) -> Parsed:
    """Reduce one model answer to a Thud label plus an optional offset.

    Args:
        text: the model's answer.
        options: for a multiple-choice prompt, the labels of options A, B, C ... in the order shown (a sequence) or
            ``{letter: label}``; without it no letter is ever read.
    Returns:
        :class:`Parsed`; label ``undetermined`` when the answer cannot be reduced.
    """
    raw = text or ""
    if options is not None:
        letters = dict(options) if isinstance(options, Mapping) else {chr(65 + i): lab for i, lab in enumerate(options)}
        # Case-sensitive strict form first ("B", "(B)"), then explicit "answer: b"; never "AUDIO ..." as A.
        m = _LETTER_STRICT.match(raw) or _LETTER.match(raw)
        if m:
            letter = next(g for g in m.groups() if g).upper()
            if letter in letters:
                return Parsed(letters[letter], parse_offset(raw))
    t = " ".join(raw.lower().replace("’", "'").replace("synchronous", "synchronized").split())
    if not t:
        return Parsed("undetermined")
    # The video as subject inverts direction: "the video lags behind the audio" means the audio is early.
    # "No noticeable delay" asserts sync; as a negated "delay" cue it would only deny "delayed".
    t = _NO_DELAY.sub(" in sync", t)
    t = _NEITHER.sub(" in sync", t)
    t = _VIDEO_LAGS.sub(" audio is early", t)
    t = _VIDEO_LEADS.sub(" audio is delayed", t)
    # A leading "No," / "Yes," answers the first question; left in, it would negate the clause's first cue.
    said, denied = _asserted(re.sub(r"^(no|yes|yep|nope)[,.!:;]\s*", "", t))
    for lab in ("silent", "synced"):  # an explicit denial ("out of sync", "I hear a thud") outweighs a loose cue
        if lab in denied:
            said.discard(lab)
    offset = parse_offset(t)
    if not said:
        if _REFUSAL.search(t):
            return Parsed("undetermined")
        # A bare yes/no answers the prompt's first question ("Are the audio and video synchronised?").
        if re.fullmatch(r"yes\b[.!]?( they are[.!]?)?", t):
            return Parsed("synced")
        return Parsed("undetermined", offset)
    hedged = bool(_HEDGE_OR.search(t)) or bool(_REFUSAL.search(t))
    if "silent" in said:
        return Parsed("silent")
    if "mismatched" in said:
        return Parsed("mismatched")
    if "consistent" in denied and not said - {"consistent"}:
        return Parsed("undetermined", offset)  # "it does not correspond" without saying how
    shifts = said & {"delayed", "early"}
    if len(shifts) == 2:
        return Parsed("undetermined", offset)
    if shifts:
        if "synced" in said and hedged:
            return Parsed("undetermined", offset)  # "in sync, or maybe slightly delayed"
        return Parsed(shifts.pop(), offset)
    if "synced" in said or "consistent" in said:
        if hedged and re.search(r"\bor (slightly |a bit |somewhat |maybe )?(off|out of sync|not)\b", t):
            return Parsed("undetermined")  # "it might be in sync or slightly off"
        if "synced" in denied:  # "it is not in sync" plus a matching-sound remark, no direction given
            return Parsed("undetermined", offset)
        if _REFUSAL.search(t):
            return Parsed("undetermined")
        return Parsed("synced")
    return Parsed("undetermined", offset)  # pragma: no cover - said only holds known labels
