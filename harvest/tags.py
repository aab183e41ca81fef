"""Evidence tags: design, molecule, route, population, comparator, outcome, theme.

Pure functions, no I/O. `tag_article(record)` takes one article dict from
`harvest.pubmed_xml.parse_pubmed_xml` and returns its tags, each a dict
``{"facet", "value", "method", "evidence", "confidence"}``:

* ``method`` says how the tag was found: ``"publication_type"`` (NLM's or the
  publisher's publication type), ``"mesh"`` (a MeSH descriptor, descriptor/qualifier
  pair, supplementary concept or chemical), or ``"rule:<rule id>"`` for a text rule
  of this module (the rule ids are stable; `RULES_VERSION` dates the whole set).
* ``evidence`` is what fired: the MeSH name (``"Ketamine/adverse effects"`` for a
  descriptor with a qualifier), the publication type name, or the exact span of
  the title or abstract that the rule matched (a substring of that field).
* ``confidence`` is the rule's prior (0..1), not a calibrated probability; for a tag of
  the design model (``model:<version>``) it is the model's calibrated probability (see
  `harvest.design_model`).

Sources, in order of authority
------------------------------
1. Publication types and MeSH (``use_indexing=True``, the default). For a record
   NLM has indexed (citation status MEDLINE or OLDMEDLINE, with MeSH), the indexers
   decide the designs that publication types and the Animals/Humans check tags
   express (RCT, case report, reviews, systematic review, meta-analysis, letters
   and comments, guidelines, animal studies): text rules do not add those designs
   to an indexed record. Text rules still add what indexing does not say
   (crossover, open-label, cohort, case-control, protocol, secondary analysis,
   in vitro) and every topic facet.
2. Text rules over the title and abstract. They cover records still awaiting
   indexing (`awaiting_indexing`) and everything indexing cannot express.

``use_indexing=False`` ignores MeSH, publication types, chemicals, supplementary
concepts and NLM-owned keywords entirely: tags then come from the title and
abstract alone (this is what ``harvest.evaluate`` scores against the indexers).

Author keywords (KeywordList Owner other than NLM) are used for one thing only:
deciding whether the record mentions ketamine at all (the topic gate below).
They never make a tag themselves: authors list the field's keywords, not what the
study did (34034067 lists "Esketamine" but studied intravenous racemic ketamine).

The topic gate
--------------
The shared PubMed slices are mostly not about ketamine, and words like "oral",
"infusion", "depression" or "placebo" mean nothing for this catalog without it.
Facets molecule, route, comparator, outcome, theme and population (except
``animals``) are *topic facets*: their rules fire only when the record mentions
ketamine or one of its forms (title, abstract, author keywords; with indexing
also MeSH/chemicals). ``design`` and ``population=animals`` are generic.
Route rules are further anchored to a ketamine mention within a few words
("intravenous ketamine", "esketamine nasal spray", "infusions of ketamine"), so
"an oral antidepressant" beside esketamine is not an oral route.

Molecule values: ``racemic_ketamine`` only when the text says racemic / (R,S);
``esketamine`` and ``arketamine`` for the enantiomers (names, (S)-/(R)-ketamine,
Spravato); ``hydroxynorketamine_metabolites`` for norketamine, HNK and "ketamine
metabolites"; ``unspecified_ketamine`` when the record names ketamine but no form
of it (no racemic / es- / ar- statement).

Primary design
--------------
`primary_design(tags)` picks one value: design tags from indexing outrank those
from text rules; within a source, `DESIGN_PRECEDENCE` decides (most specific
evidence-synthesis and trial designs first, then observational, case reports,
reviews, preclinical, commentary); ``"other"`` when no design tag fired.
``crossover_rct`` is emitted together with ``rct`` (a crossover RCT is an RCT,
so the ``rct`` facet finds it) and wins the primary design.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from . import design_model

# Dates the rules and the design model they ship with (design_model.json records the version it
# was trained under): stored in articles.tags_version, so a scheduled run re-tags what an older
# version tagged. rules-v4: the same rules, design model design-v2 (a second, TF-IDF view).
# rules-v5: the same model; the `depression` facet (psychiatric sense or another sense only), a
# title that says what the article is (editorial, guideline...) outranks the model and counts on
# an indexed record without a design publication type, and a ketamine analogue is not ketamine.
RULES_VERSION = "rules-v5"

DESIGNS = (
    "rct",
    "crossover_rct",
    "open_label_trial",
    "observational_cohort",
    "case_control",
    "case_report_series",
    "systematic_review",
    "meta_analysis",
    "narrative_review",
    "trial_protocol",
    "secondary_analysis",
    "preclinical_animal",
    "in_vitro",
    "guideline_consensus",
    "commentary_letter",
    "other",
)

FACET_VALUES: dict[str, tuple[str, ...]] = {
    "design": DESIGNS,
    "molecule": (
        "racemic_ketamine",
        "esketamine",
        "arketamine",
        "hydroxynorketamine_metabolites",
        "unspecified_ketamine",
    ),
    "route": ("intravenous", "intranasal", "oral", "intramuscular", "subcutaneous", "sublingual_buccal"),
    "population": (
        "treatment_resistant_depression",
        "major_depressive_disorder",
        "bipolar_depression",
        "suicidal_ideation",
        "ptsd",
        "perinatal_postpartum",
        "adolescents",
        "older_adults",
        "anxious_depression",
        "substance_use_comorbidity",
        "healthy_volunteers",
        "animals",
    ),
    "comparator": ("placebo", "active_placebo_midazolam", "ect", "other_antidepressant"),
    "outcome": (
        "madrs",
        "hamd",
        "bdi",
        "qids",
        "cssrs_suicidality",
        "remission",
        "response",
        "relapse",
        "dissociation_cadss",
        "blood_pressure",
        "cognition",
        "abuse_misuse",
        "urological",
    ),
    "theme": (
        "mechanism",
        "rapid_onset",
        "treatment_resistance",
        "durability_relapse_maintenance",
        "safety_side_effects",
        "misuse_abuse",
        "cost_access",
    ),
    # Whether the record concerns depression or suicidality in the psychiatric sense (see
    # `depression_sense`): generic, decided for every record, with or without ketamine.
    "depression": ("psychiatric", "other_sense_only"),
}

# Primary design: first match wins (within the stronger source, see module doc).
DESIGN_PRECEDENCE = (
    "meta_analysis",
    "systematic_review",
    "trial_protocol",
    "secondary_analysis",
    "crossover_rct",
    "rct",
    "open_label_trial",
    "case_control",
    "observational_cohort",
    "case_report_series",
    "guideline_consensus",
    "narrative_review",
    "preclinical_animal",
    "in_vitro",
    "commentary_letter",
)

# Designs that NLM's publication types and check tags decide for an indexed record.
INDEXING_DECIDES = frozenset(
    {
        "rct",
        "crossover_rct",
        "case_report_series",
        "systematic_review",
        "meta_analysis",
        "narrative_review",
        "commentary_letter",
        "guideline_consensus",
        "preclinical_animal",
    }
)

AWAITING_STATUSES = frozenset({"In-Process", "Publisher", "In-Data-Review"})
INDEXED_STATUSES = frozenset({"MEDLINE", "OLDMEDLINE"})

# -- vocabulary (regex fragments, used case-insensitively) ------------------------------------------

# Any form of ketamine named in text.
KET = r"(?:(?:es|ar|nor|hydroxynor|dehydronor)?ketamin(?:e|a|um)?s?(?:'s)?\b|\bspravato\b|\bketalar\b)"

_NUM = r"(?:\d+|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)"
# Animal names (species, lab strains, parasites), matched as whole words.
ANIMAL_WORDS = frozenset(
    """
rat rats mice mouse murine rodent rodents dog dogs canine cat cats feline kitten kittens puppies pups rabbit rabbits
monkey monkeys macaque macaques primate primates marmoset marmosets baboon baboons chimpanzee chimpanzees
pig pigs piglet piglets swine porcine sheep ovine lamb lambs ewe ewes ram rams cattle bovine cow cows calves calf
heifer heifers steer steers bull bulls horse horses equine pony ponies foal foals mare mares goat goats caprine
hamster hamsters guinea gerbil gerbils ferret ferrets mink minks zebrafish fish trout salmon carp chick chicks
chicken chickens hen hens rooster roosters cockerel cockerels broiler broilers bird birds avian pigeon pigeons quail
quails turkeys duck ducks ducklings geese frog frogs toad toads tadpole tadpoles amphibian amphibians xenopus newt
newts reptile reptiles lizard lizards snake snakes turtle turtles drosophila insect insects mosquito mosquitoes
mosquitos flies larva larvae nematode nematodes helminth helminths worm worms snail snails crab crabs lobster
lobsters crayfish squid squids mollusc molluscs mollusk mollusks urchin urchins starfish oyster oysters bee bees
honeybee honeybees tick ticks mite mites cockroach cockroaches locust locusts cricket crickets animal animals
vertebrate vertebrates invertebrate invertebrates mammal mammals mammalian wistar sprague dawley c57bl balb
opossum opossums bat bats deer squirrel squirrels vole voles rhesus cynomolgus dolphin dolphins whale whales
seal seals fox foxes wolves elephant elephants camel camels buffalo buffaloes schistosoma schistosomes
trypanosoma trypanosomes plasmodium leishmania toxoplasma ascaris trichinella tetrahymena paramecium amoeba
amoebae filariae filarial cestode cestodes trematode trematodes tapeworm tapeworms
""".split()
)
# -- rule table ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One text rule. It fires on the first match of `pattern` in the title, else the abstract,
    that no `veto_near` match surrounds (within `near` characters either side); `unless` vetoes
    the rule for the whole record, `requires` must also match somewhere in title+abstract.
    `topic=True` rules fire only on records that mention ketamine (see the module doc).
    Facet ``"signal"`` rules are internal cues combined in `_combine_designs`, never emitted."""

    id: str
    facet: str
    value: str
    pattern: str
    confidence: float = 0.8
    topic: bool = True
    veto_near: str | None = None
    near: int = 60
    unless: str | None = None
    requires: str | None = None
    field: str = "both"  # "title": match the title only
    triggers: tuple[str, ...] = ()  # lower-case substrings, one of which must occur (a fast pre-filter)
    words: frozenset[str] = frozenset()  # a word-list rule: fires on the first of these words (no pattern)


# Context that turns a mention of randomisation into something other than this study's design.
_LAB_ANIMAL = (
    r"(?:rats?|mice|mouse|dogs?|rabbits?|monkeys?|pigs?|piglets?|sheep|lambs?|cats|hamsters?|guinea[- ]pigs?|animals)"
)
_RANDOM_VETO = (
    r"non-?randomi|not (?:\w+ )?(?:been |be |being )?random|without randomi|quasi-?randomi|mendelian|"
    r"randomi[sz]ed(?:,? \w+){0,3} (?:survey|samples?|sampling)|"
    r"(?:basis|rationale|candidates?|need|needed|call) for (?:a |future )?(?:\w+ ){0,2}randomi|"
    r"for a (?:definitive|future|larger|large|full-scale|subsequent) (?:\w+ ){0,2}randomi|"
    r"(?:future|further|larger|more|additional|well-designed|adequately powered)\W+(?:\w+\W+){0,3}?randomi|"
    r"randomi\w+ (?:\w+ ){0,4}(?:are|is|will be) (?:needed|required|warranted|necessary)|"
    r"will be randomi|to be randomi|"
    r"\b(?:previous|prior|earlier|published|several|other|many|of|from|in|to) "
    r"(?:\w+[- ]){0,2}randomi[sz]ed (?:\w+[- ]){0,2}(?:trials|studies|RCTs)\b|"
    r"randomi[sz]ed (?:\w+ ){0,2}(?:trials|studies) (?:have|has|showed|show|suggest|indicate|found)|"
    r"post[- ]hoc|secondary analys|re-?analys|pooled analys|ancillary|\b" + _LAB_ANIMAL + r"\b"
)
# Whole-record context: evidence syntheses, protocols, secondary analyses quote RCTs they did not run.
_SYNTHESIS = (
    r"meta-?analy|systematic(?:ally)? (?:review|search|literature)|we searched|were searched|"
    r"literature search|search(?:ed)? (?:of )?(?:medline|pubmed|embase|cochrane|the literature|databases?)|"
    r"selection criteria|eligible (?:trials|studies)|trials were included|studies were included|"
    r"included (?:\d+ |all )?(?:randomi[sz]ed )?(?:controlled )?(?:trials|studies)|"
    r"(?:study|trial) protocol|protocol (?:for|of) (?:a|an|the) |will be (?:randomi|recruited|enrolled|assigned)|"
    r"post[- ]hoc analys|secondary analys|pooled analys|\bin this issue\b|\bet al\.? (?:\d+ )?(?:report|describe|present)"
)

# A study of a sample, not a report of cases: larger counts of subjects, statistics, controls.
_STUDY = (
    r"\b(?:[2-9]\d|\d{3,}|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred)\w* (?:\w+ ){0,3}"
    r"(?:patients|subjects|cases|children|women|men|individuals|persons|volunteers)\b|\bsignificant(?:ly)?\b|"
    r"\bp ?(?:<|=|>|less than)|\bmean\b|\bcontrol (?:group|subjects)\b|\brandomi|\bcontrolled\b|\bincidence\b|"
    r"\bsurvey\b|\bper ?cent\b|%"
)
# Human study subjects, counted against animal words to call a record an animal study.
HUMAN_WORDS = frozenset(
    """
patient patients men women man woman boy boys girl girls children child infant infants neonate neonates newborn
newborns volunteer volunteers human humans person persons people adult adults adolescent adolescents participant
participants outpatient outpatients inpatient inpatients pregnant mother mothers clinical hospital hospitals
physician physicians surgeon surgeons
""".split()
)
# Animal-experiment words beyond species names.
ANIMAL_EXPERIMENT_WORDS = frozenset(
    """
intraperitoneal intraperitoneally sacrificed decapitated anesthetized anaesthetized inbred weanling weanlings litter
litters littermates embryo embryos oocyte oocytes spermatozoa larval hemolymph haemolymph ciliate ciliates protozoa
protozoan parasite parasites vivarium ovariectomized ovariectomised castrated hypophysectomized adrenalectomized
nephrectomized pinealectomized
""".split()
)

_R = Rule
RULES: tuple[Rule, ...] = (
    # ---- design: randomised trials (generic) -------------------------------------------------
    _R(
        "design.rct.randomized",
        "design",
        "rct",
        r"\brandomi[sz](?:ed|ation|ing|e)\b|"
        r"\brandomly (?:\w+ ){0,2}?(?:assigned|allocated|divided|distributed (?:to|into|among|between)|selected to receive|given|received|"
        r"receiving|chosen to receive|placed|entered|treated|administered)\b|"
        r"\b(?:assigned|allocated|divided|distributed|given|treated|chosen|entered|placed)\b(?: \w+){0,4}? at random\b|"
        r"\bat random (?:to|into|between)\b|\bon a random basis\b|\bin (?:a )?random(?:i[sz]ed)? (?:order|sequence|fashion|manner)\b",
        0.85,
        topic=False,
        veto_near=_RANDOM_VETO,
        unless=_SYNTHESIS,
    ),
    _R("design.crossover", "signal", "crossover", r"\bcross[- ]?over\b|\blatin[- ]square\b", topic=False),
    _R(
        "design.blinded_placebo",
        "signal",
        "blinded_placebo",
        r"\bdouble[- ]?blind\w*|\bplacebo[- ]controlled\b",
        topic=False,
    ),
    # ---- design: other trials and observational designs -------------------------------------
    _R(
        "design.open_label",
        "design",
        "open_label_trial",
        r"\bopen[- ]label\w*|\bopen (?:pilot |prospective |clinical )?(?:trial|study)\b|\bsingle[- ]arm\b|"
        r"\buncontrolled (?:pilot |open |clinical )?(?:trial|study)\b|\bnon-?randomi[sz]ed (?:\w+ ){0,2}(?:trial|study)\b",
        0.75,
        topic=False,
    ),
    _R(
        "design.protocol",
        "design",
        "trial_protocol",
        r"\b(?:study|trial) protocol\b|\bprotocol (?:for|of) (?:a|an|the) (?:\w+ ){0,4}(?:trial|study)\b|"
        r"\bwill be randomi[sz]ed\b|\bparticipants will (?:be|receive)\b|\bpatients will be (?:randomi|recruited|enrolled|assigned)",
        0.8,
        topic=False,
    ),
    _R(
        "design.secondary_analysis",
        "design",
        "secondary_analysis",
        r"\bpost[- ]hoc analys[ie]s\b|\bsecondary analys[ie]s\b|\bpooled analys[ie]s of\b|\bexploratory analys[ie]s of\b|"
        r"\bre-?analys[ie]s of\b|\bancillary (?:study|analysis)\b",
        0.8,
        topic=False,
    ),
    _R(
        "design.cohort",
        "design",
        "observational_cohort",
        r"\bcohort(?: study)?\b|\bretrospective(?:ly)? (?:\w+ ){0,2}(?:study|review|analysis|chart|cohort|data)\b|"
        r"\bprospective (?:observational|cohort|naturalistic|follow-up) study\b|\bobservational (?:study|data|cohort)\b|"
        r"\bnaturalistic (?:study|setting|sample)\b|\bchart review\b|\breal[- ]world\b|\bregistry\b|\bmedical records\b",
        0.7,
        topic=False,
        unless=_SYNTHESIS,
    ),
    _R(
        "design.case_control",
        "design",
        "case_control",
        r"\bcase[- ]control(?:led)? (?:study|design|studies)\b|\bmatched (?:healthy )?controls\b",
        0.75,
        topic=False,
    ),
    # ---- design: case reports -----------------------------------------------------------------
    _R(
        "design.case_report.named",
        "design",
        "case_report_series",
        r"\bcase reports?\b|\bcase series\b|\bcase (?:history|presentation|study of a)\b|"
        r"\bapropos of (?:a|an|one|\d+|two|three|four|five|six|seven|eight|nine|ten) (?:\w+ )?cases?\b|"
        r"\b(?:report|reports|presentation|description) of (?:a|an|one|two|three|four|five|\d) (?:\w+ ){0,3}cases?\b",
        0.85,
        topic=False,
        veto_near=r"review of (?:\d+|the) |searched|literature (?:search|review) of",
    ),
    _R(
        "design.case_report.we_report",
        "design",
        "case_report_series",
        r"\b(?:we|the authors?|this paper|this article|this report) (?:\w+ )?(?:report|describe|present|discuss)s? "
        r"(?:here |herein )?(?:on )?(?:a|an|one|the case of|two|three|four|five|\d) (?:\w+[- ]){0,4}?"
        r"(?:case|cases|patient|patients|man|woman|boy|girl|child|infant|neonate|newborn|family|sibs|siblings|"
        r"brothers|sisters|twins|kindred|instance)\b",
        0.85,
        topic=False,
    ),
    _R(
        "design.case_report.is_reported",
        "design",
        "case_report_series",
        r"\b(?:a|an|one|two|three|four|five|six|seven|eight|\d) (?:\w+[- ]){0,4}?(?:case|cases|patient|patients|"
        r"instance|instances|family|families|sibs|siblings|twins|brothers|sisters|kindred|example|examples)"
        r"(?: \w+){0,12}? (?:is|are|was|were|has been|have been) (?:here |herein |also |briefly )?"
        r"(?:reported|described|presented|documented|discussed)\b",
        0.8,
        topic=False,
        veto_near=r"\b(?:previously|have been|has been|had been) (?:reported|described)|\bin the literature\b|"
        r"\breported in\b",
    ),
    _R(
        "design.case_report.patients_described",
        "design",
        "case_report_series",
        r"\b(?:patients?|cases?|infants?|children|siblings|sibs|family|families|kindred|boy|girl|man|woman|twins)\b"
        r"(?: \w+){0,15}? (?:is|are|was|were) (?:\w+ )?(?:described|presented|reported)\b",
        0.7,
        topic=False,
        veto_near=r"\b(?:previously|have been|has been|had been) (?:reported|described)|\bin the literature\b",
        unless=_STUDY,
    ),
    _R(
        "design.case_report.age",
        "design",
        "case_report_series",
        r"\b(?:a|an|one|this|our) \d+[- ](?:year|yr|month|week|day)s?[- ]old\b|"
        r"\b(?:a|an|one|this|our) (?:\w+[- ]){1,3}(?:year|month|week|day)[- ]old\b|"
        r"\b(?:a|an|one|this|our) (?:\w+ ){0,2}(?:man|woman|boy|girl|infant|neonate|newborn|patient),? aged \d+",
        0.8,
        topic=False,
    ),
    _R(
        "design.case_report.a_patient",
        "design",
        "case_report_series",
        r"\b(?:in|of|on|to) (?:a|an|one) (?:\w+[- ]){0,3}?(?:patient|man|woman|boy|girl|child|infant|neonate|newborn) "
        r"(?:with|who|after|following|suffering|having|receiving|treated|undergoing|in whom)\b|"
        r"^(?:a|an) (?:\w+[- ]){0,3}?(?:patient|man|woman|boy|girl|child|infant|neonate|newborn) (?:with|who)\b|"
        r"\b(?:this|the) (?:patient|man|woman|boy|girl|infant|child)(?:'s)? (?:was|had|has|is|developed|died|"
        r"recovered|presented|received|underwent|remained|showed|became)\b",
        0.7,
        topic=False,
    ),
    # ---- design: evidence syntheses and reviews -------------------------------------------------
    _R(
        "design.meta_analysis",
        "design",
        "meta_analysis",
        r"\bmeta-?analy\w+|\bmeta-?regression\b|\bpooled (?:odds ratio|risk ratio|relative risk|estimate|effect size)s?\b",
        0.9,
        topic=False,
        veto_near=r"\bmendelian\b|\b(?:previous|prior|earlier|recent|published) meta|meta-analyses? (?:have|has) ",
    ),
    _R(
        "design.systematic_review",
        "design",
        "systematic_review",
        r"\bsystematic(?:ally)? (?:\w+ )?(?:review|search|literature|searched)\w*|\bPRISMA\b|\bscoping review\b|"
        r"\bumbrella review\b|\bcochrane review\b|\bwe searched\b|\b(?:databases|MEDLINE|PubMed|Embase)\b(?: \w+){0,4} (?:were|was) searched\b",
        0.85,
        topic=False,
        veto_near=r"\b(?:previous|prior|earlier|recent|published) systematic",
    ),
    _R(
        "design.review.self",
        "design",
        "narrative_review",
        r"\b(?:this|the present|our) (?:\w+ ){0,3}review\b|\bwe (?:\w+ )?review\b|\b(?:an |a brief |a short |a critical )?overview\b|"
        r"\b(?:current|recent|present) (?:concepts|knowledge|status|views?|developments|trends|advances|understanding)\b|"
        r"\b(?:advances|progress|developments|update) (?:in|on)\b|\bstate of the art\b",
        0.65,
        topic=False,
        veto_near=r"\bchart\b|\brecords?\b|\bretrospective\b|\bpeer review|review board|\bsystematic",
        unless=r"\bwe (?:studied|investigated|examined|measured|compared|treated|evaluated|determined|found|performed)\b|"
        r"\b(?:randomi[sz]ed|double[- ]blind|placebo)\b",
    ),
    _R(
        "design.review.title",
        "design",
        "narrative_review",
        r"\breview\b|:\s*(?:an? )?(?:overview|update)\b",
        0.7,
        topic=False,
        field="title",
        veto_near=r"\bcases?\b|\bcase report|\bexperience\b|\bseries\b|\bsystematic|\bmeta-?analy|\bpatients\b",
    ),
    _R(
        "design.review.literature",
        "design",
        "narrative_review",
        r"\breview(?:s|ed|ing)? (?:of )?(?:the )?(?:literature|current|recent|available|existing|published|evidence)\b|"
        r"\ba (?:\w+ ){0,2}review of\b",
        0.6,
        topic=False,
        veto_near=r"\bcases?\b|\bpatients?\b|\bchart\b|\brecords?\b|\bsystematic",
    ),
    # ---- design: guidance and commentary --------------------------------------------------------
    _R(
        "design.guideline",
        "design",
        "guideline_consensus",
        r"\b(?:clinical |practice )?guidelines? (?:for|on|from)\b|\bconsensus (?:statement|conference|recommendations?|"
        r"panel|guidelines?|report|document)\b|\bposition (?:statement|paper)\b|\bexpert (?:panel|consensus)\b|\bdelphi\b|"
        r"\bwe recommend\b|\brecommendations (?:for|from|of|on) the\b",
        0.75,
        topic=False,
    ),
    _R(
        "design.commentary",
        "design",
        "commentary_letter",
        r"\bletter to the editor\b|\b(?:this|in this) (?:editorial|commentary|letter|viewpoint|perspective)\b|"
        r"\bcommentary on\b|\bcomment on\b|\breply to\b|\bin response to\b|\bwe read with (?:great )?interest\b|"
        r"\bin this issue\b",
        0.75,
        topic=False,
    ),
    # ---- design: preclinical --------------------------------------------------------------------
    _R(
        "design.in_vitro",
        "design",
        "in_vitro",
        r"\bin vitro\b|\bcell (?:culture|line)s?\b|\bcultured (?:\w+ ){0,2}(?:cells|neurons|fibroblasts|cultures)\b|"
        r"\b(?:brain |hippocampal |cortical )?slices\b|\bhomogenates?\b|\bsynaptosom\w+|\bmicrosom\w+|\bisolated "
        r"(?:perfused )?(?:\w+ )?(?:hearts?|organs?|muscles?|tissues?|cells|hepatocytes|mitochondria)\b|\bHEK[- ]?293\b|"
        r"\bPC12\b|\bSH-SY5Y\b",
        0.7,
        topic=False,
    ),
    _R("population.animals", "population", "animals", "", 0.8, topic=False, words=ANIMAL_WORDS),
    _R("design.animal_experiment", "signal", "animal_experiment", "", topic=False, words=ANIMAL_EXPERIMENT_WORDS),
    # ---- molecule (topic) -------------------------------------------------------------------------
    _R(
        "molecule.esketamine",
        "molecule",
        "esketamine",
        r"\besketamin\w*|(?<![\w,/(])(?:\(S\)|S\(\+\)|\(S\)-?\(\+\)|S|\(\+\)|S-\(\+\))-?\s?ketamin\w*|\bspravato\b|\bketanest[- ]?S\b",
        0.95,
    ),
    _R(
        "molecule.arketamine",
        "molecule",
        "arketamine",
        r"\barketamin\w*|(?<![\w,/(])(?:\(R\)|R\(-\)|\(R\)-?\(-\)|R|\(-\)|R-\(-\))-?\s?ketamin\w*",
        0.95,
    ),
    _R(
        "molecule.racemic",
        "molecule",
        "racemic_ketamine",
        r"\bracemic (?:\w+ ){0,2}?ketamin\w*|\(R,\s?S\)-?\s?ketamin\w*|\(R/S\)-?\s?ketamin\w*|\bR,\s?S-ketamin\w*|"
        r"\(±\)-?\s?ketamin\w*|\bketalar\b|\bketamine racemate\b",
        0.95,
    ),
    _R(
        "molecule.metabolites",
        "molecule",
        "hydroxynorketamine_metabolites",
        r"\b(?:\(2[RS],\s?6[RS]\)-)?(?:hydroxy-?|dehydro-?)?norketamin\w*|\bHNKs?\b|\bketamine(?:'s)? metabolites?\b|"
        r"\bmetabolites? of (?:\w+ )?ketamine\b",
        0.9,
    ),
    _R("molecule.unspecified", "molecule", "unspecified_ketamine", r"(?<![-\w(),/±])ketamin(?:e|a)?\b", 0.7),
    # ---- route (topic, anchored to a ketamine mention) -----------------------------------------------
    _R(
        "route.intravenous",
        "route",
        "intravenous",
        rf"\b(?:intravenous(?:ly)?|i\.v\.|IV|infusions?|infused|bolus)\b(?:\W+\w+){{0,3}}?\W+{KET}|"
        rf"{KET}(?:\W+\w+){{0,3}}?\W+(?:intravenous(?:ly)?|i\.v\.|IV|infusions?|infused|bolus)\b",
        0.85,
    ),
    _R(
        "route.intranasal",
        "route",
        "intranasal",
        rf"\b(?:intranasal(?:ly)?|nasal(?:ly)?|nasal spray|insufflat\w+)\b(?:\W+\w+){{0,3}}?\W+{KET}|"
        rf"{KET}(?:\W+\w+){{0,3}}?\W+(?:intranasal(?:ly)?|nasal(?:ly)?|nasal spray|insufflat\w+)\b",
        0.85,
    ),
    _R(
        "route.oral",
        "route",
        "oral",
        rf"\b(?:oral(?:ly)?|per os)\b(?:\W+\w+){{0,2}}?\W+{KET}|"
        rf"{KET}(?:\W+\w+){{0,3}}?\W+(?:oral(?:ly)?|per os)\b(?!\W+(?:\w+\W+)?(?:antidepressants?|ssris?|snris?|"
        r"medications?|drugs?|agents?|treatments?|therap\w+|tablets? of|placebo))",
        0.8,
    ),
    _R(
        "route.intramuscular",
        "route",
        "intramuscular",
        rf"\b(?:intramuscular(?:ly)?|i\.m\.|IM)\b(?:\W+\w+){{0,3}}?\W+{KET}|"
        rf"{KET}(?:\W+\w+){{0,3}}?\W+(?:intramuscular(?:ly)?|i\.m\.|IM)\b",
        0.85,
    ),
    _R(
        "route.subcutaneous",
        "route",
        "subcutaneous",
        rf"\b(?:subcutaneous(?:ly)?|s\.c\.)(?:\W+\w+){{0,3}}?\W+{KET}|"
        rf"{KET}(?:\W+\w+){{0,3}}?\W+(?:subcutaneous(?:ly)?|s\.c\.)",
        0.85,
    ),
    _R(
        "route.sublingual_buccal",
        "route",
        "sublingual_buccal",
        rf"\b(?:sublingual(?:ly)?|buccal(?:ly)?|transmucosal|lozenges?|troches?|wafers?)\b(?:\W+\w+){{0,3}}?\W+{KET}|"
        rf"{KET}(?:\W+\w+){{0,3}}?\W+(?:sublingual(?:ly)?|buccal(?:ly)?|transmucosal|lozenges?|troches?|wafers?)\b",
        0.85,
    ),
    # ---- population (topic) ------------------------------------------------------------------------
    _R(
        "population.trd",
        "population",
        "treatment_resistant_depression",
        r"\btreatment[- ](?:resistant|refractory) (?:\w+ ){0,3}?(?:depress\w*|mood disorders?|MDD)|\bTRD\b|"
        r"\b(?:refractory|resistant) (?:\w+ )?depress\w*|\bresistant to (?:\w+ ){0,2}(?:antidepressants?|treatments?)\b|"
        r"\b(?:insufficient|inadequate|non-?|failed to) ?respon\w* to (?:two|2|at least two|≥ ?2|two or more|multiple) ",
        0.85,
    ),
    _R(
        "population.mdd",
        "population",
        "major_depressive_disorder",
        r"\bmajor depress\w*|\bMDD\b|\bunipolar depress\w*|\bdepressive disorders?\b|\bmajor depressive\b",
        0.85,
    ),
    _R(
        "population.bipolar",
        "population",
        "bipolar_depression",
        r"\bbipolar (?:I |II |1 |2 )?(?:depress\w*|disorders?|patients|illness|affective)|\bbipolar\b",
        0.8,
    ),
    _R(
        "population.suicidal",
        "population",
        "suicidal_ideation",
        r"\bsuicidal (?:ideation|thoughts?|patients|inpatients|individuals|adults|behaviou?rs?|crisis|depression)\b|"
        r"\b(?:at|high|imminent|elevated) (?:\w+ )?risk (?:of|for) suicide\b|\bsuicide attempt\w*|\bsuicidality\b|"
        r"\bacutely suicidal\b",
        0.8,
    ),
    _R("population.ptsd", "population", "ptsd", r"\bPTSD\b|\bpost-?traumatic stress\b", 0.9),
    _R(
        "population.perinatal",
        "population",
        "perinatal_postpartum",
        r"\bpost-?partum\b|\bperi-?natal\b|\bperi-?partum\b|\bpuerper\w+|\bcesarean\b|\bcaesarean\b|\bantenatal\b|"
        r"\bprenatal depress\w*|\bpregnan\w+ women\b|\bmaternal depress\w*",
        0.85,
    ),
    _R(
        "population.adolescents",
        "population",
        "adolescents",
        r"\badolescen\w+|\bteen(?:ager)?s?\b|\byouths?\b|\bp(?:a)?ediatric\b|\bchildren\b|\bjuveniles? (?:with|patients)\b",
        0.8,
    ),
    _R(
        "population.older_adults",
        "population",
        "older_adults",
        r"\bolder (?:adults|patients|people|persons|individuals)\b|\belderly\b|\bgeriatric\b|\blate[- ]life\b|"
        r"\baged (?:6[05]|7\d|8\d) (?:years )?(?:and|or) (?:older|over|above)\b",
        0.85,
    ),
    _R(
        "population.anxious",
        "population",
        "anxious_depression",
        r"\banxious (?:depression|distress|features)\b|\b(?:with|and) (?:comorbid )?anxiety (?:disorders?|symptoms)?\b|"
        r"\bcomorbid anxiety\b",
        0.7,
    ),
    _R(
        "population.substance",
        "population",
        "substance_use_comorbidity",
        r"\b(?:alcohol|substance|cocaine|opioid|opiate|cannabis|methamphetamine|stimulant) (?:use )?(?:disorders?|dependence)\b|"
        r"\b(?:alcoholics?|alcoholism|heroin (?:users|dependence))\b|\bcomorbid (?:alcohol|substance)\b|\bdual diagnosis\b",
        0.8,
    ),
    _R(
        "population.healthy",
        "population",
        "healthy_volunteers",
        r"\bhealthy (?:human )?(?:volunteers?|subjects|participants|controls?|individuals|adults|men|women|males|females)\b",
        0.85,
    ),
    # ---- comparator (topic) --------------------------------------------------------------------------
    _R(
        "comparator.placebo",
        "comparator",
        "placebo",
        r"\bplacebos?\b|\bsaline (?:placebo|control|infusions?)\b|\bsham\b",
        0.85,
    ),
    _R("comparator.midazolam", "comparator", "active_placebo_midazolam", r"\bmidazolam\b|\bactive placebo\b", 0.8),
    _R("comparator.ect", "comparator", "ect", r"\belectroconvulsive\b|\bECT\b|\belectroshock\b", 0.85),
    _R(
        "comparator.other_antidepressant",
        "comparator",
        "other_antidepressant",
        r"\b(?:versus|vs\.?|compared (?:with|to)|relative to|than|or)\s(?:\w+\s){0,3}?(?:an? )?(?:SSRIs?|SNRIs?|"
        r"escitalopram|citalopram|sertraline|fluoxetine|paroxetine|venlafaxine|duloxetine|bupropion|mirtazapine|"
        r"quetiapine|lithium|tricyclic\w*|imipramine|amitriptyline|nortriptyline|clomipramine|"
        r"(?:\w+ )?antidepressants?|psilocybin|brexanolone|zuranolone)\b",
        0.7,
    ),
    # ---- outcome (topic) -------------------------------------------------------------------------------
    _R("outcome.madrs", "outcome", "madrs", r"\bMADRS\b|\bMontgomery[- ]{1,2}(?:Å|A)sberg\b", 0.95),
    _R(
        "outcome.hamd",
        "outcome",
        "hamd",
        r"\bHAM-?D\w*|\bHDRS\w*|\bHRSD\w*|\bHamilton (?:\w+ ){0,2}(?:Depression|Rating Scale for Depression)",
        0.95,
    ),
    _R("outcome.bdi", "outcome", "bdi", r"\bBDI(?:-II)?\b|\bBeck Depression Inventory\b", 0.95),
    _R("outcome.qids", "outcome", "qids", r"\bQIDS\S*|\bQuick Inventory of Depressive\b", 0.95),
    _R(
        "outcome.suicidality",
        "outcome",
        "cssrs_suicidality",
        r"\bC-?SSRS\b|\bColumbia[- ]Suicide\b|\bBeck Scale for Suicid\w+|\bScale for Suicid\w+ Ideation\b|\bBSS\b|"
        r"\bSSI\b|\bsuicidality\b|\bsuicidal (?:ideation|thoughts?) (?:\w+ ){0,2}(?:scores?|decreased|reduced|improved|"
        r"reduction|ratings?|outcomes?)|\b(?:reduc\w+|decreas\w+|improv\w+|resolution|change) (?:\w+ ){0,2}(?:in|of) "
        r"(?:\w+ )?suicid\w+",
        0.85,
    ),
    _R("outcome.remission", "outcome", "remission", r"\bremission\w*|\bremitt?ed\b|\bremitters?\b", 0.85),
    _R(
        "outcome.response",
        "outcome",
        "response",
        r"\bresponse rates?\b|\bnon-?responders?\b|\bresponders?\b|\b(?:clinical|treatment|antidepressant|therapeutic) "
        r"response\b|\b50 ?% (?:\w+ ){0,3}(?:reduction|improvement|decrease)\b",
        0.8,
    ),
    _R(
        "outcome.relapse",
        "outcome",
        "relapse",
        r"\brelaps\w+|\btime to (?:relapse|recurrence)\b|\b(?:maintenance|maintain\w*) of (?:response|remission)\b",
        0.85,
    ),
    _R(
        "outcome.dissociation",
        "outcome",
        "dissociation_cadss",
        r"\bCADSS\b|\bClinician[- ]Administered Dissociative\b|\bdissociat\w+|\bpsychotomimetic\b|\bBPRS\b",
        0.85,
    ),
    _R(
        "outcome.blood_pressure",
        "outcome",
        "blood_pressure",
        r"\bblood pressure\b|\bhypertensi\w+|\bsystolic\b|\bdiastolic\b|\bh(?:a)?emodynamic\w*|\bheart rate\b",
        0.85,
    ),
    _R(
        "outcome.cognition",
        "outcome",
        "cognition",
        r"\bcogniti\w+|\bneurocognit\w+|\bmemory\b|\bexecutive function\w*|\bDSST\b|\bdigit symbol\b|\btrail making\b|"
        r"\bpsychomotor (?:speed|performance)\b|\bneuropsycholog\w+",
        0.85,
    ),
    _R(
        "outcome.abuse",
        "outcome",
        "abuse_misuse",
        r"\babuse (?:potential|liability)\b|\bmisuse\b|\bcraving\b|\bself-administ\w+|\bconditioned place preference\b|"
        r"\b(?:drug|ketamine) (?:liking|seeking|dependence)\b|\bwithdrawal symptoms\b",
        0.8,
    ),
    _R(
        "outcome.urological",
        "outcome",
        "urological",
        r"\bcystitis\b|\buropath\w+|\burolog\w+|\bbladder\b|\blower urinary tract\b|\burinary (?:tract )?symptoms\b",
        0.85,
    ),
    # ---- theme (topic) ----------------------------------------------------------------------------------
    _R(
        "theme.mechanism",
        "theme",
        "mechanism",
        r"\bNMDA\w*|\bN-methyl-D-aspartate\b|\bglutamat\w+|\bBDNF\b|\bbrain-derived neurotrophic\b|\bsynap\w+|"
        r"\bplasticity\b|\bneuroplast\w+|\bmTOR\w*|\bAMPA\w*|\bGluN2B\b|\beEF2\b|\bTrkB\b|\bneurotroph\w+|"
        r"\bmechanisms? of (?:action|\w+ action)\b|\bneurobiolog\w+|\breceptor (?:antagonis\w+|blockade)\b",
        0.8,
    ),
    _R(
        "theme.rapid_onset",
        "theme",
        "rapid_onset",
        r"\brapid(?:ly)?[- ](?:acting|onset|antidepressant\w*|and (?:sustained|robust))\b|\bfast[- ]acting\b|"
        r"\brapid (?:onset|relief|reduction|improvement|effects?|antidepressant\w*|action)\b|\bwithin (?:\d+ |a few |several )?"
        r"(?:hours?|minutes?|24 ?h(?:ours)?|a day|one day|days)\b|\bover minutes\b",
        0.8,
    ),
    _R(
        "theme.treatment_resistance",
        "theme",
        "treatment_resistance",
        r"\btreatment[- ](?:resistan\w+|refractory)|\b(?:refractory|resistant) (?:\w+ )?depress\w*|\bTRD\b|"
        r"\bresistant symptoms\b",
        0.85,
    ),
    _R(
        "theme.durability",
        "theme",
        "durability_relapse_maintenance",
        r"\brelaps\w+|\bmaintenance\b|\bdurab\w+|\bsustained (?:\w+ )?(?:effects?|response|remission|antidepressant)\b|"
        r"\blong[- ]term\b|\brepeated (?:infusions|doses|dosing|administrations?|treatments?)\b|"
        r"\bmaintain(?:ed|ing|s)? (?:the |an? )?(?:antidepressant )?(?:response|remission|improvement|effects?)\b",
        0.75,
    ),
    _R(
        "theme.safety",
        "theme",
        "safety_side_effects",
        r"\badverse (?:events?|effects?|reactions?)\b|\bside[- ]effects?\b|\bsafety\b|\btolerab\w+|\btoxicit\w+|"
        r"\bcomplications?\b|\bpsychotomimetic\b|\bdissociative (?:symptoms|effects)\b",
        0.8,
    ),
    _R(
        "theme.misuse",
        "theme",
        "misuse_abuse",
        r"\babuse\b|\bmisuse\b|\baddict\w+|\brecreational\b|\bself-administ\w+|\bconditioned place preference\b|"
        r"\bdiversion\b|\b(?:drug|substance) dependence\b|\bstreet (?:drug|use)\b",
        0.8,
    ),
    _R(
        "theme.cost_access",
        "theme",
        "cost_access",
        r"\bcosts?\b|\bcost-effective\w*|\beconomic\w*|\binsurance\b|\breimburs\w+|\bprice\w*|\baffordab\w+|"
        r"\bREMS\b|\baccess to\b|\bavailability\b|\bhealth services\b",
        0.75,
    ),
)

# Pre-filters: a rule runs only when one of these lower-case substrings occurs in title+abstract.
# They only make tagging fast; every substring is implied by the rule's pattern.
TRIGGERS: dict[str, tuple[str, ...]] = {
    "design.rct.randomized": ("random",),
    "design.crossover": ("cross", "latin"),
    "design.blinded_placebo": ("blind", "placebo"),
    "design.open_label": ("open", "single", "uncontrolled", "random"),
    "design.protocol": ("protocol", "will "),
    "design.secondary_analysis": ("analys", "ancillary"),
    "design.cohort": (
        "cohort",
        "retrospective",
        "prospective",
        "observational",
        "naturalistic",
        "chart",
        "real",
        "registry",
        "records",
    ),
    "design.case_control": ("control",),
    "design.case_report.named": ("case", "apropos"),
    "design.case_report.we_report": ("we ", "author", "this paper", "this article", "this report"),
    "design.case_report.is_reported": ("reported", "described", "presented", "documented", "discussed"),
    "design.case_report.patients_described": ("described", "presented", "reported"),
    "design.case_report.age": ("old", "aged"),
    "design.case_report.a_patient": ("patient", "man", "woman", "boy", "girl", "child", "infant", "neonate", "newborn"),
    "design.meta_analysis": ("meta", "pooled"),
    "design.systematic_review": ("systematic", "prisma", "scoping", "umbrella", "cochrane", "searched"),
    "design.review.self": (
        "review",
        "overview",
        "current",
        "recent",
        "present",
        "advances",
        "progress",
        "developments",
        "update",
        "state of",
    ),
    "design.review.title": ("review", "overview", "update"),
    "design.review.literature": ("review",),
    "design.guideline": ("guideline", "consensus", "position", "expert", "delphi", "recommend"),
    "design.commentary": (
        "letter",
        "editorial",
        "commentary",
        "viewpoint",
        "perspective",
        "comment",
        "reply",
        "response",
        "read with",
        "this issue",
    ),
    "design.in_vitro": (
        "vitro",
        "cell",
        "cultured",
        "slices",
        "homogenate",
        "synaptosom",
        "microsom",
        "isolated",
        "hek",
        "pc12",
        "sh-sy5y",
    ),
    "molecule.esketamine": ("ketamin", "spravato", "ketanest"),
    "molecule.arketamine": ("ketamin",),
    "molecule.racemic": ("ketamin", "ketalar"),
    "molecule.metabolites": ("norketamin", "hnk", "metabolite"),
    "route.intravenous": ("intraven", "i.v.", "iv", "infus", "bolus"),
    "route.intranasal": ("nasal", "insufflat"),
    "route.oral": ("oral", "per os"),
    "route.intramuscular": ("intramuscular", "i.m.", "im"),
    "route.subcutaneous": ("subcutaneous", "s.c."),
    "route.sublingual_buccal": ("sublingual", "buccal", "transmucosal", "lozenge", "troche", "wafer"),
}

# The same for whole-record patterns (`unless`/`requires`), keyed by the pattern text: lower-case
# substrings one of which every match of the pattern contains.
PATTERN_TRIGGERS: dict[str, tuple[str, ...]] = {
    _SYNTHESIS: (
        "meta",
        "systematic",
        "search",
        "selection criteria",
        "eligible",
        "included",
        "protocol",
        "will be",
        "hoc",
        "analys",
        "this issue",
        "et al",
    ),
}

# -- indexing tables ------------------------------------------------------------------------------------

# Publication type name -> (facet, value).
PUBLICATION_TYPE_TAGS: dict[str, tuple[str, str]] = {
    "Randomized Controlled Trial": ("design", "rct"),
    "Equivalence Trial": ("design", "rct"),
    "Pragmatic Clinical Trial": ("design", "rct"),
    "Case Reports": ("design", "case_report_series"),
    "Systematic Review": ("design", "systematic_review"),
    "Meta-Analysis": ("design", "meta_analysis"),
    "Network Meta-Analysis": ("design", "meta_analysis"),
    "Review": ("design", "narrative_review"),
    "Scoping Review": ("design", "systematic_review"),
    "Clinical Trial Protocol": ("design", "trial_protocol"),
    "Observational Study": ("design", "observational_cohort"),
    "Practice Guideline": ("design", "guideline_consensus"),
    "Guideline": ("design", "guideline_consensus"),
    "Consensus Development Conference": ("design", "guideline_consensus"),
    "Consensus Development Conference, NIH": ("design", "guideline_consensus"),
    "Letter": ("design", "commentary_letter"),
    "Editorial": ("design", "commentary_letter"),
    "Comment": ("design", "commentary_letter"),
    "News": ("design", "commentary_letter"),
    "Newspaper Article": ("design", "commentary_letter"),
}

# MeSH descriptor -> (facet, value, topic). Check tags Animals/Humans are handled in code.
MESH_TAGS: dict[str, tuple[str, str, bool]] = {
    "Cross-Over Studies": ("signal", "crossover", False),
    "Cohort Studies": ("design", "observational_cohort", False),
    "Prospective Studies": ("design", "observational_cohort", False),
    "Retrospective Studies": ("design", "observational_cohort", False),
    "Longitudinal Studies": ("design", "observational_cohort", False),
    "Case-Control Studies": ("design", "case_control", False),
    "In Vitro Techniques": ("design", "in_vitro", False),
    "Cells, Cultured": ("design", "in_vitro", False),
    "Depressive Disorder, Treatment-Resistant": ("population", "treatment_resistant_depression", True),
    "Depressive Disorder, Major": ("population", "major_depressive_disorder", True),
    "Bipolar Disorder": ("population", "bipolar_depression", True),
    "Suicidal Ideation": ("population", "suicidal_ideation", True),
    "Suicide, Attempted": ("population", "suicidal_ideation", True),
    "Stress Disorders, Post-Traumatic": ("population", "ptsd", True),
    "Depression, Postpartum": ("population", "perinatal_postpartum", True),
    "Adolescent": ("population", "adolescents", True),
    "Child": ("population", "adolescents", True),
    "Aged": ("population", "older_adults", True),
    "Aged, 80 and over": ("population", "older_adults", True),
    "Healthy Volunteers": ("population", "healthy_volunteers", True),
    "Alcoholism": ("population", "substance_use_comorbidity", True),
    "Opioid-Related Disorders": ("population", "substance_use_comorbidity", True),
    "Cocaine-Related Disorders": ("population", "substance_use_comorbidity", True),
    "Administration, Intranasal": ("route", "intranasal", True),
    "Infusions, Intravenous": ("route", "intravenous", True),
    "Injections, Intravenous": ("route", "intravenous", True),
    "Administration, Intravenous": ("route", "intravenous", True),
    "Administration, Oral": ("route", "oral", True),
    "Injections, Intramuscular": ("route", "intramuscular", True),
    "Injections, Subcutaneous": ("route", "subcutaneous", True),
    "Administration, Sublingual": ("route", "sublingual_buccal", True),
    "Administration, Buccal": ("route", "sublingual_buccal", True),
    "Placebos": ("comparator", "placebo", True),
    "Midazolam": ("comparator", "active_placebo_midazolam", True),
    "Electroconvulsive Therapy": ("comparator", "ect", True),
    "Remission Induction": ("outcome", "remission", True),
    "Recurrence": ("outcome", "relapse", True),
    "Cognition": ("outcome", "cognition", True),
    "Neuropsychological Tests": ("outcome", "cognition", True),
    "Blood Pressure": ("outcome", "blood_pressure", True),
    "Dissociative Disorders": ("outcome", "dissociation_cadss", True),
    "Cystitis": ("outcome", "urological", True),
    "Receptors, N-Methyl-D-Aspartate": ("theme", "mechanism", True),
    "Brain-Derived Neurotrophic Factor": ("theme", "mechanism", True),
    "Neuronal Plasticity": ("theme", "mechanism", True),
    "Glutamic Acid": ("theme", "mechanism", True),
    "Excitatory Amino Acid Antagonists": ("theme", "mechanism", True),
    "Substance-Related Disorders": ("theme", "misuse_abuse", True),
    "Costs and Cost Analysis": ("theme", "cost_access", True),
    "Cost-Benefit Analysis": ("theme", "cost_access", True),
    "Health Services Accessibility": ("theme", "cost_access", True),
}
# (descriptor, qualifier) -> (facet, value); topic facets.
MESH_QUALIFIER_TAGS: dict[tuple[str, str], tuple[str, str]] = {
    ("Ketamine", "adverse effects"): ("theme", "safety_side_effects"),
    ("Ketamine", "toxicity"): ("theme", "safety_side_effects"),
    ("Ketamine", "pharmacology"): ("theme", "mechanism"),
}
# Chemical / supplementary concept names (lower case) naming a ketamine form.
CHEMICAL_MOLECULES: tuple[tuple[str, str], ...] = (
    ("esketamine", "esketamine"),
    ("arketamine", "arketamine"),
    ("hydroxynorketamine", "hydroxynorketamine_metabolites"),
    ("norketamine", "hydroxynorketamine_metabolites"),
)

# -- compiled once -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Compiled:
    rule: Rule
    rx: re.Pattern | None
    veto: re.Pattern | None
    unless: re.Pattern | None
    requires: re.Pattern | None


def _c(p: str | None) -> re.Pattern | None:
    return re.compile(p, re.I) if p else None


RULES = tuple(replace(r, triggers=TRIGGERS[r.id]) if r.id in TRIGGERS else r for r in RULES)
_COMPILED: tuple[_Compiled, ...] = tuple(
    _Compiled(r, _c(r.pattern), _c(r.veto_near), _c(r.unless), _c(r.requires)) for r in RULES
)
_GENERIC = tuple(c for c in _COMPILED if not c.rule.topic)
_TOPIC = tuple(c for c in _COMPILED if c.rule.topic)
_TOKEN = re.compile(r"[a-z0-9]+")


def _check_tables() -> None:
    ids = [r.id for r in RULES]
    assert set(TRIGGERS) <= set(ids), "trigger for an unknown rule"
    assert len(ids) == len(set(ids)), "duplicate rule id"
    for r in RULES:
        assert r.facet == "signal" or r.value in FACET_VALUES[r.facet], r.id
    for facet, value in PUBLICATION_TYPE_TAGS.values():
        assert value in FACET_VALUES[facet]
    for facet, value, _ in MESH_TAGS.values():
        assert facet == "signal" or value in FACET_VALUES[facet]


_check_tables()

# -- helpers -----------------------------------------------------------------------------------------


def _fields(record: Mapping) -> tuple[str, str]:
    return (record.get("title") or "", record.get("abstract") or "")


def _author_keywords(record: Mapping) -> list[str]:
    return [k.get("keyword") or "" for k in record.get("keywords") or [] if (k.get("owner") or "").upper() != "NLM"]


class _Text:
    """One record's title and abstract, with what the rules share: the joined text, its lower-case
    form (for the substring pre-filters), its word tokens (for the word-list rules), and the
    answers of whole-record patterns already asked (several rules share `_SYNTHESIS`)."""

    __slots__ = ("fields", "joined", "low", "tokens", "token_set", "_found")

    def __init__(self, title: str, abstract: str):
        self.fields = (title, abstract)
        self.joined = title + "\n\n" + abstract
        self.low = self.joined.lower()
        self.tokens = _TOKEN.findall(self.low)
        self.token_set = frozenset(self.tokens)
        self._found: dict = {}

    def has(self, rx: re.Pattern) -> bool:
        """Whether `rx` matches anywhere in title + abstract (asked once per record)."""
        found = self._found.get(rx)
        if found is None:
            needles = PATTERN_TRIGGERS.get(rx.pattern)
            if needles is not None and not any(n in self.low for n in needles):
                found = False  # none of the substrings every match contains: no match
            else:
                found = rx.search(self.joined) is not None
            self._found[rx] = found
        return found


def _first_word(words: frozenset[str], text: _Text) -> str | None:
    found = words & text.token_set
    if not found:
        return None
    rx = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in sorted(found, key=len, reverse=True)) + r")\b", re.I)
    for field in text.fields:
        m = rx.search(field)
        if m:
            return m.group(0)
    return None


def _first_match(c: _Compiled, text: _Text) -> str | None:
    assert c.rx is not None, c.rule  # a rule without words has a pattern
    fields = text.fields[:1] if c.rule.field == "title" else text.fields
    for field in fields:
        if not field:
            continue
        for m in c.rx.finditer(field):
            if c.veto is not None:
                a, b = max(0, m.start() - c.rule.near), min(len(field), m.end() + c.rule.near)
                if c.veto.search(field[a:b]):
                    continue
            span = m.group(0).strip()
            return span[:160] if span else None
    return None


def _run(rules: Iterable[_Compiled], text: _Text) -> list[tuple[Rule, str]]:
    hits = []
    for c in rules:
        rule = c.rule
        if rule.triggers and not any(t in text.low for t in rule.triggers):
            continue
        if rule.words:
            evidence = _first_word(rule.words, text)
        else:
            if c.unless is not None and text.has(c.unless):
                continue
            if c.requires is not None and not text.has(c.requires):
                continue
            evidence = _first_match(c, text)
        if evidence is not None:
            hits.append((rule, evidence))
    return hits


def _tag(facet: str, value: str, method: str, evidence: str, confidence: float) -> dict:
    return {"facet": facet, "value": value, "method": method, "evidence": evidence, "confidence": confidence}


def _mesh_names(record: Mapping) -> set[str]:
    return {m.get("descriptor_name") for m in record.get("mesh") or []}


def is_indexed(record: Mapping) -> bool:
    """NLM has indexed the record: MEDLINE/OLDMEDLINE citation status with MeSH headings."""
    return record.get("citation_status") in INDEXED_STATUSES and bool(record.get("mesh"))


def awaiting_indexing(record: Mapping) -> bool:
    """True when the record lacks NLM's indexing (MeSH, publication types): still in process
    (In-Process, In-Data-Review), supplied by the publisher (Publisher), or never to be indexed
    (PubMed-not-MEDLINE and the like) and without MeSH. Counts over such records rest on text
    rules alone and should be read with care."""
    status = record.get("citation_status")
    if status in AWAITING_STATUSES:
        return True
    if status in INDEXED_STATUSES:
        return not record.get("mesh")
    return not record.get("mesh")


_GATE_WORDS = ("ketamin", "spravato", "ketalar")


def _names_ketamine(text: str) -> bool:
    low = text.lower()
    return any(w in low for w in _GATE_WORDS)


def mentions_ketamine(record: Mapping, *, use_indexing: bool = True, _low: str | None = None) -> bool:
    """The topic gate: ketamine (any form: es-, ar-, nor-, hydroxynor-; Spravato, Ketalar) named in the
    title, abstract or author keywords, or with indexing in MeSH, chemicals, supplementary concepts or
    NLM keywords."""
    if _low is None:
        title, abstract = _fields(record)
        _low = (title + "\n\n" + abstract).lower()
    if any(w in _low for w in _GATE_WORDS):
        return True
    if any(_names_ketamine(k) for k in _author_keywords(record)):
        return True
    if use_indexing:
        names = [m.get("descriptor_name") or "" for m in record.get("mesh") or []]
        names += [c.get("name") or "" for c in record.get("chemicals") or []]
        names += [s.get("name") or "" for s in record.get("supplementary_concepts") or []]
        names += [k.get("keyword") or "" for k in record.get("keywords") or []]
        return any(_names_ketamine(n) for n in names)
    return False


# -- the tagger ---------------------------------------------------------------------------------------


def tag_article(record: Mapping, *, use_indexing: bool = True) -> list[dict]:
    """All tags of one article record (see the module doc). Deterministic; one tag per
    (facet, value), the most authoritative source winning (indexing over text rules)."""
    text = _Text(*_fields(record))
    topic = mentions_ketamine(record, use_indexing=use_indexing, _low=text.low)

    generic_hits = _run(_GENERIC, text)
    hits = generic_hits + _run(_TOPIC, text) if topic else generic_hits

    signals: dict[str, str] = {}
    text_tags: list[dict] = []
    for rule, evidence in hits:
        if rule.facet == "signal":
            signals.setdefault(rule.value, evidence)
        else:
            text_tags.append(_tag(rule.facet, rule.value, f"rule:{rule.id}", evidence, rule.confidence))

    index_tags: list[dict] = []
    indexed = False
    if use_indexing:
        indexed = is_indexed(record)
        index_tags = _indexing_tags(record, topic, signals)

    text_tags = _combine_text(text_tags, signals, text)
    declared = title_declares(text.fields[0])
    if indexed:
        text_tags = [t for t in text_tags if not (t["facet"] == "design" and t["value"] in INDEXING_DECIDES)]
        if declared is not None and any(
            t["facet"] == "design" for t in index_tags if t["method"] == "publication_type"
        ):
            declared = None  # the indexers gave the record a design: theirs stands
    else:  # the design model decides rct, case reports, reviews and animal studies from the text
        text_tags = _apply_design_model(record, text, generic_hits, text_tags)
        if declared is not None:  # a title that says what the article is outweighs the model
            text_tags = [t for t in text_tags if not t["method"].startswith("model:")]
    if declared is not None:
        value, span = declared
        text_tags = [_tag("design", value, f"rule:{TITLE_DECLARES}", span, 0.9)] + [
            t for t in text_tags if not (t["facet"] == "design" and t["value"] == value)
        ]
    tags = _merge(index_tags, text_tags)
    tags = _add_crossover(tags, signals)
    if topic:
        tags = _analogue_is_not_ketamine(tags, text)
        tags = _molecule_fallback(tags)
    return tags + depression_sense(record, use_indexing=use_indexing, _text=text)


def _animal_human_counts(text: _Text) -> tuple[int, int]:
    n_animal = sum(1 for w in text.tokens if w in ANIMAL_WORDS or w in ANIMAL_EXPERIMENT_WORDS)
    n_human = sum(1 for w in text.tokens if w in HUMAN_WORDS)
    return n_animal, n_human


def _model_inputs(
    record: Mapping, text: _Text, generic_hits: list[tuple[Rule, str]], text_tags: list[dict]
) -> tuple[set[str], set[str], Counter]:
    n_animal, n_human = _animal_human_counts(text)
    return design_model.features(
        *text.fields,
        rule_ids=[rule.id for rule, _ in generic_hits],
        combined_designs=[t["value"] for t in text_tags if t["facet"] == "design"],
        n_animal=n_animal,
        n_human=n_human,
        structured=any(s.get("label") for s in record.get("abstract_sections") or []),
    )


def design_features(record: Mapping) -> tuple[set[str], set[str], Counter]:
    """The design model's input for one record, from its title and abstract alone: (fixed
    features, scaled word features, term counts), exactly as `tag_article` computes them
    (`harvest.train_tagger` trains on this)."""
    text = _Text(*_fields(record))
    generic_hits = _run(_GENERIC, text)
    signals: dict[str, str] = {}
    text_tags = []
    for rule, evidence in generic_hits:
        if rule.facet == "signal":
            signals.setdefault(rule.value, evidence)
        else:
            text_tags.append(_tag(rule.facet, rule.value, f"rule:{rule.id}", evidence, rule.confidence))
    return _model_inputs(record, text, generic_hits, _combine_text(text_tags, signals, text))


def _apply_design_model(
    record: Mapping, text: _Text, generic_hits: list[tuple[Rule, str]], text_tags: list[dict]
) -> list[dict]:
    """Replace the rules' verdict on the modelled designs (rct, case_report_series,
    narrative_review, preclinical_animal) with the design model's (`harvest.design_model`);
    the evidence is the rule spans and words that pushed the model's score up most."""
    model = design_model.load_model()
    fixed, words, counts = _model_inputs(record, text, generic_hits, text_tags)
    decisions = model.decide(fixed, words, counts)
    out = [t for t in text_tags if not (t["facet"] == "design" and t["value"] in design_model.MODELLED_VALUES)]
    if not decisions:
        return out
    rule_evidence = {rule.id: evidence for rule, evidence in generic_hits}
    design_evidence = {t["value"]: t["evidence"] for t in text_tags if t["facet"] == "design"}
    title, abstract = text.fields
    for label, score, contributions in decisions:
        evidence = design_model.readable_evidence(
            contributions, title=title, abstract=abstract, rule_evidence=rule_evidence, design_evidence=design_evidence
        )
        if not evidence:  # nothing readable pushed it: cite what the model read
            evidence = (title or abstract)[:160].strip()
        out.append(
            _tag("design", design_model.LABEL_VALUES[label], model.method, evidence, model.confidence(label, score))
        )
    return out


def _indexing_tags(record: Mapping, topic: bool, signals: dict[str, str]) -> list[dict]:
    out: list[dict] = []
    for pt in record.get("publication_types") or []:
        name = pt.get("name") or ""
        hit = PUBLICATION_TYPE_TAGS.get(name)
        if hit:
            out.append(_tag(hit[0], hit[1], "publication_type", name, 0.95))
    names = _mesh_names(record)
    if "Animals" in names and "Humans" not in names:
        out.append(_tag("population", "animals", "mesh", "Animals", 0.95))
        out.append(_tag("design", "preclinical_animal", "mesh", "Animals", 0.9))
    elif "Animals" in names:
        out.append(_tag("population", "animals", "mesh", "Animals", 0.9))
    trial_pubtype = any(
        (p.get("name") or "").startswith(("Randomized", "Clinical Trial", "Controlled Clinical"))
        for p in record.get("publication_types") or []
    )
    for m in record.get("mesh") or []:
        name = m.get("descriptor_name") or ""
        mesh_hit = MESH_TAGS.get(name)
        if mesh_hit:
            facet, value, needs_topic = mesh_hit
            if needs_topic and not topic:
                pass
            elif facet == "signal":
                signals.setdefault(value, name)
            elif value == "observational_cohort" and trial_pubtype:
                pass  # prospective follow-up of a trial is not a cohort study
            else:
                out.append(_tag(facet, value, "mesh", name, 0.9))
        if topic:
            for q in m.get("qualifiers") or []:
                qhit = MESH_QUALIFIER_TAGS.get((name, q.get("name") or ""))
                if qhit:
                    out.append(_tag(qhit[0], qhit[1], "mesh", f"{name}/{q.get('name')}", 0.85))
    if topic:
        concepts = [c.get("name") or "" for c in record.get("chemicals") or []]
        concepts += [s.get("name") or "" for s in record.get("supplementary_concepts") or []]
        for concept in concepts:
            low = concept.lower()
            for needle, value in CHEMICAL_MOLECULES:
                if needle in low:
                    out.append(_tag("molecule", value, "mesh", concept, 0.9))
                    break
        if "Ketamine" in names:
            out.append(_tag("molecule", "unspecified_ketamine", "mesh", "Ketamine", 0.6))
    return out


def _combine_text(tags: list[dict], signals: dict[str, str], text: _Text) -> list[dict]:
    """Cross-rule logic for text designs, kept in one place:
    - a record is an animal study (``preclinical_animal``, rule ``design.animal_only``) when it names
      animals (species or animal-experiment words) more often than human subjects, and is not a review;
    - a randomised study of animals is a preclinical study, not an RCT;
    - an evidence synthesis, protocol or secondary analysis is not itself an RCT or a case report."""
    values = {t["value"] for t in tags if t["facet"] == "design"}
    animal_ev = next((t["evidence"] for t in tags if t["facet"] == "population" and t["value"] == "animals"), None)
    animal_ev = animal_ev or signals.get("animal_experiment")
    animal_study = False
    if animal_ev is not None:
        n_animal, n_human = _animal_human_counts(text)
        animal_study = n_human == 0 or n_animal > n_human
    out = []
    for t in tags:
        if t["facet"] == "design":
            v = t["value"]
            if v == "rct" and animal_study:
                continue
            if v == "rct" and values & {"systematic_review", "meta_analysis", "trial_protocol", "secondary_analysis"}:
                continue
            if v == "case_report_series" and values & {"systematic_review", "meta_analysis"}:
                continue
        out.append(t)
    if animal_study and animal_ev is not None and "preclinical_animal" not in values:
        if not values & {"narrative_review", "systematic_review", "meta_analysis"}:
            out.append(_tag("design", "preclinical_animal", "rule:design.animal_only", animal_ev, 0.8))
    return out


def _merge(first: list[dict], second: list[dict]) -> list[dict]:
    seen: set[tuple[str, str]] = set()
    out = []
    for t in first + second:
        key = (t["facet"], t["value"])
        if key not in seen:
            seen.add(key)
            out.append(t)
    return out


def _add_crossover(tags: list[dict], signals: dict[str, str]) -> list[dict]:
    if "crossover" not in signals:
        return tags
    rct = next((t for t in tags if t["facet"] == "design" and t["value"] == "rct"), None)
    if rct is None or any(t["facet"] == "design" and t["value"] == "crossover_rct" for t in tags):
        return tags
    evidence = signals["crossover"]
    method = "mesh" if evidence == "Cross-Over Studies" else "rule:design.crossover"
    return tags + [_tag("design", "crossover_rct", method, evidence, min(0.9, rct["confidence"]))]


def _molecule_fallback(tags: list[dict]) -> list[dict]:
    """`unspecified_ketamine` only when no form (racemic, es-, ar-) is named."""
    named = {t["value"] for t in tags if t["facet"] == "molecule"} & {"racemic_ketamine", "esketamine", "arketamine"}
    if not named:
        return tags
    return [t for t in tags if not (t["facet"] == "molecule" and t["value"] == "unspecified_ketamine")]


def _design_source(tag: Mapping) -> int:
    """0: indexing (publication types, MeSH); 1: what the title says the article is; 2: other text."""
    method = tag.get("method")
    if method in ("mesh", "publication_type"):
        return 0
    return 1 if method == f"rule:{TITLE_DECLARES}" else 2


# -- what the title says the article is ------------------------------------------------------------

TITLE_DECLARES = "design.title_declares"
# "Editorial.", "Editorial: ...", "... : a commentary", "[Letter]", "Letter to the editor", "Reply
# to ...", "Comment on ...", "Re: ...", "Response to the letter ...".
_TITLE_COMMENTARY = re.compile(
    r"^\W*(?:(?:guest|invited|an?)\s+)?(?:editorial|commentary)(?:\s+comment)?\s*(?:[.:;—–-]|$)|"
    r"(?:[:.]|\s[-—–])\s*(?:an?\s+|guest\s+|invited\s+)?(?:editorial|commentary)\W*$|"
    r"[(\[](?:editorial|commentary|comment|letter)[)\]]|"
    r"^\W*letters?(?:\s+to\s+the\s+editors?)?\s*(?:[.:;—–-]|$)|\bletter to the editors?\b|"
    r"^\W*(?:in\s+|authors?'?s?\s+)?reply\b|^\W*(?:comments?|commentary)\s+(?:on|to|about|regarding)\b|^\W*re:|"
    r"^\W*(?:an?\s+)?response\s+to\s+(?:the\s+|an?\s+)?(?:letter|comments?|commentary|editorial|critique|correspondence)",
    re.I,
)
# "... Guideline 2023", "Guidelines for ...", "... : a consensus statement", "Recommendations of ...".
_TITLE_GUIDANCE = re.compile(
    r"\b(?:(?:clinical\s+)?(?:practice\s+)?guidelines?|consensus\s+(?:statement|report|recommendations?|"
    r"guidelines?|document|paper|conference)|position\s+(?:statement|paper)|practice\s+(?:parameters?|advisory)|"
    r"expert\s+consensus)\b|(?:^|[:.]\s*)(?:[\w/-]+\s+){0,5}?recommendations\b",
    re.I,
)
# ... unless the title is about guidance (a study of adherence to it, an audit, a comparison).
_TITLE_GUIDANCE_VETO = re.compile(
    r"\b(?:adheren\w*|complian\w*|concordan\w*|implement\w*|uptake|according|based|following|in line|consistent|"
    r"aware\w*|knowledge|use of|impact|effects?|evaluat\w*|assess\w*|audit|survey|quality|compar\w*|review|"
    r"systematic|apprais\w*|versus|vs|trial|study|studies|cohort|patients|attitudes?|perceptions?|barriers|"
    r"deviations?|outcomes?|among|analysis|validation|development of|developing|interpret\w*|reality|"
    r"overcoming|beyond|reliability|experimental|how should|time to|through)\b",
    re.I,
)


# Every title either pattern matches contains one of these (a fast pre-filter).
_TITLE_WORDS = (
    "editor",
    "comment",
    "letter",
    "reply",
    "re:",
    "response",
    "guideline",
    "consensus",
    "position",
    "practice",
    "recommendation",
)


def title_declares(title: str) -> tuple[str, str] | None:
    """(design, span) when the title says what kind of article it is -- an editorial, letter,
    commentary or reply (``commentary_letter``), a guideline, consensus or position statement,
    or recommendations (``guideline_consensus``) -- else None. Such a title outweighs the design
    model, and counts on an indexed record to which the indexers gave no design publication type."""
    low = title.lower()
    if not any(w in low for w in _TITLE_WORDS):
        return None
    m = _TITLE_COMMENTARY.search(title)
    if m:
        return "commentary_letter", _span_of(title, m)
    m = _TITLE_GUIDANCE.search(title)
    if m and not _TITLE_GUIDANCE_VETO.search(title):
        return "guideline_consensus", _span_of(title, m)
    return None


def _span_of(text: str, m: re.Match) -> str:
    """The match without the punctuation and spaces around it (still a substring of `text`)."""
    span = m.group(0)
    return span.strip(" \t\n.:;,—–-[]()") or span.strip() or span


# -- a ketamine analogue is not ketamine ----------------------------------------------------------

# "methoxetamine (MXE), a ketamine analog", "ketamine-like compounds", "derivatives of ketamine".
_ANALOGUE = re.compile(
    r"\bketamine[- ](?:analog(?:ue)?s?|derivatives?|congeners?|like|related|based)\b|"
    r"\b(?:analog(?:ue)?s?|derivatives?|congeners?) of (?:\w+ )?ketamine\b|"
    r"\b(?:structurally )?(?:related|similar) to ketamine\b",
    re.I,
)


def _analogue_is_not_ketamine(tags: list[dict], text: _Text) -> list[dict]:
    """A record about a ketamine analogue (methoxetamine, "a ketamine analog", "ketamine-like
    compounds") names ketamine as the reference it is compared with: unless its title names
    ketamine itself, the text's ketamine mentions make no `molecule` tag (indexing still may)."""
    title, _ = text.fields
    if not _ANALOGUE.search(text.joined):
        return tags
    if _KETAMINE_ITSELF.search(_ANALOGUE.sub(" ", title)):
        return tags
    return [t for t in tags if not (t["facet"] == "molecule" and t["method"].startswith("rule:"))]


_KETAMINE_ITSELF = re.compile(KET, re.I)


# -- depression in the psychiatric sense, or in another -----------------------------------------------

# MeSH descriptors (and NLM's pharmacological-action chemicals) that put a record in the
# psychiatric sense of depression or suicidality.
PSYCHIATRIC_MESH = frozenset(
    {
        "Depression",
        "Depression, Postpartum",
        "Depressive Disorder",
        "Depressive Disorder, Major",
        "Depressive Disorder, Treatment-Resistant",
        "Dysthymic Disorder",
        "Bipolar Disorder",
        "Bipolar and Related Disorders",
        "Mood Disorders",
        "Cyclothymic Disorder",
        "Seasonal Affective Disorder",
        "Affective Disorders, Psychotic",
        "Suicide",
        "Suicide, Attempted",
        "Suicide, Completed",
        "Suicidal Ideation",
        "Suicide Prevention",
        "Anhedonia",
        "Antidepressive Agents",
        "Antidepressive Agents, Second-Generation",
        "Antidepressive Agents, Tricyclic",
    }
)
# Every word that may speak of depression or suicidality, in any sense.
_DEPRESSION_WORD = re.compile(
    r"\b(?:anti-?)?depress\w*|\bsuicid\w*|\banhedoni\w*|\bdysthymi\w*|\bmelanchol\w*|\bbipolar\b|"
    r"\b(?:mood|affective) disorders?\b",
    re.I,
)
# A qualifier just before "depression" (or "depressed", "depressant") that names another sense.
_OTHER_SENSE_BEFORE = re.compile(
    r"(?:\b(?:respiratory|ventilatory|breathing|myocardial|cardiac|cardiovascular|cardio-?respiratory|"
    r"cardiopulmonary|circulatory|ha?emodynamic|spreading|ST[- ]?segments?|ST|ST-T|synaptic|paired[- ]pulse|"
    r"post-?tetanic|frequency[- ]dependent|heterosynaptic|homosynaptic|short[- ]term|CNS|central nervous system|"
    r"central|neuronal|neuromuscular|(?:bone )?marrow|h(?:a)?ematologic(?:al)?|immune|immunological|"
    r"freezing[- ]point|inbreeding|outbreeding|economic|great|skull|medullary|brain ?stem|reflex|EEG|"
    r"electroencephalographic|cortical|contractile|ventricular|metabolic|(?:neuro)?muscular|flowering)\b)[\s-]+$",
    re.I,
)
# What follows "depression of/on/in ..." or "depressed ..." when it is a body function, not mood.
_PHYSIOLOGY = (
    r"(?:ventilat\w*|respirat\w*|breathing|reflex\w*|responses?|responsiveness|activity|activities|function|"
    r"contractil\w*|contractions?|conduct\w*|transmission|potentials?|currents?|firing|discharges?|output|"
    r"(?:heart )?rates?|pressures?|consciousness|myocard\w*|heart|cardiac|circulation|twitch\w*|EPSPs?|IPSPs?|"
    r"EPSCs?|IPSCs?|amplitudes?|synap\w*|excitab\w*|release|secretion|metabolism|synthesis|immun\w*|marrow|"
    r"tone|motility|drive|chemosensitiv\w*|sensitivity|EEG|spikes?|fracture|skull|ejection|left ventricular|"
    r"vital signs|airway|level of consciousness|blood counts?|leukocytes?|platelets?|ST segments?|freezing|"
    r"cells?|morpholog\w*|lesions?|areas?|scars?|expression|levels?|concentrations?|production|transcription|"
    r"proliferation|growth|uptake|formation|excretion|survival|enzym\w*|cytochrome\w*|flowering|fertility|yield)\b"
    r"(?!\s+(?:patients|subjects|disease|diseases|failure|surgery))"
)
_OTHER_SENSE_AFTER = re.compile(
    r"^(?:\s+(?:effects?|actions?)\s+on|\s+of)\s+(?:the\s+|a\s+|an\s+)?"
    r"(?:(?!(?:patients|subjects|people|persons|individuals|women|men|children|adults|with|and|or)\b)[\w/()-]+\s+){0,3}?"
    + _PHYSIOLOGY,
    re.I,
)
# "depression of" speaks of people or mood in the psychiatric sense ("depression of older adults",
# "depression of moderate severity"); of anything else ("of cytochrome P-450"), in another sense.
_OF_PEOPLE = re.compile(
    r"^\s+of\s+(?:the\s+|a\s+|an\s+|their\s+|our\s+)?(?:[\w-]+\s+){0,3}?(?:elderly|older|aged|patients?|mothers?|"
    r"women|men|children|adolescents?|youths?|caregivers?|students?|adults?|individuals?|people|persons?|subjects|"
    r"survivors?|residents?|workers?|nurses?|physicians?|doctors?|parents?|wives|spouses?|veterans?|inpatients?|"
    r"outpatients?|participants?|population|mood|affect|severity|mild|moderate|severe|late life|old age|"
    r"childhood|adolescence|pregnancy)\b",
    re.I,
)
# "markedly depressed", "slight depression of": degrees that measure a body function, not a mood.
_DEGREE_BEFORE = re.compile(
    r"\b(?:markedly|significantly|slightly|slight|rapidly|strongly|profoundly|dose-?dependently|partially|"
    r"completely|greatly|reversibly|transiently|maximally|concentration-?dependently)[\s-]+$",
    re.I,
)
# "depression on the ventilatory response" is a body function depressed; "the effect of
# depression on heart rate" is the mood acting on one.
_ON_PHYSIOLOGY = re.compile(
    r"^\s+(?:on|upon)\s+(?:the\s+|a\s+|an\s+)?"
    r"(?:(?!(?:patients|subjects|people|persons|individuals|women|men|children|adults|with|and|or)\b)[\w/()-]+\s+){0,3}?"
    + _PHYSIOLOGY,
    re.I,
)
_CAUSE_BEFORE = re.compile(
    r"\b(?:effects?|impacts?|influences?|roles?|associations?|contributions?|consequences?|"
    r"burden|relationship|links?)\s+of\s+(?:\w+\s+){0,2}$",
    re.I,
)
_DEPRESSED_PHYSIOLOGY = re.compile(r"^\s+(?:[\w-]+\s+){0,2}?" + _PHYSIOLOGY, re.I)
# "halothane depressed the hypoxic ventilatory responses": the verb, not the mood.
_DEPRESS_VERB = re.compile(r"^\s+(?:the|a|an|both|its|their|all|this|these|those|spontaneous|evoked)\b", re.I)
_LONG_TERM = re.compile(r"\blong[- ]term[\s-]+$", re.I)
_SYNAPTIC_CONTEXT = re.compile(r"\bLTD\b|\bLTP\b|\bsynap\w*|\bpotentiation\b|\bhippocampal slices?\b", re.I)
_SUICIDE_OTHER = re.compile(
    r"^[\s-]+(?:genes?|inhibit\w*|substrates?|vectors?|enzymes?|inactivat\w*|"
    r"mechanisms? of (?:inhibition|inactivation))\b",
    re.I,
)
_CELL_SUICIDE = re.compile(r"\b(?:cell(?:ular)?|cell-)\s*$", re.I)
_BIPOLAR_PSYCHIATRIC = re.compile(
    r"^\s+(?:(?:I|II|1|2|type)\s+)?(?:depress\w*|disorders?|patients|illness|affective|mania|manic|spectrum|"
    r"subjects|individuals|probands|adults|youths?|adolescents)\b",
    re.I,
)


def _depression_mention(field: str, m: re.Match, joined: str) -> tuple[str, str] | None:
    """("psychiatric" or "other", evidence span) for one mention, or None when the word speaks of
    neither (a bipolar electrode). Evidence is an exact substring of `field`."""
    word = m.group(0).lower()
    start, end = m.start(), m.end()
    before, after = field[max(0, start - 60) : start], field[end : end + 120]

    def other(left: int = start, right: int = end) -> tuple[str, str]:
        return "other", field[left:right]

    if word.startswith("anti"):
        return "psychiatric", m.group(0)
    if word.startswith("suicid"):
        if (s := _SUICIDE_OTHER.match(after)) is not None:
            return other(right=end + s.end())
        if (c := _CELL_SUICIDE.search(before)) is not None:
            return other(left=start - (len(before) - c.start()))
        return "psychiatric", m.group(0)
    if word == "bipolar":
        b = _BIPOLAR_PSYCHIATRIC.match(after)
        return ("psychiatric", field[start : end + b.end()]) if b else None
    if word == "dysthymic" and re.match(r"^\s+(?:nude|mice|mouse|rats?)\b", after, re.I):
        return None  # thymus dysgenesis of nude mice, not dysthymia
    if not word.startswith("depress"):  # anhedonia, dysthymia, melancholia, mood disorders
        return "psychiatric", m.group(0)
    if word.startswith(("depressant", "depressor", "depressur")):
        q = _OTHER_SENSE_BEFORE.search(before)
        return other(left=start - (len(before) - q.start()) if q else start)
    if (q := _OTHER_SENSE_BEFORE.search(before)) is not None:
        return other(left=start - (len(before) - q.start()))
    if (q := _LONG_TERM.search(before)) is not None and _SYNAPTIC_CONTEXT.search(joined):
        return other(left=start - (len(before) - q.start()))
    if (a := _OTHER_SENSE_AFTER.match(after)) is not None:
        return other(right=end + a.end())
    if not _CAUSE_BEFORE.search(before) and (a := _ON_PHYSIOLOGY.match(after)) is not None:
        return other(right=end + a.end())  # "significant depression on the hypoxic ventilatory response"
    if (q := _DEGREE_BEFORE.search(before)) is not None:
        return other(left=start - (len(before) - q.start()))
    if word == "depression" and re.match(r"^\s+of\b", after) and not _OF_PEOPLE.match(after):
        return other(right=end + 3)
    if word == "depressed" and re.match(r"^\s+by\b", after):
        return other(right=end + 3)
    if word in ("depressed", "depressing", "depresses", "depress"):
        if (a := _DEPRESSED_PHYSIOLOGY.match(after)) is not None:
            return other(right=end + a.end())
        if word != "depressed" or _DEPRESS_VERB.match(after):
            return other()
    return "psychiatric", m.group(0)


def depression_sense(record: Mapping, *, use_indexing: bool = True, _text: _Text | None = None) -> list[dict]:
    """The record's ``depression`` tag: ``psychiatric`` when it concerns depression or suicidality
    in the psychiatric sense -- a MeSH heading of mood disorders, suicide or antidepressants (with
    indexing), or a mention in the title or abstract once the other senses are set aside; else
    ``other_sense_only`` when every mention is another sense ("respiratory depression",
    "myocardial depression", "cortical spreading depression", "ST-segment depression", synaptic
    "long-term depression", "depression of ventilation", "CNS depressant", "suicide gene"); no
    tag when the record speaks of neither. Generic: decided for every record."""
    if use_indexing:
        names = [m.get("descriptor_name") or "" for m in record.get("mesh") or []]
        names += [c.get("name") or "" for c in record.get("chemicals") or []]
        for name in names:
            if name in PSYCHIATRIC_MESH:
                return [_tag("depression", "psychiatric", "mesh", name, 0.95)]
    text = _text if _text is not None else _Text(*_fields(record))
    if not any(
        w in text.low
        for w in (
            "depress",
            "suicid",
            "anhedoni",
            "dysthymi",
            "melanchol",
            "bipolar",
            "mood disorder",
            "affective disorder",
        )
    ):
        return []
    other_evidence = None
    for field in text.fields:
        for m in _DEPRESSION_WORD.finditer(field):
            found = _depression_mention(field, m, text.joined)
            if found is None:
                continue
            sense, span = found
            if sense == "psychiatric":
                return [_tag("depression", "psychiatric", "rule:depression.psychiatric", span, 0.8)]
            if other_evidence is None:
                other_evidence = span.strip()
    if other_evidence:
        return [_tag("depression", "other_sense_only", "rule:depression.other_sense", other_evidence, 0.8)]
    return []


# Rule ids the tagger's code uses beside those of `RULES`.
CODE_RULE_IDS = frozenset({"design.animal_only", TITLE_DECLARES, "depression.psychiatric", "depression.other_sense"})


def is_psychiatric(tags: Iterable[Mapping]) -> bool:
    """Whether these tags put the record in the psychiatric sense of depression (articles.psychiatric)."""
    return any(t.get("facet") == "depression" and t.get("value") == "psychiatric" for t in tags)


def primary_design(tags: Iterable[Mapping]) -> str:
    """One design per record: design tags from indexing (publication types, MeSH) outrank what
    the title says the article is (`title_declares`), which outranks the other text rules and
    the design model; within a source, the first value of `DESIGN_PRECEDENCE` present; "other"
    when no design tag fired."""
    tags = [t for t in tags if t.get("facet") == "design"]
    for source in (0, 1, 2):
        values = {t["value"] for t in tags if _design_source(t) == source}
        for value in DESIGN_PRECEDENCE:
            if value in values:
                if value == "rct" and any(t["value"] == "crossover_rct" for t in tags):
                    return "crossover_rct"
                return value
    return "other"


@dataclass(frozen=True)
class Tagging:
    """What the tag stage adds to one parsed record: its tags, and the verdicts the catalog
    stores beside them (`articles.study_design`, `awaiting_indexing`, `psychiatric`,
    `tags_version`)."""

    tags: list[dict]
    study_design: str
    awaiting_indexing: bool
    psychiatric: bool
    rules_version: str = RULES_VERSION


def tag_record(record: Mapping) -> Tagging:
    """The tag stage: `tag_article` with the indexing, and what the catalog derives from it."""
    tags = tag_article(record)
    return Tagging(
        tags=tags,
        study_design=primary_design(tags),
        awaiting_indexing=awaiting_indexing(record),
        psychiatric=is_psychiatric(tags),
    )
