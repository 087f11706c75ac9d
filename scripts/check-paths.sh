# Sourced (not run) by the opt-in checks against readers that are not ours, check-export.sh and
# check-peft.sh, from the repository root: the paths they share. Each check keeps its own venv and
# output folder, named after it and overridable by its own environment variables.
#
# Usage: . scripts/check-paths.sh NAME
#   sets TARGET, VENV (${NAME^^}_VENV, default $TARGET/NAME-venv), OUT (${NAME^^}_CHECK_DIR, default
#   $TARGET/NAME-check, absolute), SMOLLM2 (the model of scripts/fetch-smollm2.sh) and PY (the venv's
#   python).
venv_var="${1^^}_VENV"
dir_var="${1^^}_CHECK_DIR"
TARGET=${CARGO_TARGET_DIR:-target}
VENV=${!venv_var:-$TARGET/$1-venv}
OUT=$(realpath -m "${!dir_var:-$TARGET/$1-check}")
SMOLLM2=models/SmolLM2-135M-Instruct.gguf
PY="$VENV/bin/python"
