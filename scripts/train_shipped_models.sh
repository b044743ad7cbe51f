#!/usr/bin/env bash
# Train the small models shipped under models/ with main.py and their configs, then export each
# into its model folder (config.yaml + model.safetensors in float16; LDMs without their first stage).
# This is the recipe of the model cards in models/*/README.md.
#
#   scripts/train_shipped_models.sh [NAME ...]        default: all, first stages first
#
# Names given together train in parallel (good on a GPU; on a 2-core CPU give one at a time).
# An LDM needs its first stage in models/first_stage_models/ (shipped, or trained by this script).
# Environment: PYTHON (default .venv/bin/python, else python3), LOGDIR (default logs),
# EXPORT (default models: the shipped folders are replaced; LDMs always read their first stage from models/).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
LOGDIR=${LOGDIR:-logs}
EXPORT=${EXPORT:-models}

declare -A CONFIG=(
  [kl-f4-emoji32]=configs/autoencoder/lite_kl_f4_emoji32.yaml
  [kl-f4-shapes-emoji32]=configs/autoencoder/lite_kl_f4_shapes_emoji32.yaml
  [emoji-uncond]=configs/latent-diffusion/lite_emoji_uncond.yaml
  [inpainting-emoji]=configs/latent-diffusion/lite_inpainting_emoji.yaml
  [text-shapes-emoji]=configs/latent-diffusion/lite_text_shapes_emoji.yaml
  [mnist-class]=configs/latent-diffusion/lite_mnist_class.yaml
)
declare -A DECODER_FINETUNE=(  # a second run that fine-tunes the exported model's decoder alone
  [kl-f4-shapes-emoji32]=configs/autoencoder/lite_kl_f4_shapes_emoji32_decoder.yaml
)
declare -A FIRST_STAGE=(  # the LDMs' frozen first stage (mnist-class diffuses pixels)
  [emoji-uncond]=kl-f4-emoji32 [inpainting-emoji]=kl-f4-emoji32 [text-shapes-emoji]=kl-f4-shapes-emoji32
)
ALL=(kl-f4-emoji32 kl-f4-shapes-emoji32 emoji-uncond inpainting-emoji text-shapes-emoji mnist-class)
NAMES=("${@:-${ALL[@]}}")
for name in "${NAMES[@]}"; do
  [[ -n "${CONFIG[$name]:-}" ]] || { echo "unknown model '$name': choose from ${ALL[*]}" >&2; exit 2; }
done

train() {  # name -> trains, then exports
  local name=$1 config=${CONFIG[$1]} run kind=ldm extra=()
  [[ $config == configs/autoencoder/* ]] && kind=first_stage_models
  "$PYTHON" main.py --base "$config" -t -n "$name" -l "$LOGDIR" > "$LOGDIR/$name.log" 2>&1
  run=$(ls -d "$LOGDIR"/*_"$name" | tail -n 1)
  if [[ -n "${FIRST_STAGE[$name]:-}" ]]; then
    extra=(--first_stage "models/first_stage_models/${FIRST_STAGE[$name]}/model.safetensors")
  fi
  "$PYTHON" scripts/export_model.py "$run" "$EXPORT/$kind/$name" --half "${extra[@]}"
  if [[ -n "${DECODER_FINETUNE[$name]:-}" ]]; then
    "$PYTHON" main.py --base "${DECODER_FINETUNE[$name]}" -t -n "$name-decoder" -l "$LOGDIR" \
      "model.params.ckpt_path=$EXPORT/$kind/$name/model.safetensors" > "$LOGDIR/$name-decoder.log" 2>&1
    run=$(ls -d "$LOGDIR"/*_"$name-decoder" | tail -n 1)
    "$PYTHON" scripts/export_model.py "$run" "$EXPORT/$kind/$name" --half
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
