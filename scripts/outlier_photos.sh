#!/usr/bin/env bash
# Photos for outlier exposure (training.outliers), from Debian's wallpaper packages: KDE Plasma, GNOME, MATE
# UKUI and Lomiri (Ubuntu's wallpaper contests) backgrounds: landscapes, animals, plants, objects, abstract art;
# the largest file of each picture.
# Usage: bash scripts/outlier_photos.sh [OUT]   (default runs/outlier_photos; needs apt's package lists)
# Never add ../shared/data/outside or the package photos the outside report evaluates on.
set -euo pipefail
out="${1:-runs/outlier_photos}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
packages=(plasma-workspace-wallpapers gnome-backgrounds mate-backgrounds ukui-wallpapers lomiri-wallpapers
          lomiri-wallpapers-16.04 lomiri-wallpapers-20.04)
(cd "$work" && apt-get download -qq "${packages[@]}" 2>/dev/null)
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/tree"; done
mkdir -p "$out"
python3 - "$work/tree" "$out" <<'PY'
import re, shutil, sys
from pathlib import Path
tree, out = Path(sys.argv[1]), Path(sys.argv[2])
suffixes = {".jpg", ".jpeg", ".png", ".webp"}
pictures: dict[str, Path] = {}   # one name per picture -> its largest file
for path in tree.rglob("*"):
    if not path.is_file() or path.suffix.lower() not in suffixes or "screenshot" in path.name or path.stat().st_size < 100_000:
        continue
    parts = path.relative_to(tree).parts
    if "wallpapers" in parts and "contents" in parts:   # KDE: NAME/contents/images[_dark]/WxH.ext
        name = f"{parts[parts.index('contents') - 1]}_{path.parent.name}"
    else:                                                  # one file per picture, sizes as _WxH suffixes
        name = re.sub(r"_\d+x\d+(_\w+)?$", "", path.stem).lower()
    if name not in pictures or path.stat().st_size > pictures[name].stat().st_size:
        pictures[name] = path
for name, path in sorted(pictures.items()):
    shutil.copy(path, out / f"{name}{path.suffix.lower()}")
print(f"[outlier-photos] {len(pictures)} pictures from {len(list(tree.parent.glob('*.deb')))} packages -> {out}")
PY
