#!/usr/bin/env bash
# RDF batch enrichment: train on an RDF file, then add predicted links, reified with scores and provenance.
# Run from the repository root after `make setup` (or with kgemb installed): bash examples/enrich_rdf.sh
set -euo pipefail
KGEMB=${KGEMB:-.venv/bin/kgemb}
IN=tests/reasoning/data/medical.ttl
OUT=runs/enrich
mkdir -p "$OUT"
"$KGEMB" train "$IN" --out "$OUT/model" --mode fused --interaction rotate --dim 128 --epochs 30 --split 0.1 0.1
"$KGEMB" enrich "$IN" --model "$OUT/model" --relation has_symptom --k 3 --min-score 0.5 \
  --out "$OUT/medical.enriched.ttl"                       # reified rdf:Statements with kgemb:score
"$KGEMB" enrich "$IN" --model "$OUT/model" --relation has_symptom --k 3 --as named-graph \
  --format trig --out "$OUT/medical.enriched.trig"        # predictions in a named graph per run
echo "wrote $OUT/medical.enriched.ttl and $OUT/medical.enriched.trig"
