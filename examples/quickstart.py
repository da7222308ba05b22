"""kgemb's Python API in 20 lines: load a multilingual RDF graph, train, evaluate, ask, save and load.

python examples/quickstart.py
"""

from pathlib import Path

from kgemb.connectors import rdf
from kgemb.reasoning import LinkPredictor

import kgemb

here = Path(__file__).resolve().parent
kg = rdf.load(here.parent / "tests" / "reasoning" / "data" / "medical.ttl").split(valid=0.1, test=0.1, seed=0)
model = kgemb.train(kg, mode="fused", interaction="rotate", dim=128, epochs=30, seed=0)
print("test:", model.evaluate("test"))
model.save("runs/quickstart")
lp = LinkPredictor(kgemb.load("runs/quickstart"), directory="runs/quickstart")
for p in lp.rank([("发烧", "has_symptom"), ("cough", "has_symptom")], k=3, target="head"):
    print(p.rank, f"{p.score:.3f}", p.label)
print([(p.label, round(p.score, 3)) for p in lp.search("Kopfschmerzen", k=3)])
