#!/usr/bin/env bash
# The real-image study (sweeps/study.yaml) end to end, resumable at every level: the two warm
# starts (checkpointed every 200 steps), then the sweep one seed at a time (so whatever has
# finished is a whole seed of every configuration), then the leaderboard. Run it again after an
# interruption: finished warm starts and runs are skipped, killed ones resume. After the three seeds
# come sweeps/study-codecs.yaml (the entropy-coded bottleneck, three seeds) where CompressAI is
# installed (docs/methods.md: pip install -e ".[codecs]" && pip install --no-deps compressai==1.2.8),
# otherwise that file is skipped with a message, and sweeps/study-extra.yaml (four newer methods,
# one seed).
#   bash benchmarks/study.sh            # the warm starts, then the sweep, on 2 CPU cores
# JOBS=1 runs one run at a time (default 2: one per core, one torch thread each).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
JOBS=${JOBS:-2}
# The committed warm starts (results/warmstarts/: the weights and their sidecars with recipe, thread
# count, commit and sha256) go into the cache first, checksums checked, so that every machine
# fine-tunes the same bits: another CPU or thread count trains other ones (docs/tasks.md). `pretrain`
# then finds them and trains nothing; a warm start already in the cache is kept, and a sweep refuses
# to mix runs from one with another sha256 into the committed records.
ws="${ADCBENCH_CACHE:-$HOME/.cache/adcbench}/warmstart"
if [ -f results/warmstarts/SHA256SUMS ]; then
  (cd results/warmstarts && sha256sum --quiet -c SHA256SUMS)
  mkdir -p "$ws" && cp -n results/warmstarts/*.safetensors results/warmstarts/*.json "$ws/"
fi
# Without them (delete the folder to regenerate): both trained one after the other at two threads
# (--threads fixes their bits; on this 2-core machine two threads trained the imagenette one in
# 15 min where one thread took 32).
adcbench pretrain --task cifar10 --data ../shared/data/cifar10-jpg --threads 2 --quiet
adcbench pretrain --task imagenette:preset=cpu32 --data ../shared/data/imagenette2-224 --threads 2 --quiet
# The families every leaderboard section needs, at three seeds, come first; the entropy-coded
# bottleneck (three seeds) and the newer methods (one seed) after them.
for seed in 0 1 2; do
  start=$(date +%s)
  adcbench sweep sweeps/study.yaml --seeds "$seed" --jobs "$JOBS" --threads 1 --quiet --out results
  echo "study: seed $seed took $(( $(date +%s) - start )) s"
done
if python -c "import compressai" 2>/dev/null; then
  adcbench sweep sweeps/study-codecs.yaml --seeds 0,1,2 --jobs "$JOBS" --threads 1 --quiet --out results
else
  echo "study: compressai is not installed: sweeps/study-codecs.yaml skipped (docs/methods.md: pip install -e \".[codecs]\" && pip install --no-deps compressai==1.2.8)"
fi
adcbench sweep sweeps/study-extra.yaml --jobs "$JOBS" --threads 1 --quiet --out results
adcbench leaderboard
