"""Fixtures of the model tests: a tiny multilingual medical graph and the default encoder (USE multilingual v3)."""

from __future__ import annotations

import pytest

DISEASES = [
    ("flu", {"en": ["influenza"], "de": ["Grippe"]}, "a contagious viral infection of the airways"),
    ("cold", {"en": ["common cold"], "de": ["Erkältung"]}, "a mild viral infection of the nose and throat"),
    ("asthma", {"en": ["asthma"]}, "a chronic disease that narrows the airways"),
    ("gastritis", {"en": ["gastritis"]}, "inflammation of the lining of the stomach"),
    ("migraine", {"en": ["migraine"], "de": ["Migräne"]}, "recurring attacks of severe headache"),
    ("hepatitis", {"en": ["hepatitis"]}, "inflammation of the liver"),
    ("angina", {"en": ["angina pectoris"]}, "chest pain from reduced blood flow to the heart"),
    ("arthritis", {"en": ["arthritis"]}, "inflammation of the joints"),
]
SYMPTOMS = [
    ("fever", {"en": ["fever"], "zh": ["发烧"], "de": ["Fieber"]}),
    ("cough", {"en": ["cough"], "zh": ["咳嗽"]}),
    ("sore_throat", {"en": ["sore throat"]}),
    ("wheezing", {"en": ["wheezing"]}),
    ("nausea", {"en": ["nausea"], "de": ["Übelkeit"]}),
    ("stomach_pain", {"en": ["stomach pain"]}),
    ("headache", {"en": ["headache"], "zh": ["头痛"]}),
    ("jaundice", {"en": ["jaundice"]}),
    ("chest_pain", {"en": ["chest pain"]}),
    ("joint_pain", {"en": ["joint pain"]}),
    ("fatigue", {"en": ["fatigue"]}),
    ("sq_x17", {}),  # no text at all: its readable key is embedded
]
ORGANS = ["lung", "stomach", "brain", "liver", "heart", "joint"]
HAS_SYMPTOM = {
    "flu": ["fever", "cough", "sore_throat", "fatigue", "headache"],
    "cold": ["cough", "sore_throat", "fatigue", "sq_x17"],
    "asthma": ["wheezing", "cough", "chest_pain"],
    "gastritis": ["nausea", "stomach_pain", "fatigue"],
    "migraine": ["headache", "nausea", "fatigue"],
    "hepatitis": ["jaundice", "fatigue", "fever", "nausea"],
    "angina": ["chest_pain", "fatigue"],
    "arthritis": ["joint_pain", "fatigue", "fever"],
}
AFFECTS = {
    "flu": "lung",
    "cold": "lung",
    "asthma": "lung",
    "gastritis": "stomach",
    "migraine": "brain",
    "hepatitis": "liver",
    "angina": "heart",
    "arthritis": "joint",
}
FELT_IN = {
    "cough": "lung",
    "wheezing": "lung",
    "sore_throat": "lung",
    "nausea": "stomach",
    "stomach_pain": "stomach",
    "headache": "brain",
    "jaundice": "liver",
    "chest_pain": "heart",
    "joint_pain": "joint",
}


def build_tiny_graph():  # -> kgemb.KnowledgeGraph
    """About 60 triples between 26 entities with English, German and Chinese labels; all triples in train."""
    from kgemb.graph import GraphBuilder

    b = GraphBuilder()
    for key, labels, description in DISEASES:
        for lang, texts in labels.items():
            for text in texts:
                b.add_label(key, text, lang)
        b.add_label(key, description, "en", kind="description")
    for key, labels in SYMPTOMS:
        b.add_entity(key)
        for lang, texts in labels.items():
            for text in texts:
                b.add_label(key, text, lang)
    for key in ORGANS:
        b.add_label(key, key, "en")
    b.add_relation("has_symptom", {"en": ["has symptom"]})
    b.add_relation("affects", {"en": ["affects"]})
    b.add_relation("felt_in", {"en": ["felt in"]})
    for disease, symptoms in HAS_SYMPTOM.items():
        for s in symptoms:
            b.add_triple(disease, "has_symptom", s)
    for disease, organ in AFFECTS.items():
        b.add_triple(disease, "affects", organ)
    for symptom, organ in FELT_IN.items():
        b.add_triple(symptom, "felt_in", organ)
    return b.build({"source": "tests/core/conftest.py"})


@pytest.fixture(scope="session")
def tiny_kg():  # -> kgemb.KnowledgeGraph (all triples in train)
    return build_tiny_graph()


@pytest.fixture(scope="session")
def tiny_split(tiny_kg):  # -> kgemb.KnowledgeGraph with train / valid / test
    return tiny_kg.split(valid=0.1, test=0.1, seed=0)


@pytest.fixture(scope="session")
def default_encoder():  # -> kgemb.TextEncoder (USE multilingual v3; loaded once per session)
    import kgemb

    return kgemb.load_encoder("default")
