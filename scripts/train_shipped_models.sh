#!/usr/bin/env bash
# Train the small models shipped under models/ with main.py and their configs, then export each
# into its model folder (config.yaml + model.safetensors in float16; LDMs without their first stage).
# This is the recipe of the model cards in models/*/README.md.
#
#   scripts/train_shipped_models.sh [--device cuda|cpu] [--max_steps N] [NAME ...]   default: all
#
# First stages train first, then the LDMs; names in one group train in parallel (on one large GPU the
# whole zoo at once; on a 2-core CPU give one name at a time). --max_steps caps every run (a quick
# check of the recipe: `--device cpu --max_steps 2`); --device cpu hides GPUs, cuda trains on GPU 0.
# An LDM reads its first stage from $EXPORT/first_stage_models/ when this script exported it there,
# else from the shipped models/first_stage_models/.
# Environment: PYTHON (default .venv/bin/python, else python3), LOGDIR (default logs),
# EXPORT (default models: the shipped folders are replaced).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
LOGDIR=${LOGDIR:-logs}
EXPORT=${EXPORT:-models}

declare -A CONFIG=(
  [kl-f4-emoji32]=configs/autoencoder/lite_kl_f4_emoji32.yaml
  [kl-f4-shapes-emoji32]=configs/autoencoder/lite_kl_f4_shapes_emoji32.yaml
  [kl-f4-clipart64]=configs/autoencoder/lite_kl_f4_clipart64.yaml
  [emoji-uncond]=configs/latent-diffusion/lite_emoji_uncond.yaml
  [inpainting-emoji]=configs/latent-diffusion/lite_inpainting_emoji.yaml
  [text-shapes-emoji]=configs/latent-diffusion/lite_text_shapes_emoji.yaml
  [text2img-clipart64]=configs/latent-diffusion/lite_text2img_clipart64.yaml
  [mnist-class]=configs/latent-diffusion/lite_mnist_class.yaml
)
declare -A DECODER_FINETUNE=(  # a second run that fine-tunes the exported model's decoder alone
  [kl-f4-shapes-emoji32]=configs/autoencoder/lite_kl_f4_shapes_emoji32_decoder.yaml
)
declare -A CONTINUE_STEPS=(  # a second run of this many steps from the exported weights (its card says why)
  [text-shapes-emoji]=8000
)
declare -A EXPORT_CHECKPOINT=(  # a shipped model taken before the end of its run (its card says why)
  [emoji-uncond]=step=012000.ckpt
)
declare -A FIRST_STAGE=(  # the LDMs' frozen first stage (mnist-class diffuses pixels)
  [emoji-uncond]=kl-f4-emoji32 [inpainting-emoji]=kl-f4-emoji32 [text-shapes-emoji]=kl-f4-shapes-emoji32
  [text2img-clipart64]=kl-f4-clipart64
)
ALL=(kl-f4-emoji32 kl-f4-shapes-emoji32 kl-f4-clipart64 emoji-uncond inpainting-emoji text-shapes-emoji
     text2img-clipart64 mnist-class)
DEVICE_OPTIONS=() STEP_OPTIONS=() NAMES=()
while (( $# )); do
  case $1 in
    --device) [[ ${2:-} == cuda || ${2:-} == cpu ]] || { echo "--device takes cuda or cpu, not '${2:-}'" >&2; exit 2; }
              if [[ $2 == cuda ]]; then DEVICE_OPTIONS=(--gpus 0,); else export CUDA_VISIBLE_DEVICES=""; fi; shift 2 ;;
    --max_steps) [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || { echo "--max_steps takes a positive integer, not '${2:-}'" >&2; exit 2; }
                 STEP_OPTIONS=(--max_steps "$2"); shift 2 ;;
    -*) echo "unknown option '$1': use --device cuda|cpu, --max_steps N and model names" >&2; exit 2 ;;
    *) NAMES+=("$1"); shift ;;
  esac
done
(( ${#NAMES[@]} )) || NAMES=("${ALL[@]}")
for name in "${NAMES[@]}"; do
  [[ -n "${CONFIG[$name]:-}" ]] || { echo "unknown model '$name': choose from ${ALL[*]}" >&2; exit 2; }
done

first_stage_weights() {  # name of a first stage -> the weights an LDM trains on
  local exported="$EXPORT/first_stage_models/$1/model.safetensors"
  if [[ -f $exported ]]; then echo "$exported"; else echo "models/first_stage_models/$1/model.safetensors"; fi
}

second_run() {  # suffix config [main.py options]: inside train(), a run from the exported weights, exported over them
  local suffix=$1 second_config=$2
  shift 2
  "$PYTHON" main.py --base "$second_config" -t -n "$name-$suffix" -l "$LOGDIR" "${DEVICE_OPTIONS[@]}" "$@" \
    "model.params.ckpt_path=$EXPORT/$kind/$name/model.safetensors" > "$LOGDIR/$name-$suffix.log" 2>&1 \
    || { echo "$name: the $suffix run failed, see $LOGDIR/$name-$suffix.log" >&2; return 1; }
  run=$(ls -d "$LOGDIR"/*_"$name-$suffix" | tail -n 1)
  "$PYTHON" scripts/export_model.py "$run" "$EXPORT/$kind/$name" --half "${extra[@]}"
}

train() {  # name -> trains, then exports
  local name=$1 config=${CONFIG[$1]} run kind=ldm extra=() overrides=()
  [[ $config == configs/autoencoder/* ]] && kind=first_stage_models
  if [[ -n "${FIRST_STAGE[$name]:-}" ]]; then
    extra=(--first_stage "$(first_stage_weights "${FIRST_STAGE[$name]}")")
    overrides=("model.params.first_stage_config.params.ckpt_path=${extra[1]}")
  fi
  "$PYTHON" main.py --base "$config" -t -n "$name" -l "$LOGDIR" "${DEVICE_OPTIONS[@]}" "${STEP_OPTIONS[@]}" \
    "${overrides[@]}" > "$LOGDIR/$name.log" 2>&1 || { echo "$name: training failed, see $LOGDIR/$name.log" >&2; return 1; }
  run=$(ls -d "$LOGDIR"/*_"$name" | tail -n 1)
  local checkpoint=${EXPORT_CHECKPOINT[$name]:-last.ckpt}
  if [[ ! -f $run/checkpoints/$checkpoint ]]; then
    echo "$name: $run has no $checkpoint (a shorter run): exporting last.ckpt" >&2
    checkpoint=last.ckpt
  fi
  "$PYTHON" scripts/export_model.py "$run" "$EXPORT/$kind/$name" --half --checkpoint "$checkpoint" "${extra[@]}"
  if [[ -n "${CONTINUE_STEPS[$name]:-}" ]]; then  # models/README.md: training on from committed weights
    second_run continued "$config" --max_steps "${STEP_OPTIONS[1]:-${CONTINUE_STEPS[$name]}}" "${overrides[@]}" || return 1
  fi
  if [[ -n "${DECODER_FINETUNE[$name]:-}" ]]; then
    second_run decoder "${DECODER_FINETUNE[$name]}" "${STEP_OPTIONS[@]}" || return 1
  fi
  echo "$name: trained in $run, exported to $EXPORT/$kind/$name"
}

mkdir -p "$LOGDIR"
# First stages before the LDMs that need them; each group in parallel.
status=0
pids=()
for name in "${NAMES[@]}"; do
  if [[ ${CONFIG[$name]} == configs/autoencoder/* ]]; then train "$name" & pids+=($!); fi
done
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
pids=()
for name in "${NAMES[@]}"; do
  if [[ ${CONFIG[$name]} != configs/autoencoder/* ]]; then train "$name" & pids+=($!); fi
done
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
