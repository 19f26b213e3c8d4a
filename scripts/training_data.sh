#!/usr/bin/env bash
# Install the training photos: Debian's wallpaper packages (the only training data edgesr uses),
# then link their photographs (illustrations, renders and logos left out) into one folder.
# Usage: scripts/training_data.sh [FOLDER]   (default data/photos; needs apt: root or sudo)
set -euo pipefail
cd "$(dirname "$0")/.."
folder="${1:-data/photos}"
packages="mate-backgrounds ukui-wallpapers lomiri-wallpapers gnome-backgrounds"
# The photographs among those packages' images (checked by eye; every other file is a drawing,
# a render, a gradient or a logo). scikit-image's bundled photos stay held out for evaluation.
mate_nature="Aqua Blinds Dune FreshFlower Garden GreenMeadow LadyBird RainDrops Storm TwoWings Wood YellowFlower"
photos="$(printf '/usr/share/backgrounds/mate/nature/%s.jpg ' $mate_nature) /usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg"
missing=""
for p in $packages; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  if [ -n "$sudo" ] && ! command -v sudo >/dev/null 2>&1; then
    echo "training data: install the Debian packages$missing (apt install$missing) as root, then re-run" >&2
    exit 1
  fi
  echo "training data: installing Debian packages$missing"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
fi
mkdir -p "$folder"
count=0
for photo in $photos; do
  if [ ! -f "$photo" ]; then
    echo "training data: $photo is missing although its package is installed: reinstall it" >&2
    exit 1
  fi
  ln -sfn "$photo" "$folder/$(basename "$photo")"
  count=$((count + 1))
done
echo "training data: $count photos in $folder"
