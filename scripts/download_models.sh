#!/usr/bin/env bash
# Fetch the checkpoints released with the original Latent Diffusion code (CompVis/latent-diffusion,
# Rombach et al. 2022) into the original layout:
#   models/ldm/<name>/model.ckpt                 latent diffusion models
#   models/first_stage_models/<name>/model.ckpt  autoencoders (first stages)
# Most files are published as a zip holding model.ckpt; the zip is unpacked and removed. After each
# download scripts/check_original_checkpoint.py loads the file into ldm_lite and writes the
# folder's config.yaml. Needs internet; everything else in this repository works offline.
#
# Environment: LDM_LITE_MODELS_DIR (default: <repo>/models), LDM_LITE_DOWNLOAD_BASE (default: the
# ommer-lab.com folder), LDM_LITE_CONNECT_TIMEOUT (seconds, default 10), PYTHON (the interpreter
# for the check; default: <repo>/.venv/bin/python, else python, else python3).
set -euo pipefail

REPOSITORY_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODELS_DIR="${LDM_LITE_MODELS_DIR:-$REPOSITORY_ROOT/models}"
BASE="${LDM_LITE_DOWNLOAD_BASE:-https://ommer-lab.com/files/latent-diffusion/}"
BASE="${BASE%/}/"
CONNECT_TIMEOUT="${LDM_LITE_CONNECT_TIMEOUT:-10}"
HOST="${BASE#*://}"
HOST="${HOST%%/*}"

# Where each model lives under BASE (facts from the original README and download scripts).
LDM_NAMES=(celeba256 ffhq256 lsun_churches256 lsun_beds256 cin256 text2img256 bsr_sr
           layout2img-openimages256 semantic_synthesis256 semantic_synthesis512 inpainting_big
           text2img-large cin256-v2)
FIRST_STAGE_NAMES=(kl-f4 kl-f8 kl-f16 kl-f32 vq-f4 vq-f4-noattn vq-f8 vq-f8-n256 vq-f16)
remote_file() {  # name -> path under BASE; fails for an unknown name
  case "$1" in
    celeba256) echo celeba.zip ;;
    ffhq256) echo ffhq.zip ;;
    lsun_churches256) echo lsun_churches.zip ;;
    lsun_beds256) echo lsun_bedrooms.zip ;;
    cin256) echo cin.zip ;;
    text2img256) echo text2img.zip ;;
    bsr_sr) echo sr_bsr.zip ;;
    layout2img-openimages256) echo layout2img_model.zip ;;
    semantic_synthesis256) echo semantic_synthesis256.zip ;;
    semantic_synthesis512) echo semantic_synthesis.zip ;;
    inpainting_big) echo inpainting_big.zip ;;
    text2img-large) echo nitro/txt2img-f8-large/model.ckpt ;;  # the 1.45B LAION text-to-image model, 5.7 GB
    cin256-v2) echo nitro/cin/model.ckpt ;;                     # class-conditional ImageNet, for guidance
    kl-f4|kl-f8|kl-f16|kl-f32|vq-f4|vq-f4-noattn|vq-f8|vq-f8-n256|vq-f16) echo "$1.zip" ;;
    *) return 1 ;;
  esac
}

usage() {
  cat <<EOF
usage: scripts/download_models.sh [--first-stages] [--ldm] [--quick-check] [name ...]

Downloads released CompVis checkpoints into $MODELS_DIR/{ldm,first_stage_models}/<name>/model.ckpt,
skips those already there, and checks that each loads into ldm_lite (writing its config.yaml).
  --ldm            all latent diffusion models (tens of GB)
  --first-stages   all autoencoders
  --quick-check    check keys and shapes only (check_original_checkpoint.py --meta): far less memory
  name             one model, e.g. kl-f8 or celeba256
LDMs:         ${LDM_NAMES[*]}
first stages: ${FIRST_STAGE_NAMES[*]}
EOF
}

die() {
  echo "download_models.sh: error: $*" >&2
  exit 1
}

kind_of() {  # ldm | first_stage_models
  local name
  for name in "${FIRST_STAGE_NAMES[@]}"; do [[ "$1" == "$name" ]] && { echo first_stage_models; return; }; done
  echo ldm
}

check_options=()
selected=()
select_model() {
  remote_file "$1" >/dev/null || die "unknown model '$1': choose from ${LDM_NAMES[*]} ${FIRST_STAGE_NAMES[*]}"
  [[ " ${selected[*]-} " == *" $1 "* ]] || selected+=("$1")
}
while (( $# )); do
  case "$1" in
    --ldm) for name in "${LDM_NAMES[@]}"; do select_model "$name"; done ;;
    --first-stages) for name in "${FIRST_STAGE_NAMES[@]}"; do select_model "$name"; done ;;
    --quick-check) check_options=(--meta) ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *) select_model "$1" ;;
  esac
  shift
done
if (( ${#selected[@]} == 0 )); then
  usage >&2
  exit 2
fi

if [[ -n "${PYTHON:-}" ]]; then :
elif [[ -x "$REPOSITORY_ROOT/.venv/bin/python" ]]; then PYTHON="$REPOSITORY_ROOT/.venv/bin/python"
elif command -v python >/dev/null; then PYTHON=python
else PYTHON=python3
fi

if command -v curl >/dev/null; then DOWNLOADER=curl
elif command -v wget >/dev/null; then DOWNLOADER=wget
else die "neither curl nor wget is installed: install one (e.g. apt-get install curl)"
fi

unreachable() {
  die "cannot reach $HOST: download_models.sh needs internet; the shipped lite models under models/ work offline"
}

# Any HTTP answer from the server (even an error page) means it is reachable; no answer means offline.
probe() {
  local status=0
  if [[ "$DOWNLOADER" == curl ]]; then
    curl --head --silent --output /dev/null --connect-timeout "$CONNECT_TIMEOUT" --max-time $((CONNECT_TIMEOUT * 2)) \
      "$BASE" || status=$?
    case "$status" in 5|6|7|28|35) unreachable ;; esac
  else
    wget --spider --quiet --tries=1 --timeout="$CONNECT_TIMEOUT" "$BASE" || status=$?
    [[ "$status" == 4 ]] && unreachable
  fi
  return 0
}

# The download runs in the background and the script waits for it, so that a signal to this script
# is handled at once (bash defers traps while a foreground command runs) and stops the download too.
downloader_pid=""
fetch() {  # url destination
  local progress=(--silent --show-error)
  [[ -t 2 ]] && progress=(--progress-bar)
  if [[ "$DOWNLOADER" == curl ]]; then
    curl --fail --location "${progress[@]}" --connect-timeout "$CONNECT_TIMEOUT" --output "$2" "$1" &
  else
    wget --tries=1 --timeout="$CONNECT_TIMEOUT" --quiet --show-progress --output-document="$2" "$1" &
  fi
  downloader_pid=$!
  local status=0
  wait "$downloader_pid" || status=$?
  downloader_pid=""
  return "$status"
}

stop() {  # exit status
  if [[ -n "$downloader_pid" ]]; then
    kill "$downloader_pid" 2>/dev/null || true
    wait "$downloader_pid" 2>/dev/null || true
  fi
  exit "$1"
}

# Copy the member named model.ckpt out of a zip (python's zipfile: no dependency on `unzip`).
unpack_checkpoint() {  # zip destination
  "$PYTHON" - "$1" "$2" <<'EOF'
import shutil, sys, zipfile
archive, destination = sys.argv[1], sys.argv[2]
try:
    with zipfile.ZipFile(archive) as opened:
        members = [info for info in opened.infolist() if info.filename.rsplit("/", 1)[-1] == "model.ckpt"]
        if len(members) != 1:
            sys.exit(f"download_models.sh: error: the download holds {[i.filename for i in opened.infolist()]}, "
                     "expected exactly one model.ckpt")
        with opened.open(members[0]) as source, open(destination, "wb") as target:
            shutil.copyfileobj(source, target, 1 << 20)
except zipfile.BadZipFile as error:
    sys.exit(f"download_models.sh: error: the download is not a valid zip file ({error}); run the script again")
EOF
}

check() {  # folder
  "$PYTHON" "$REPOSITORY_ROOT/scripts/check_original_checkpoint.py" "$1" ${check_options[@]+"${check_options[@]}"}
}

to_download=()
failed=()
for name in "${selected[@]}"; do
  folder="$MODELS_DIR/$(kind_of "$name")/$name"
  if [[ -f "$folder/model.ckpt" ]]; then
    echo "$name: $folder/model.ckpt is present, not downloading it again"
    if [[ ! -f "$folder/config.yaml" ]]; then check "$folder" || failed+=("$name"); fi
  else
    to_download+=("$name")
  fi
done

if (( ${#to_download[@]} > 0 )); then
  probe
  mkdir -p "$MODELS_DIR"
  # Downloads land in a temporary folder beside the models (same file system, so the final `mv`
  # is an atomic rename); an interrupted run removes it and leaves no partial model.ckpt.
  work="$(mktemp -d "$MODELS_DIR/.download.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  trap 'stop 130' INT
  trap 'stop 143' TERM
  for name in "${to_download[@]}"; do
    folder="$MODELS_DIR/$(kind_of "$name")/$name"
    remote="$(remote_file "$name")"
    echo "$name: downloading $BASE$remote"
    if ! fetch "$BASE$remote" "$work/download"; then
      probe
      echo "download_models.sh: error: downloading $BASE$remote failed (see above)" >&2
      failed+=("$name")
      continue
    fi
    if [[ "$remote" == *.zip ]]; then
      if ! unpack_checkpoint "$work/download" "$work/model.ckpt"; then
        failed+=("$name")
        continue
      fi
      rm -f "$work/download"
    else
      mv "$work/download" "$work/model.ckpt"
    fi
    mkdir -p "$folder"
    mv "$work/model.ckpt" "$folder/model.ckpt"
    check "$folder" || failed+=("$name")
  done
fi

if (( ${#failed[@]} > 0 )); then
  die "failed: ${failed[*]} (messages above)"
fi
echo "done: ${selected[*]}"
