#!/usr/bin/env bash
# How the official standard-cpu entries are made, step by step, so that any maintainer can make them again.
#
#   bash entries/make-official.sh RUN builtins           # the suite as written: the reference and the seed-paper
#                                                        # defenses it lists, each at its preregistered setting and
#                                                        # neighbour
#   bash entries/make-official.sh RUN pack NAME...       # one entry per NAME from RUN's latest manifest, into
#                                                        # $ENTRIES_OUT (default entries-new/), then `splitbench share`
#   bash entries/make-official.sh RUN baselines NAME...  # the named rows of the table below (the field's baselines and
#                                                        # dynamic channel pruning, which the suite does not list),
#                                                        # each at its preregistered setting and its neighbour, beside
#                                                        # the reference
#   bash entries/make-official.sh RUN seed ENTRY         # copy ENTRY's records (e.g. entries/standard-cpu-no-pruning)
#                                                        # into RUN, so a later `baselines` step skips the reference
#   bash entries/make-official.sh RUN verify NAME...     # `splitbench verify --cells 1` of each packed entry, report
#                                                        # beside it as verify-NAME.json
#   bash entries/make-official.sh RUN install            # every official entry packed and verified: replace the
#                                                        # official entries in $ENTRIES_DIR (default: this folder)
#                                                        # with $ENTRIES_OUT's, each with its report as
#                                                        # verification.json, and share their files (the old ones'
#                                                        # no entry lists are removed); refuses while any is missing,
#                                                        # so the site never mixes entries of two runs
#
# `submit` packs a run's latest manifest, so pack the built-ins before running baselines into the same RUN, and pack
# each `baselines` step before the next one. Records name the commit that wrote them and an entry's records must all
# come from one commit: a `seed`ed RUN must be continued by the very commit that wrote the seed's records (a git
# worktree of it). Runs resume: running a step again re-runs only what is not finished.
#
# NAME is an entry's name without the track prefix: no-pruning, random-pruning, latent-masking, patrol, paoding, or a
# row of the table. The cards are the shipped entries' with `hardware` describing the machine of the run's records
# (submit accepts their `suite` key when it names the run's suite, and refuses it otherwise).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SPLITBENCH="${SPLITBENCH:-splitbench}"
PYTHON="${PYTHON:-python3}"  # the Python splitbench is installed in
ENTRIES_OUT="${ENTRIES_OUT:-entries-new}"

# The rows added from the command line: entry name, registered defense, the setting the pre-study preregistered
# (standard-cpu-prestudy), its neighbour on the pre-study's grid (a point of the privacy-utility curve, attacked at
# the suite's curve_seeds), and any config that makes the row. Dynamic channel pruning is here, not in the suite: with
# the official code's filter network (server_copy) its client is outside the suite's cost budget, so it is never
# ranked; its two filter networks are rows of one defense, so they run in separate steps.
BASELINES="
split-deeper                 split_deeper            2    1
noise                        noise                   2    1
dropout                      dropout                 0.75 0.9
nopeek                       nopeek                  1    3
shredder                     shredder                0.1  1
adversarial                  adversarial             0.3  1
bottleneck                   bottleneck              1    0.1
siamese                      siamese                 0.3  1
quantize                     quantize                2    1
dynamic-channel-pruning-light dynamic_channel_pruning 0.75 0.5 scorer=light
dynamic-channel-pruning      dynamic_channel_pruning 0.5  0.75 scorer=server_copy
"

die() { echo "make-official: $*" >&2; exit 2; }

[ $# -ge 2 ] || die "usage: make-official.sh RUN builtins|baselines NAME...|pack NAME...|seed ENTRY|verify NAME...|install"
run="$1"; step="$2"; shift 2

baseline_line() {
  local line
  line="$(printf '%s\n' "$BASELINES" | awk -v n="$1" '$1 == n')"
  [ -n "$line" ] || die "$1 is not a baseline of this script (expected one of: $(printf '%s\n' "$BASELINES" | awk 'NF {printf "%s ", $1}'))"
  printf '%s\n' "$line"
}

case "$step" in
  builtins)
    [ $# -eq 0 ] || die "builtins takes no names (it runs the suite as written)"
    "$SPLITBENCH" run --suite standard-cpu --out "$run" --no-leaderboard
    ;;
  baselines)
    [ $# -ge 1 ] || die "baselines needs at least one NAME"
    args=(--suite standard-cpu --out "$run" --no-leaderboard --defense no_pruning)
    seen=""
    for name in "$@"; do
      line="$(baseline_line "$name")" || exit 2
      read -r _ defense prereg neighbour extra <<< "$line"
      case " $seen " in *" $defense "*) die "$name: $defense is already in this step (run its other rows apart)";; esac
      seen="$seen $defense"
      args+=(--defense "$defense" --set "defense.$defense.knob=[$prereg, $neighbour]"
             --set "defense.$defense.preregistered=$prereg")
      [ -z "${extra:-}" ] || args+=(--set "defense.$defense.$extra")
    done
    "$SPLITBENCH" run "${args[@]}"
    ;;
  pack)
    [ $# -ge 1 ] || die "pack needs at least one NAME"
    mkdir -p "$ENTRIES_OUT"
    for name in "$@"; do
      card="$here/standard-cpu-$name/entry.yaml"
      [ -f "$card" ] || die "$card: no shipped card for $name"
      [ ! -e "$ENTRIES_OUT/standard-cpu-$name" ] || { echo "standard-cpu-$name: already packed"; continue; }
      # the shipped card, its `hardware` rewritten from the records of the run's latest manifest (the machine that
      # made them, not the one that made the previous entries)
      made="$ENTRIES_OUT/.card-$name.yaml"
      "$PYTHON" - "$run" "$card" "$made" <<'PY' || exit 2
import json, sys
from pathlib import Path
import yaml
from benchmark.store.manifest import load_manifest
from leaderboard.entry.card import write_card
run, card, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
seen = set()
try:
    for cell in load_manifest(run)["cells"]:
        env = json.loads((run / "records" / cell).read_text())["env"]
        if env["device"] == "cpu":
            seen.add(f"{env['cpu']} CPU ({env['isa']}), {env['threads']} torch thread per worker process, no GPU")
        else:
            seen.add(f"{env['device_name']} GPU ({env['device']}), {env['threads']} torch thread per worker process")
except Exception as exc:  # one line, as every step of this script
    sys.exit(f"make-official: {run}: cannot read the machine of its records ({exc}); expected a finished run folder")
data = yaml.safe_load(card.read_text())
data["hardware"] = "; ".join(sorted(seen))
write_card(out, data)
PY
      "$SPLITBENCH" submit "$run" --card "$made" --out "$ENTRIES_OUT/standard-cpu-$name" || { rm -f "$made"; exit 1; }
      rm -f "$made"
    done
    "$SPLITBENCH" share "$ENTRIES_OUT"
    ;;
  seed)
    [ $# -eq 1 ] || die "seed takes one ENTRY folder"
    [ -f "$1/checksums.json" ] || die "$1: not an entry folder (no checksums.json)"
    mkdir -p "$run/records"
    "$PYTHON" - "$1" "$run" <<'PY'
import shutil, sys
from pathlib import Path
from leaderboard.entry.objects import complete_entry
entry, run = Path(sys.argv[1]), Path(sys.argv[2])
with complete_entry(entry) as full:
    src = Path(full) / "run" / "records"
    n = 0
    for f in src.rglob("*"):
        if f.is_file():
            dst = run / "records" / f.relative_to(src)
            if not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, dst)
                n += 1
print(f"copied {n} files of {entry.name}'s records into {run / 'records'}")
PY
    ;;
  verify)
    [ $# -ge 1 ] || die "verify needs at least one NAME"
    for name in "$@"; do
      "$SPLITBENCH" verify "$ENTRIES_OUT/standard-cpu-$name" --cells 1 --report "$ENTRIES_OUT/verify-$name.json"
    done
    ;;
  install)
    [ $# -eq 0 ] || die "install takes no names (it installs every official entry, packed in $ENTRIES_OUT)"
    dest="${ENTRIES_DIR:-$here}"
    names="no-pruning random-pruning latent-masking patrol paoding $(printf '%s\n' "$BASELINES" | awk 'NF {printf "%s ", $1}')"
    missing=""
    for name in $names; do
      [ -f "$ENTRIES_OUT/standard-cpu-$name/checksums.json" ] && [ -f "$ENTRIES_OUT/verify-$name.json" ] \
        || missing="$missing $name"
    done
    [ -z "$missing" ] || die "not installing: not yet packed and verified in $ENTRIES_OUT:$missing (expected every official entry, from one run)"
    [ -d "$ENTRIES_OUT/objects" ] || die "not installing: $ENTRIES_OUT has no objects/ folder (expected \`splitbench share\` of the pack step)"
    for name in $names; do
      cp "$ENTRIES_OUT/verify-$name.json" "$ENTRIES_OUT/standard-cpu-$name/verification.json"
    done
    # only the official entries are replaced (any other entry here stays); the shared files are merged (they are
    # named by their sha256), and `share` then removes those no entry lists any more
    for name in $names; do
      rm -rf "${dest:?}/standard-cpu-$name"
      cp -R "$ENTRIES_OUT/standard-cpu-$name" "$dest/"
    done
    mkdir -p "$dest/objects"
    cp -R "$ENTRIES_OUT/objects/." "$dest/objects/"
    "$SPLITBENCH" share "$dest"
    echo "installed $(echo $names | wc -w) entries into $dest"
    ;;
  *)
    die "unknown step '$step' (expected builtins, baselines, pack, seed, verify or install)"
    ;;
esac
